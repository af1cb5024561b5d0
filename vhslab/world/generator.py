"""The world's generator: a SANA-Sprint pipeline (DC-AE, Gemma2 text encoder, Sana DiT) with
tiny configs, and the flow-matching maths the pipeline uses.

SanaSprintPipeline feeds the DiT `x_tau = (1 - tau) * x0 + tau * n` with x0 = latent * scaling
factor and n ~ N(0, I) and reads its output as the flow velocity `n - x0` (the TrigFlow /
SCM wrapper around the call reduces to this), so the teacher is trained as a rectified flow
in that space and the one-step student maps n straight to x0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from vhslab.errors import InputError

SCM_MAX_T = 1.57080  # SanaSprintPipeline's default max_timesteps
GUIDANCE_EMBEDS_SCALE = 100.0  # guidance 1..5 -> 100..500, the range of its sinusoidal embedding


@dataclass
class GeneratorConfig:
    """Architecture, training and sampling settings of the world's generator (autoencoder, teacher, student)."""

    resolution: int = 64
    latent_channels: int = 16
    ae_channels: tuple[int, ...] = (16, 32, 64, 64)
    num_layers: int = 12
    num_heads: int = 3
    head_dim: int = 32
    text_dim: int = 64
    text_layers: int = 2
    max_sequence_length: int = 24
    # data
    pool_size: int = 60000
    # autoencoder
    ae_steps: int = 1500
    ae_batch: int = 32
    ae_lr: float = 1e-3
    # decoder fine-tuning on the frozen encoder's latents, with latent noise (robust decoding)
    decoder_steps: int = 2500  # verdict agreement 97.3% (2,000: 97.2%, 4,000: 98.0%; docs/world.md)
    decoder_batch: int = 32
    decoder_lr: float = 3e-4
    decoder_noise: float = 0.25  # largest noise std added to the unit-std latents
    # teacher (rectified flow, CFG dropout); the step counts are sized so that the whole `default`
    # profile fits 150 minutes on 2 CPU cores with margin (this machine's speed drifts ~20%)
    teacher_steps: int = 3200
    teacher_batch: int = 64
    teacher_lr: float = 8e-4
    cfg_dropout: float = 0.1
    # a second cosine cycle of the teacher, from its EMA weights (warm restart)
    refine_steps: int = 3200
    refine_lr: float = 4e-4
    # distillation into the one-step student
    sample_steps: int = 12  # the teacher's Euler steps per pair
    guidance_range: tuple[float, float] = (1.0, 3.0)
    distill_pairs: int = 8192
    pairs_batch: int = 128  # teacher samples drawn at once for the pairs
    distill_steps: int = 1500  # with 12-step pairs: Bo1 27.2 -> 30.8% over 1,000 steps on 10 (docs/world.md)
    distill_batch: int = 64
    distill_lr: float = 2e-4
    default_guidance: float = 2.5  # chosen on the `train` suite (Bo1 at 1.0-3.0)
    bf16: bool = False  # the generator stages' training steps under bf16 autocast (the gpu profile)
    compile_blocks: bool = False  # torch.compile each DiT block while training (the gpu profile)

    @classmethod
    def tiny(cls) -> GeneratorConfig:
        """Seconds-long settings for smoke tests."""
        return cls(resolution=32, latent_channels=4, ae_channels=(8, 8, 8), num_layers=2, num_heads=2, head_dim=8,
                   text_dim=16, text_layers=1, pool_size=256, ae_steps=6, ae_batch=8, decoder_steps=6, decoder_batch=8,
                   teacher_steps=6, teacher_batch=8, refine_steps=6, sample_steps=2, distill_pairs=16, distill_steps=6,
                   distill_batch=8)

    @classmethod
    def gpu(cls) -> GeneratorConfig:
        """Large batches for one H100/H200: the teacher's batch 32x the CPU profile's, 2,000 steps
        (refine 1,000), pairs from 12 Euler steps. Uncompiled, a teacher step is bound by the CPU
        launching ~1,500 small ops (148 ms at batch 2,048, 111 ms at 512, on one H100; bf16 alone no
        faster); with each DiT block compiled it took 71 ms in bf16, 92 ms in fp32 (docs/world.md)."""
        return cls(pool_size=80000, ae_steps=1500, ae_batch=256, decoder_steps=4000, teacher_steps=2000,
                   teacher_batch=2048, teacher_lr=1e-3, refine_steps=1000, refine_lr=5e-4, sample_steps=12,
                   distill_pairs=32768, pairs_batch=1024, distill_steps=1200, distill_batch=1024, distill_lr=4e-4,
                   bf16=True, compile_blocks=True)

    @property
    def latent_grid(self) -> int:
        """Side of the autoencoder's latent grid: the DiT's token grid (one downsampling per stage)."""
        return self.resolution // 2 ** (len(self.ae_channels) - 1)

    def to_dict(self) -> dict:
        """The config as plain JSON data."""
        return asdict(self)


