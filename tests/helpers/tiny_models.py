"""The tiny real Qwen2 the verifier tests share (random weights, seeded): imported by test modules as
`helpers.tiny_models` and by helper scripts run from this folder as `tiny_models`."""

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM


def tiny_llm(seed: int = 0, context: int = 256) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=context, tie_word_embeddings=True)
    return Qwen2ForCausalLM(cfg).eval()
