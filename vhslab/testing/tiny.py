"""Tiny random pipelines built from the real diffusers/transformers classes.

Used by tests and as the starting point of the trained world: every size is a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from vhslab.trace.vision import VisionEncoder
from vhslab.world.generator import (
    GeneratorConfig,
    assemble_pipeline,
    build_autoencoder,
    build_text_encoder,
    build_transformer,
)
from vhslab.world.teacher import teacher_from_student
from vhslab.world.text import build_word_tokenizer


def _finish(pipe):
    """Eval mode (fresh modules train, e.g. T5 dropout) and no per-call progress bar."""
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sana_sprint_pipeline(
    seed: int = 0,
    num_layers: int = 4,
    sample_size: int = 8,
    latent_channels: int = 4,
    num_heads: int = 2,
    head_dim: int = 8,
    text_dim: int = 16,
    vae_channels: tuple[int, ...] = (8, 8, 8),
    words: Iterable[str] | None = None,
):
    """A real `SanaSprintPipeline` with random weights, built like the world's generator
    (`vhslab.world.generator`). Hidden width = num_heads * head_dim; image size =
    sample_size * 2 ** (len(vae_channels) - 1)."""
    cfg = GeneratorConfig(
        resolution=sample_size * 2 ** (len(vae_channels) - 1), latent_channels=latent_channels,
        ae_channels=tuple(vae_channels), num_layers=num_layers, num_heads=num_heads, head_dim=head_dim,
        text_dim=text_dim, text_layers=1,
    )
    tokenizer = build_word_tokenizer(words)
    torch.manual_seed(seed)
    transformer = build_transformer(cfg)
    vae = build_autoencoder(cfg)
    text_encoder = build_text_encoder(cfg, tokenizer)
    return _finish(assemble_pipeline(tokenizer, text_encoder, vae, transformer))


def tiny_sana_pipeline(seed: int = 0, **kwargs):
    """A real multi-step `SanaPipeline` (flow-matching Euler scheduler) built like the world's teacher:
    `tiny_sana_sprint_pipeline(seed, **kwargs)`'s DiT converted by `teacher_transformer_from`."""
    return _finish(teacher_from_student(tiny_sana_sprint_pipeline(seed, **kwargs)))


def tiny_pixart_pipeline(
    seed: int = 0,
    num_layers: int = 3,
    sample_size: int = 8,
    latent_channels: int = 4,
    num_heads: int = 2,
    head_dim: int = 8,
    text_dim: int = 16,
    patch_size: int = 1,
    vae_channels: tuple[int, ...] = (8, 8, 8),
    words: Iterable[str] | None = None,
):
    """A real `PixArtAlphaPipeline` (PixArt DiT + T5 encoder + AutoencoderKL + DPM-Solver), random weights."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = build_word_tokenizer(words)
    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(
        num_attention_heads=num_heads,
        attention_head_dim=head_dim,
        in_channels=latent_channels,
        out_channels=2 * latent_channels,
        num_layers=num_layers,
        norm_num_groups=1,
        cross_attention_dim=num_heads * head_dim,
        sample_size=sample_size,
        patch_size=patch_size,
        caption_channels=text_dim,
        use_additional_conditions=False,
    )
    n = len(vae_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=vae_channels,
        layers_per_block=1,
        norm_num_groups=min(vae_channels),
        sample_size=sample_size * 2 ** (n - 1),
    )
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=text_dim,
            d_kv=text_dim // 2,
            d_ff=2 * text_dim,
            num_layers=1,
            num_heads=2,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    pipe = PixArtAlphaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(),
    )
    return _finish(pipe)


def tiny_vision_encoder(seed: int = 0, image_size: int = 32, patch_size: int = 8, width: int = 16):
    """A `VisionEncoder` over a random tiny `CLIPVisionModel` (penultimate layer, patch tokens)."""
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    model = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=width,
            intermediate_size=2 * width,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch_size,
        )
    ).eval()
    processor = CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    return VisionEncoder(model, processor)


# the call of a tiny SANA-Sprint pipeline that tests make: one step, 32 px, 8 text tokens, tensors out
SANA_CALL = dict(num_inference_steps=1, intermediate_timesteps=None, height=32, width=32, use_resolution_binning=False,
                 complex_human_instruction=None, max_sequence_length=8, output_type="pt")


# the call of a tiny multi-step SANA pipeline (`tiny_sana_pipeline`): three Euler steps with CFG
SANA_TEACHER_CALL = dict(num_inference_steps=3, guidance_scale=2.0, height=32, width=32, use_resolution_binning=False,
                         clean_caption=False, complex_human_instruction=None, max_sequence_length=8, output_type="pt")


def generators(n: int = 2) -> list[torch.Generator]:
    """`n` CPU generators seeded 0..n-1 (one per prompt of a batch)."""
    return [torch.Generator().manual_seed(i) for i in range(n)]