def build_autoencoder(cfg: GeneratorConfig):
    """A fresh DC-AE autoencoder of the config's widths and latent channels."""
    from diffusers import AutoencoderDC

    n = len(cfg.ae_channels)
    if cfg.ae_channels[-1] % cfg.latent_channels:
        raise InputError("the last decoder block width must be a multiple of latent_channels")
    return AutoencoderDC(
        in_channels=3,
        latent_channels=cfg.latent_channels,
        attention_head_dim=8,
        encoder_block_types="ResBlock",
        decoder_block_types="ResBlock",
        encoder_block_out_channels=cfg.ae_channels,
        decoder_block_out_channels=cfg.ae_channels,
        encoder_layers_per_block=(1,) * n,
        decoder_layers_per_block=(1,) * n,
        encoder_qkv_multiscales=((),) * n,
        decoder_qkv_multiscales=((),) * n,
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=1.0,
    )


def build_text_encoder(cfg: GeneratorConfig, tokenizer):
    """A fresh Gemma2 text encoder over the world's tokenizer."""
    from transformers import Gemma2Config, Gemma2Model

    return Gemma2Model(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=cfg.text_dim,
            intermediate_size=2 * cfg.text_dim,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=cfg.text_dim // 2,
            max_position_embeddings=64,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )


def build_transformer(cfg: GeneratorConfig):
    """A fresh Sana DiT of the config's depth and width."""
    from diffusers import SanaTransformer2DModel

    width = cfg.num_heads * cfg.head_dim
    return SanaTransformer2DModel(
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.head_dim,
        num_layers=cfg.num_layers,
        num_cross_attention_heads=cfg.num_heads,
        cross_attention_head_dim=cfg.head_dim,
        cross_attention_dim=width,
        caption_channels=cfg.text_dim,
        sample_size=cfg.latent_grid,
        patch_size=1,
        qk_norm="rms_norm_across_heads",
        guidance_embeds=True,
        guidance_embeds_scale=GUIDANCE_EMBEDS_SCALE,
        timestep_scale=1000.0,
        interpolation_scale=1,  # sin-cos position embedding: "left of" needs absolute position
    )


