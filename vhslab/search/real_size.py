"""Real-size architectures with random weights, for timing on a GPU without a download.

SANA-Sprint 1.6B (the `SanaTransformer2DModel` class defaults + qk_norm and guidance embeddings, as
`../shared/REFERENCE.md` records), DC-AE f32c32 as SANA ships it (EfficientViT blocks at the three
deepest stages), CLIP ViT-L/14-336 (the standard verifier's tower, 576 patch tokens) and Qwen2.5-0.5B
behind a `LatentVerifier` connector reading block 7 (1024 visual tokens; the world's tokenizer
spells the question, its ids all lie inside Qwen's vocabulary). `TINY` is the same code at toy sizes
so the path is tested on a CPU.
"""

from __future__ import annotations

import copy

import torch

from vhslab.search.generation import SearchError
from vhslab.search.stages import Stages, card_name
from vhslab.trace.site import Site
from vhslab.verifier.model import LatentVerifier
from vhslab.world import load_world

SANA_SPRINT_1_6B = {
    "dit": {"qk_norm": "rms_norm_across_heads", "guidance_embeds": True},
    "dc_ae": {"encoder_block_types": ["ResBlock"] * 3 + ["EfficientViTBlock"] * 3,
              "decoder_block_types": ["ResBlock"] * 3 + ["EfficientViTBlock"] * 3,
              "encoder_layers_per_block": (2, 2, 2, 3, 3, 3), "decoder_layers_per_block": (3, 3, 3, 3, 3, 3),
              "upsample_block_type": "interpolate", "downsample_block_type": "Conv",
              "decoder_norm_types": ["batch_norm"] * 3 + ["rms_norm"] * 3,
              "decoder_act_fns": ["relu"] * 3 + ["silu"] * 3, "scaling_factor": 0.41407},
    "clip": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
             "image_size": 336, "patch_size": 14, "projection_dim": 768},
    "qwen": {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
             "intermediate_size": 4864, "vocab_size": 151936, "max_position_embeddings": 32768,
             "tie_word_embeddings": True},
    "prompt_tokens": 300, "block": 7,
}

TINY = {
    "dit": {"qk_norm": "rms_norm_across_heads", "guidance_embeds": True, "num_layers": 4, "num_attention_heads": 2,
            "attention_head_dim": 8, "num_cross_attention_heads": 2, "cross_attention_head_dim": 8,
            "cross_attention_dim": 16, "caption_channels": 16, "in_channels": 4, "out_channels": 4, "sample_size": 4},
    "dc_ae": {"latent_channels": 4, "encoder_block_out_channels": (8, 16), "decoder_block_out_channels": (8, 16),
              "encoder_block_types": ["ResBlock", "EfficientViTBlock"], "decoder_block_types": ["ResBlock", "EfficientViTBlock"],
              "encoder_layers_per_block": (1, 1), "decoder_layers_per_block": (1, 1), "attention_head_dim": 8,
              "encoder_qkv_multiscales": ((), (5,)), "decoder_qkv_multiscales": ((), (5,)),
              "decoder_norm_types": ["batch_norm", "rms_norm"], "decoder_act_fns": ["relu", "silu"],
              "upsample_block_type": "interpolate", "downsample_block_type": "Conv"},
    "clip": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "image_size": 32, "patch_size": 8, "projection_dim": 16},
    "qwen": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "intermediate_size": 64, "vocab_size": 1024, "max_position_embeddings": 512, "tie_word_embeddings": True},
    "prompt_tokens": 8, "block": 1,
}

ARCHS = {"sana-sprint-1.6b": SANA_SPRINT_1_6B, "tiny": TINY}


@torch.no_grad()
def real_size_stages(arch: str = "sana-sprint-1.6b", device: str = "cuda", dtype: torch.dtype = torch.bfloat16,
                     tokenizer=None) -> Stages:
    """Stages of `arch` (random weights, eval mode) on `device` in `dtype`; `tokenizer` spells the
    verifier's question (default: the world's)."""
    from diffusers import AutoencoderDC, SanaTransformer2DModel
    from transformers import CLIPVisionConfig, CLIPVisionModel, Qwen2Config, Qwen2ForCausalLM

    if arch not in ARCHS:
        raise SearchError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    cfg = copy.deepcopy(ARCHS[arch])
    torch.manual_seed(0)
    dit = SanaTransformer2DModel(**cfg["dit"]).to(device, dtype).eval()
    vae = AutoencoderDC(**cfg["dc_ae"]).to(device, dtype).eval()
    clip = CLIPVisionModel(CLIPVisionConfig(**cfg["clip"])).to(device, dtype).eval()
    llm = Qwen2ForCausalLM(Qwen2Config(**cfg["qwen"])).to(device, dtype).eval()
    if tokenizer is None:
        tokenizer = load_world().tokenizer
    dc = dit.config
    width = dc.num_attention_heads * dc.attention_head_dim
    block = cfg["block"]
    verifier = LatentVerifier.create(llm, tokenizer, str(Site.block(block)), width, token_grid=0).to(device)
    verifier.connector.to(dtype)
    side = dc.sample_size

    def rand(*shape):
        return torch.randn(*shape, device=device, dtype=dtype)

    def dit_run(b):
        kw = {"hidden_states": rand(b, dc.in_channels, side, side),
              "encoder_hidden_states": rand(b, cfg["prompt_tokens"], dc.caption_channels),
              "encoder_attention_mask": torch.ones(b, cfg["prompt_tokens"], device=device),
              "timestep": torch.full((b,), 1.0, device=device, dtype=dtype)}
        if dc.guidance_embeds:
            kw["guidance"] = torch.full((b,), 4.5, device=device, dtype=dtype)
        return lambda: dit(**kw, return_dict=False)

    def decode_run(b):
        z = rand(b, vae.config.latent_channels, side, side)
        return lambda: vae.decode(z, return_dict=False)

    def vision_run(b):
        pixels = rand(b, 3, clip.config.image_size, clip.config.image_size)
        return lambda: clip(pixel_values=pixels, output_hidden_states=True)

    def connector_run(b):
        h = rand(b, side * side, width)
        return lambda: verifier.visual_tokens(h)

    def prefill_run(b):
        h = rand(b, side * side, width)
        return lambda: verifier.answer_logits(h, ["a photo of a red circle left of a blue square"] * b)

    return Stages(arch, card_name(device), str(dtype).replace("torch.", ""), dc.num_layers, block,
                  {"dit": dit_run, "decode": decode_run, "vision_encode": vision_run, "connector": connector_run,
                   "llm_prefill": prefill_run}, device,
                  params=sum(p.numel() for m in (dit, vae, clip, llm, verifier.connector) for p in m.parameters()))
