"""The world's tiny CLIP (vision_train) and tiny Qwen2 LLM (llm_train): training, resume, reload, metrics."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from vhslab.shapes.scenes import COLORS, SHAPES
from vhslab.world import llm_corpus as C
from vhslab.world import llm_train as L
from vhslab.world import stage
from vhslab.world import vision_train as V
from vhslab.world.text import build_word_tokenizer, verifier_messages

torch.set_num_threads(1)


def _same(a: dict, b: dict) -> bool:
    drop = {"train_seconds"}
    return {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}


@pytest.fixture(scope="module")
def vision_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vision")
    return out, V.train_vision(out, V.VisionTrainConfig.tiny(), seed=0, progress=False)


@pytest.fixture(scope="module")
def llm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("llm")
    return out, L.train_llm(out, L.LLMTrainConfig.tiny(), seed=0, progress=False)


# ----------------------------------------------------------------------------- vision


def test_vision_tiny_trains_saves_and_reloads(vision_run):
    from transformers import AutoImageProcessor, CLIPModel, CLIPVisionModel

    out, metrics = vision_run
    assert metrics["finished"] and metrics["steps"] == V.VisionTrainConfig.tiny().steps
    assert metrics["final_loss"] < metrics["first_loss"]
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert not (out / stage.CHECKPOINT).exists()
    model, processor, tokenizer = V.load_vision(out)
    images, colors, shapes = V.eval_set(1, 32)
    again = V.zero_shot_accuracy(model, tokenizer, processor, images, colors, shapes)
    assert all(again[k] == metrics[k] for k in again)  # reloaded model reproduces the saved metrics
    # the processor is a no-op resize: it gives exactly the training normalisation
    ref = V.pixels(images[:3], processor)
    got = AutoImageProcessor.from_pretrained(out)(images=list(images[:3]), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(got, ref)
    # the vision tower loads alone from the CLIPModel folder, with the same weights
    tower = CLIPVisionModel.from_pretrained(out).eval()
    with torch.no_grad():
        a = tower(pixel_values=ref).last_hidden_state
        b = CLIPModel.from_pretrained(out).eval().vision_model(pixel_values=ref).last_hidden_state
    assert torch.equal(a, b)
    feats = V.vision_encoder(out)(images[:2])
    cfg = model.config.vision_config
    assert feats.shape == (2, (cfg.image_size // cfg.patch_size) ** 2, cfg.hidden_size)


def test_vision_save_pretrained_round_trip_is_exact(tmp_path):
    from transformers import CLIPModel

    tok = build_word_tokenizer()
    cfg = V.VisionTrainConfig.tiny()
    model = V.build_model(cfg, tok).eval()
    model.save_pretrained(tmp_path)
    other = CLIPModel.from_pretrained(tmp_path).eval()
    images, _, _ = V.eval_set(1, cfg.image_size)
    texts = tok(V.class_texts()[0][:5], padding=True, return_tensors="pt")
    px = V.pixels(images[:5], V.build_processor(cfg.image_size))
    with torch.no_grad():
        assert torch.equal(model(**texts, pixel_values=px).logits_per_image, other(**texts, pixel_values=px).logits_per_image)


def test_vision_text_pooling_reads_the_eos_token():
    tok = build_word_tokenizer()
    ids = tok(V.class_texts()[0][:3], padding=True)["input_ids"]
    assert all(row.count(tok.eos_token_id) == 1 for row in ids)
    model = V.build_model(V.VisionTrainConfig.tiny(), tok)
    assert model.config.text_config.eos_token_id == tok.eos_token_id == 1


def test_vision_resume_matches_an_uninterrupted_run(tmp_path, vision_run):
    _, full = vision_run
    cfg = V.VisionTrainConfig.tiny()
    part = V.train_vision(tmp_path, cfg, seed=0, progress=False, stop_after=3)
    assert part == {"finished": False, "step": 3} and (tmp_path / stage.CHECKPOINT).exists()
    resumed = V.train_vision(tmp_path, cfg, seed=0, progress=False)
    assert _same(resumed, full)
    assert V.train_vision(tmp_path, cfg, seed=0, progress=False) == resumed  # finished: skipped
    with pytest.raises(ValueError):
        (tmp_path / "metrics.json").unlink()
        V.train_vision(tmp_path, replace(cfg, lr=1e-2), seed=0, progress=False)


def test_zero_shot_scores_known_case():
    nc, ns = len(COLORS), len(SHAPES)
    text = torch.eye(nc * ns)  # class k's text embedding is basis vector k (colour-major)
    colors = np.repeat(np.arange(nc), ns)
    shapes = np.tile(np.arange(ns), nc)
    perfect = V.zero_shot_scores(text.clone(), text, colors, shapes)
    assert perfect == {"zero_shot_color_acc": 1.0, "zero_shot_shape_acc": 1.0, "zero_shot_joint_acc": 1.0}
    # images that look like the right colour but the next shape
    shifted = torch.stack([text[c * ns + (s + 1) % ns] for c, s in zip(colors, shapes, strict=True)])
    wrong_shape = V.zero_shot_scores(shifted, text, colors, shapes)
    assert wrong_shape == {"zero_shot_color_acc": 1.0, "zero_shot_shape_acc": 0.0, "zero_shot_joint_acc": 0.0}


def test_vision_batches_are_seeded_and_captions_distinct():
    cfg = V.VisionTrainConfig.tiny()
    a_img, a_cap = V.training_batch(cfg, 0, 5)
    b_img, b_cap = V.training_batch(cfg, 0, 5)
    assert np.array_equal(a_img, b_img) and a_cap == b_cap
    assert len(set(a_cap)) == len(a_cap) and all(c.endswith(" <eos>") for c in a_cap)
    assert a_img.shape == (cfg.batch_size, cfg.image_size, cfg.image_size, 3)


# ----------------------------------------------------------------------------- llm


def test_llm_tiny_trains_saves_and_reloads(llm_run):
    from transformers import AutoModelForCausalLM, Qwen2ForCausalLM

    out, metrics = llm_run
    assert metrics["finished"] and metrics["final_loss"] < metrics["first_loss"]
    assert metrics["heldout_perplexity"] > 1.0 and metrics["unigram_perplexity"] > 1.0
    assert 0.0 <= metrics["yes_no_acc"] <= 1.0
    assert not (out / stage.CHECKPOINT).exists()
    model, tok = L.load_llm(out)
    assert isinstance(model, Qwen2ForCausalLM) and model.config.tie_word_embeddings
    assert len(tok) == model.config.vocab_size
    fresh = build_word_tokenizer()
    text = C.dialogue_prefix(fresh, "a photo of two stars", "a photo of a red star , a blue star") + "yes <|im_end|>"
    assert tok(text)["input_ids"] == fresh(text)["input_ids"]
    assert tok.apply_chat_template(verifier_messages("x"), tokenize=False) == fresh.apply_chat_template(
        verifier_messages("x"), tokenize=False
    )
    again = L.evaluate(model, tok, L.LLMTrainConfig.tiny())
    assert all(again[k] == metrics[k] for k in again)  # reloaded model reproduces the saved metrics
    ids = tok(["a photo of a red circle <eos>"], return_tensors="pt")["input_ids"]
    other = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, other(ids).logits)


def test_llm_resume_matches_an_uninterrupted_run(tmp_path, llm_run):
    _, full = llm_run
    cfg = L.LLMTrainConfig.tiny()
    assert L.train_llm(tmp_path, cfg, seed=0, progress=False, stop_after=5) == {"finished": False, "step": 5}
    resumed = L.train_llm(tmp_path, cfg, seed=0, progress=False)
    assert _same(resumed, full)
    assert L.train_llm(tmp_path, cfg, seed=0, progress=False) == resumed


@pytest.mark.slow  # >= 15 s on 2 cores: the full suite (CI) runs it
def test_llm_batches_drawn_by_workers_train_the_same_model(tmp_path, llm_run):
    _, full = llm_run
    cfg = L.LLMTrainConfig.tiny()
    tok = build_word_tokenizer()
    ahead = L.BatchPrefetch(tok, cfg, 0, workers=2)
    try:
        for step in (3, 4, 5):
            assert all(torch.equal(a, b) for a, b in zip(ahead(step), L.training_batch(tok, cfg, 0, step), strict=True))
        with pytest.raises(RuntimeError, match="asked for step 7, next is 6"):
            ahead(7)
    finally:
        ahead.close()
    # stopped and resumed with workers: a new pool picks up at the checkpoint's step
    assert L.train_llm(tmp_path, cfg, seed=0, progress=False, stop_after=4, workers=1) == {"finished": False, "step": 4}
    assert _same(L.train_llm(tmp_path, cfg, seed=0, progress=False, workers=2), full)


def test_perplexity_is_exp_of_mean_nll_by_hand():
    tok = build_word_tokenizer()
    model = L.build_model(L.LLMTrainConfig.tiny(), tok, seed=3).eval()
    texts = ["a photo of a red circle <eos>", "a photo of two stars <eos>"]
    nll = []
    with torch.no_grad():
        for text in texts:
            ids = tok(text, return_tensors="pt")["input_ids"]
            logp = model(ids).logits[0, :-1].log_softmax(-1)
            nll += (-logp[torch.arange(ids.shape[1] - 1), ids[0, 1:]]).tolist()
    expected = math.exp(sum(nll) / len(nll))
    assert L.perplexity(model, tok, texts) == pytest.approx(expected, rel=1e-5)
    assert L.perplexity(model, tok, texts, batch_size=1) == pytest.approx(expected, rel=1e-5)


def test_unigram_perplexity_known_cases():
    vocab = 60
    uniform = list(range(vocab)) * 3
    assert L.unigram_perplexity(uniform, uniform, vocab) == pytest.approx(vocab)
    assert L.unigram_perplexity(uniform, [7, 8, 9], vocab, smoothing=0.0) == pytest.approx(vocab)
    # one token only, no smoothing: a certain model
    assert L.unigram_perplexity([4] * 10, [4, 4], vocab, smoothing=0.0) == pytest.approx(1.0)


def test_dialogues_are_balanced_and_judged_by_the_world():
    tok = build_word_tokenizer()
    rng = np.random.default_rng(0)
    examples = [C.verifier_example(tok, rng) for _ in range(200)]
    share = np.mean([a == "yes" for _, a, _ in examples])
    assert 0.4 <= share <= 0.6
    assert {t for _, _, t in examples} == set(L.TAGS)
    prefix = examples[0][0]
    assert "<image> a photo of" in prefix and prefix.endswith("<|im_start|> assistant ")
    assert tok.unk_token_id not in tok(prefix.split("<image>")[1].split(" does ")[1])["input_ids"]  # question + prompt


class _SaysYesAtTheLastToken(torch.nn.Module):
    """Logits favour "yes" at each row's last real token only, "no" everywhere else."""

    def __init__(self, vocab, yes, no):
        super().__init__()
        self.vocab, self.yes, self.no = vocab, yes, no
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.no] = 1.0
        last = attention_mask.sum(1) - 1
        logits[torch.arange(len(last)), last, self.yes] = 2.0
        return type("Out", (), {"logits": logits})()