def assemble_pipeline(tokenizer, text_encoder, vae, transformer):
    """A SanaSprintPipeline of the trained parts, with the SCM scheduler."""
    from diffusers import SanaSprintPipeline, SCMScheduler

    pipe = SanaSprintPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=SCMScheduler()
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tokenize(tokenizer, prompts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and mask exactly as SanaSprintPipeline makes them (right padding to max_length,
    lower-cased, no instruction preamble)."""
    tokenizer.padding_side = "right"
    enc = tokenizer([p.lower().strip() for p in prompts], padding="max_length", max_length=max_length,
                    truncation=True, add_special_tokens=True, return_tensors="pt")
    return enc.input_ids, enc.attention_mask


def encode_text(tokenizer, text_encoder, prompts: list[str], max_length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt embeddings and mask as SanaSprintPipeline makes them."""
    ids, mask = tokenize(tokenizer, prompts, max_length)
    return encode_tokens(text_encoder, ids.to(device), mask.to(device))


def encode_tokens(text_encoder, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings and mask of already tokenized prompts (training batches of pre-tokenized captions)."""
    return text_encoder(ids, attention_mask=mask)[0], mask


def velocity(transformer, x, tau, embeds, mask, guidance):
    """The DiT's flow velocity (n - x0) at flow time tau in [0, 1]."""
    return transformer(x, encoder_hidden_states=embeds, encoder_attention_mask=mask, timestep=tau,
                       guidance=guidance, return_dict=False)[0]


def flow_loss(text_encoder, transformer, x0, noise, tau, ids, mask, guidance):
    """The teacher's rectified-flow loss: the DiT's velocity at x_tau against n - x0."""
    embeds, mask = encode_tokens(text_encoder, ids, mask)
    t4 = tau.view(-1, 1, 1, 1)
    pred = velocity(transformer, (1 - t4) * x0 + t4 * noise, tau, embeds, mask, guidance)
    return torch.nn.functional.mse_loss(pred, noise - x0)


def compile_blocks(transformer) -> None:
    """torch.compile each DiT block in place (weights and their names unchanged); one block's
    graph serves all of them."""
    for block in transformer.transformer_blocks:
        block.compile()


def one_step(transformer, noise, embeds, mask, guidance_scale):
    """x0 from noise in one step, with exactly SanaSprintPipeline's arithmetic
    (num_inference_steps=1, max_timesteps=1.5708); noise ~ N(0, I) in the DiT's units."""
    t = torch.full((noise.shape[0],), SCM_MAX_T, device=noise.device)
    tau = torch.sin(t) / (torch.cos(t) + torch.sin(t))
    tau4 = tau.view(-1, 1, 1, 1)
    scale = torch.sqrt(tau4**2 + (1 - tau4) ** 2)
    x_in = noise * scale
    guidance = torch.as_tensor(guidance_scale, dtype=noise.dtype, device=noise.device).expand(noise.shape[0])
    v = velocity(transformer, x_in, tau, embeds, mask, guidance * GUIDANCE_EMBEDS_SCALE)
    trig = ((1 - 2 * tau4) * x_in + (1 - 2 * tau4 + 2 * tau4**2) * v) / scale
    t4 = t.view(-1, 1, 1, 1)
    return torch.cos(t4) * noise - torch.sin(t4) * trig


@torch.no_grad()
def teacher_sample(transformer, noise, embeds, mask, null_embeds, null_mask, guidance_scale, steps: int):
    """Deterministic multi-step Euler sampling of the rectified flow, with classifier-free
    guidance (diffusers' FlowMatchEulerDiscreteScheduler). guidance_scale: float or (B,) tensor."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    sched.set_timesteps(steps, device=noise.device)
    b = noise.shape[0]
    w = torch.as_tensor(guidance_scale, dtype=noise.dtype, device=noise.device).expand(b).view(-1, 1, 1, 1)
    ones = torch.ones(2 * b, device=noise.device) * GUIDANCE_EMBEDS_SCALE
    both_embeds = torch.cat([embeds, null_embeds.expand(b, -1, -1)])
    both_mask = torch.cat([mask, null_mask.expand(b, -1)])
    x = noise
    for t in sched.timesteps:
        tau = (t / 1000.0).expand(2 * b)
        v_cond, v_null = velocity(transformer, torch.cat([x, x]), tau, both_embeds, both_mask, ones).chunk(2)
        x = sched.step(v_null + w * (v_cond - v_null), t, x, return_dict=False)[0]
    return x


def logit_normal(n: int, generator: torch.Generator, device) -> torch.Tensor:
    """Flow times from a logit-normal(0, 1) distribution (SD3)."""
    return torch.sigmoid(torch.randn(n, generator=generator)).to(device)
