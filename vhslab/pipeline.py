"""The generation helpers every caller shares: deterministic sample lists and seeds, the pipeline-call
arguments (GenConfig) and the fingerprints of a generator; used by the world (scoring) and by extraction."""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from vhslab.errors import InputError
from vhslab.shapes.prompts import PromptSpec


@dataclass(frozen=True)
class Sample:
    """One candidate of a sample list: its id, its prompt's row, its generator seed and the prompt."""

    sample_id: int
    prompt_index: int
    seed: int
    spec: PromptSpec


def sample_seed(seed: int, prompt: str, k: int) -> int:
    """The generator seed of candidate k of `prompt` under root `seed`: one independent stream per
    (seed, prompt, k) from numpy's `SeedSequence` (63 bits), so `--seed 1` shares no noise with
    `--seed 0`, and two suites never share a seed even when run with the same root seed."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    words = np.frombuffer(hashlib.sha256(prompt.encode()).digest()[:16], np.uint32)
    state = np.random.SeedSequence([int(seed), int(k), *map(int, words)]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def candidate_offsets(prompts: list[PromptSpec], n_per_prompt: int) -> list[int]:
    """Per prompt row, the index j of its first candidate: candidates are counted per prompt *text*,
    so a prompt listed twice continues where its first listing stopped (fresh noise for every row)."""
    seen: dict[str, int] = {}
    out = []
    for spec in prompts:
        out.append(seen.get(spec.prompt, 0))
        seen[spec.prompt] = out[-1] + n_per_prompt
    return out


def make_samples(prompts: list[PromptSpec], n_per_prompt: int, seed: int = 0) -> list[Sample]:
    """Prompt-major list: sample_id = prompt_index * n_per_prompt + k. Its seed is
    `sample_seed(seed, prompt, j)`, j counting the candidates of that prompt text so far, so a prompt
    listed twice (GenEval repeats prompts) gets fresh noise for every row."""
    if n_per_prompt < 1 or not prompts:
        raise InputError("need at least one prompt and n_per_prompt >= 1")
    out = []
    for p, (spec, first) in enumerate(zip(prompts, candidate_offsets(prompts, n_per_prompt), strict=True)):
        out += [Sample(p * n_per_prompt + k, p, sample_seed(seed, spec.prompt, first + k), spec) for k in range(n_per_prompt)]
    return out


def is_one_step(pipe: Any) -> bool:
    """SANA-Sprint-style pipelines (they take `intermediate_timesteps`) generate in one step."""
    return "intermediate_timesteps" in inspect.signature(pipe.__call__).parameters


def default_steps(pipe: Any) -> int:
    """1 for one-step pipelines, else the pipeline's own default `num_inference_steps`."""
    if is_one_step(pipe):
        return 1
    default = inspect.signature(pipe.__call__).parameters.get("num_inference_steps")
    return int(default.default) if default is not None and isinstance(default.default, int) else 20


def check_steps(pipe: Any, steps: int) -> None:
    """Refuse a step count the pipeline cannot run, before any compute. A multi-step pipeline asked
    for one step (PixArt's one-step branch reads a second output that only one-step schedulers such
    as LCM give) is tried on a copy of its scheduler with a dummy latent."""
    if not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be an integer >= 1, got {steps!r}")
    if steps != 1 or is_one_step(pipe):
        return
    scheduler = copy.deepcopy(pipe.scheduler)
    scheduler.set_timesteps(1)
    x = torch.zeros(1, 1, 2, 2)
    out = scheduler.step(torch.zeros_like(x), scheduler.timesteps[0], x, return_dict=False)
    if len(out) < 2:
        raise InputError(
            f"{type(pipe).__name__} with {type(pipe.scheduler).__name__} cannot generate in one step; "
            f"use --steps {default_steps(pipe)} (its default) or a one-step scheduler (e.g. LCMScheduler)"
        )


@dataclass(frozen=True)
class GenConfig:
    """Generation settings. height/width default to the DiT's sample size x the VAE factor; steps
    to `default_steps` (1 for SANA-Sprint); guidance_scale None keeps the pipeline's default."""

    height: int | None = None
    width: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    max_sequence_length: int = 300

    def resolve(self, pipe: Any) -> GenConfig:
        """Defaults filled in from the pipeline; a step count it cannot run is refused here."""
        size = pipe.transformer.config.sample_size * pipe.vae_scale_factor
        if self.guidance_scale is not None and not math.isfinite(self.guidance_scale):
            raise InputError(f"guidance_scale must be a finite number, got {self.guidance_scale}")
        for name in ("height", "width", "max_sequence_length"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        steps = default_steps(pipe) if self.steps is None else self.steps
        check_steps(pipe, steps)
        return GenConfig(self.height or size, self.width or size, steps, self.guidance_scale, self.max_sequence_length)

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
        """The config as plain JSON data."""
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


def generator_fingerprint(pipe: Any, weights: str | None = None) -> str:
    """A generator's identity in a store's attrs and a verifier's config: its architecture (every component's
    config, without `_name_or_path`, which is where it was loaded from) and its weights (`weights_hash`)."""
    parts = {}
    for name, comp in pipe.components.items():
        cfg = getattr(comp, "config", None)
        if cfg is not None:
            cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
            parts[name] = {k: v for k, v in cfg.items() if k != "_name_or_path"}
    arch = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"{arch}-{weights or weights_hash(pipe)}"


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