def test_yes_no_accuracy_reads_the_answer_logits():
    tok = build_word_tokenizer()
    yes, no = tok.convert_tokens_to_ids(["yes", "no"])
    model = _SaysYesAtTheLastToken(len(tok), yes, no)
    prefixes = [
        C.dialogue_prefix(tok, "a photo of a red circle", "a photo of a red circle"),
        C.dialogue_prefix(tok, "a photo of two stars", "a photo of a blue circle, a red star and a green square"),
        C.dialogue_prefix(tok, "a photo of a star", "a photo of nothing"),
    ]  # different lengths: padding must not move the read position
    right = L.yes_no_accuracy(model, tok, prefixes, ["yes", "no", "yes"], batch_size=3)
    assert right.tolist() == [1.0, 0.0, 1.0]


def test_lm_loss_is_the_model_loss_plus_the_weighted_answer_nll():
    tok = build_word_tokenizer()
    model = L.build_model(L.LLMTrainConfig.tiny(), tok, seed=1).eval()
    prefix = C.dialogue_prefix(tok, "a photo of a red circle", "a photo of a blue circle")
    ids, mask = L.encode(tok, [prefix + "no <|im_end|>", "a photo of two stars <eos>"], 96)
    after = L.answer_marker(tok)
    with torch.no_grad():
        plain = L.lm_loss(model, ids, mask)
        hf = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        torch.testing.assert_close(plain, hf)
        pos = len(tok(prefix)["input_ids"])  # the answer's position in the first row
        assert ids[0, pos] == tok.convert_tokens_to_ids("no")
        answer_nll = -model(ids[:1, :pos]).logits[0, -1].log_softmax(-1)[ids[0, pos]]
        torch.testing.assert_close(L.lm_loss(model, ids, mask, after, 2.0), plain + 2.0 * answer_nll)


def test_tag_prior_accuracy():
    assert L.tag_prior_accuracy(["a", "a", "a", "b"], ["yes", "yes", "no", "no"]) == 0.75


@pytest.mark.parametrize("config_class", [V.VisionTrainConfig, L.LLMTrainConfig])
def test_a_stage_folder_from_before_a_config_field_existed_resumes(tmp_path, config_class):
    from vhslab.world import stage

    cfg = config_class()
    stage.check_config(tmp_path, cfg, seed=0)
    saved = json.loads((tmp_path / stage.CONFIG).read_text())
    field = sorted(saved["config"])[-1]
    del saved["config"][field]  # a folder written before the field was added
    (tmp_path / stage.CONFIG).write_text(json.dumps(saved))
    stage.check_config(tmp_path, cfg, seed=0)  # the missing field takes its default
    with pytest.raises(ValueError, match="another seed or config"):
        stage.check_config(tmp_path, cfg, seed=1)
    value = getattr(cfg, field)
    changed = replace(cfg, **{field: (not value) if isinstance(value, bool) else value * 2 + 1})
    with pytest.raises(ValueError, match="another seed or config"):
        stage.check_config(tmp_path, changed, seed=0)
