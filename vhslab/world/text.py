"""The world's text: vocabulary, word-level tokenizer, the verifier's question and chat template."""

from __future__ import annotations

import re
from collections.abc import Iterable

from vhslab.shapes.prompts import TAGS
from vhslab.shapes.scenes import COLORS, PLURALS, SHAPES
from vhslab.shapes.suites import prompt_space

SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<|im_start|>", "<|im_end|>", "<image>")
SYSTEM_PROMPT = "you are an image analysis assistant ."
QUESTION = "does this image match the prompt : {prompt} ? answer yes or no ."
ANSWERS = ("yes", "no")
# Qwen-style chat template, word-level: every message is "<|im_start|> role content <|im_end|>".
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)
_BASE_WORDS = (
    "a an the of and photo image one two three four five left right above below nothing"
    " system user assistant prompt caption"
)


def world_words() -> list[str]:
    """Every word of the world's prompts, captions, the verifier's question and answers."""
    words = set(_BASE_WORDS.split()) | set(COLORS) | set(SHAPES) | set(PLURALS.values()) | set(ANSWERS)
    for text in (SYSTEM_PROMPT, QUESTION):
        words.update(re.findall(r"\w+|[^\w\s]", text))
    for tag in TAGS:
        for spec in prompt_space(tag):
            words.update(re.findall(r"\w+|[^\w\s]", spec.prompt))
    words.discard("{")
    words.discard("}")
    return sorted(words)


def build_word_tokenizer(words: Iterable[str] | None = None):
    """A word-level `PreTrainedTokenizerFast` (lower-cased, BOS added to every sequence, the
    world's chat template). Ids: the special tokens first, then the words in sorted order."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w.lower() for w in (world_words() if words is None else words)})
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in words:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=list(SPECIAL_TOKENS[4:]),
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def verifier_messages(prompt: str) -> list[dict]:
    """The verifier's chat: system role, then the image placeholder and the question."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "<image> " + QUESTION.format(prompt=prompt)},
    ]
