"""Deterministic sample lists and the pipeline-call arguments used for extraction."""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import asdict, dataclass
from typing import Any

import torch

from vhslab.data.prompts import PromptSpec


@dataclass(frozen=True)
class Sample:
    sample_id: int
    prompt_index: int
    seed: int
    spec: PromptSpec


def make_samples(prompts: list[PromptSpec], n_per_prompt: int, seed: int = 0) -> list[Sample]:
    """Prompt-major list: sample_id = prompt_index * n_per_prompt + k, seed = seed + sample_id."""
    if n_per_prompt < 1 or not prompts:
        raise ValueError("need at least one prompt and n_per_prompt >= 1")
    return [
        Sample(p * n_per_prompt + k, p, seed + p * n_per_prompt + k, spec)
        for p, spec in enumerate(prompts)
        for k in range(n_per_prompt)
    ]


@dataclass(frozen=True)
class GenConfig:
    """Generation settings. height/width default to the DiT's sample size x the VAE factor;
    guidance_scale None keeps the pipeline's default."""

    height: int | None = None
    width: int | None = None
    steps: int = 1
    guidance_scale: float | None = None
    max_sequence_length: int = 300

    def resolve(self, pipe: Any) -> GenConfig:
        size = pipe.transformer.config.sample_size * pipe.vae_scale_factor
        return GenConfig(self.height or size, self.width or size, self.steps, self.guidance_scale, self.max_sequence_length)

    def call_kwargs(self, pipe: Any) -> dict:
        """Keyword arguments for `pipe(...)`; only those its `__call__` accepts."""
        want = {
            "num_inference_steps": self.steps,
            "height": self.height,
            "width": self.width,
            "max_sequence_length": self.max_sequence_length,
            "use_resolution_binning": False,  # keep the decoded image at the latent grid's size
            "clean_caption": False,
            "complex_human_instruction": None,  # SANA: no prompt-enhancer preamble
        }
        if self.steps == 1:
            want["intermediate_timesteps"] = None  # SANA-Sprint one-step
        if self.guidance_scale is not None:
            want["guidance_scale"] = self.guidance_scale
        accepted = inspect.signature(pipe.__call__).parameters
        return {k: v for k, v in want.items() if k in accepted}

    def to_dict(self) -> dict:
        return asdict(self)


def config_hash(pipe: Any) -> str:
    """Hash of every component's config (architecture, scheduler, tokenizer size)."""
    parts = {}
    for name, comp in pipe.components.items():
        cfg = getattr(comp, "config", None)
        if cfg is not None:
            parts[name] = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
        elif comp is not None and hasattr(comp, "__len__"):
            parts[name] = {"class": type(comp).__name__, "size": len(comp)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@torch.no_grad()
def weights_hash(pipe: Any, per_tensor: int = 4096) -> str:
    """Fingerprint of the weights: a strided sample of every parameter of every module."""
    h = hashlib.sha256()
    for name, comp in sorted(pipe.components.items()):
        if isinstance(comp, torch.nn.Module):
            for pname, param in comp.state_dict().items():
                flat = param.detach().flatten()
                sample = flat[:: max(1, flat.numel() // per_tensor)].float().cpu().numpy()
                h.update(f"{name}.{pname}{tuple(param.shape)}".encode())
                h.update(sample.tobytes())
    return h.hexdigest()[:16]
