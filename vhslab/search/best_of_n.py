"""Best-of-N with a latent verifier, the way it should run: the prompt encoded once, candidates in
batches through only the blocks up to the verifier's site, scored, and only the winner finished
from its cached hidden state through the remaining blocks and decoded once.

    res = best_of_n(world.pipeline, vhslab.load_verifier(), "a photo of two red circles", n=8)
    res.image, res.scores, res.chosen, res.timings

One-step pipelines (SANA-Sprint): the DiT runs once per candidate, so the hidden state of block l
is all the winner needs to be finished. `finish_from_cache` swaps blocks 0..l for a replay of that
state for one call; everything else (patch embedding, timestep and caption paths, the later
blocks, the decoder) runs as in a plain call, so the winner equals the same candidate made in one
full call.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from vhslab.data.capture import Capture, find_transformer
from vhslab.data.generate import GenConfig, sample_seed


class SearchError(ValueError):
    """Bad input to a search (N < 1, a site the generator lacks, a multi-step pipeline, ...)."""


@dataclass
class SearchResult:
    image: np.ndarray  # (H, W, 3) uint8: the chosen candidate
    scores: np.ndarray  # (n,) the verifier's score of every candidate
    chosen: int
    seeds: list[int]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    @property
    def n(self) -> int:
        return len(self.scores)


class _Skip(torch.nn.Module):
    """Stands in for a block before the cached one: passes its input through untouched."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


class _Replay(torch.nn.Module):
    """Stands in for the cached block: returns its recorded output."""

    def __init__(self, cached: torch.Tensor):
        super().__init__()
        self.cached = cached

    def forward(self, hidden_states, *args, **kwargs):
        if hidden_states.shape != self.cached.shape:
            raise SearchError(f"cached hidden state {tuple(self.cached.shape)} does not fit {tuple(hidden_states.shape)}")
        return self.cached.to(hidden_states.dtype)


@contextlib.contextmanager
def finish_from_cache(pipe, block: int, cached: torch.Tensor):
    """Within the context, a call of `pipe` skips blocks 0..block and starts from `cached`."""
    blocks = find_transformer(pipe).transformer_blocks
    saved = [blocks[i] for i in range(block + 1)]
    try:
        for i in range(block):
            blocks[i] = _Skip()
        blocks[block] = _Replay(cached)
        yield
    finally:
        for i, b in enumerate(saved):
            blocks[i] = b


def initial_noise(pipe, seeds: list[int], gen: GenConfig) -> torch.Tensor:
    """The starting latents the pipeline draws for these seeds (one CPU generator per candidate)."""
    from diffusers.utils.torch_utils import randn_tensor

    dit = find_transformer(pipe)
    shape = (len(seeds), dit.config.in_channels, gen.height // pipe.vae_scale_factor, gen.width // pipe.vae_scale_factor)
    return randn_tensor(shape, generator=[torch.Generator("cpu").manual_seed(s) for s in seeds], dtype=torch.float32)


def check_search(pipe, verifier, n: int | None, gen: GenConfig) -> int:
    """Every input error before any compute; returns the verifier's block index."""
    if n is not None and (not isinstance(n, int) or n < 1):
        raise SearchError(f"N must be an integer >= 1, got {n!r}")
    if gen.steps != 1:
        raise SearchError(f"finishing the winner from its cache needs a one-step pipeline; this one runs {gen.steps} steps")
    site = verifier.config.site
    if not site.startswith("block."):
        raise SearchError(f"best_of_n with a cached winner needs a block-site verifier; this one reads {site!r}")
    block = int(site.split(".")[1])
    num = len(find_transformer(pipe).transformer_blocks)
    if block >= num:
        raise SearchError(f"the verifier reads {site}, but the generator has blocks 0-{num - 1}")
    return block


@torch.no_grad()
def best_of_n(pipe, verifier, prompt: str, n: int, *, seed: int = 0, batch_size: int = 8,
              gen: GenConfig | None = None) -> SearchResult:
    """Generate n candidates up to the verifier's block, score them, finish and decode the winner."""
    gen = (gen or GenConfig()).resolve(pipe)
    block = check_search(pipe, verifier, n, gen)
    kwargs = gen.call_kwargs(pipe)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    embeds, mask = pipe.encode_prompt(prompt, device=pipe.device, max_sequence_length=kwargs.get("max_sequence_length", 300),
                                      complex_human_instruction=None, clean_caption=False)
    timings["encode_prompt"] = time.perf_counter() - t0
    seeds = [sample_seed(seed, prompt, j) for j in range(n)]
    noise = initial_noise(pipe, seeds, gen)
    drop = ("max_sequence_length", "complex_human_instruction", "clean_caption")
    call = {k: v for k, v in kwargs.items() if k not in drop}
    states, scores = [], []
    t_gen = t_score = 0.0
    for lo in range(0, n, batch_size):
        b = min(batch_size, n - lo)
        t0 = time.perf_counter()
        with Capture(pipe, [f"block.{block}"], dtype=torch.float32, stop=True) as cap:
            pipe(prompt_embeds=embeds.expand(b, -1, -1), prompt_attention_mask=mask.expand(b, -1),
                 latents=noise[lo:lo + b], output_type="latent", **call)
        hidden = cap[f"block.{block}"][0]  # (b, tokens, channels)
        t_gen += time.perf_counter() - t0
        t0 = time.perf_counter()
        scores.append(verifier.score(hidden, [prompt] * b, batch_size=b))
        t_score += time.perf_counter() - t0
        states.append(hidden)
    timings["generate_to_site"], timings["score"] = t_gen, t_score
    scores = np.concatenate(scores)
    chosen = int(np.argmax(scores))
    t0 = time.perf_counter()
    cached = torch.cat(states)[chosen:chosen + 1]
    with finish_from_cache(pipe, block, cached):
        out = pipe(prompt_embeds=embeds, prompt_attention_mask=mask, latents=noise[chosen:chosen + 1],
                   output_type="np", **call)
    timings["finish_winner"] = time.perf_counter() - t0
    timings["total"] = sum(timings.values())
    image = (np.asarray(out.images[0]) * 255).round().astype(np.uint8)  # as Capture's `image` site rounds
    return SearchResult(image, scores, chosen, seeds, timings)
