"""The (step x block) grid an extraction captures from a multi-step pipeline, checked before compute."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vhslab.errors import InputError
from vhslab.trace.site import Site, find_transformer


@dataclass(frozen=True)
class Grid:
    """The (step x block) grid a store holds: `steps` (the captured denoising steps), `total` (the
    pipeline's), `latents` (x_t and/or x0_hat at each captured step)."""

    steps: tuple[int, ...]
    total: int
    latents: tuple[str, ...] = ()

    @property
    def multi(self) -> bool:
        """A multi-step pipeline: the store has a `step` dim (even for one captured step)."""
        return self.total > 1

    @property
    def at(self) -> tuple[int | None, ...]:
        """The step of each block read: None (every call) for a one-step pipeline."""
        return self.steps if self.multi else (None,)

    def reads(self, sites: list[Site]) -> list[Site]:
        """The trace reads: each block at each step, x_t / x0_hat at each step, the other sites."""
        blocks = [Site.block(s.index, n) for s in sites if s.is_block for n in self.at]
        return sorted(set(blocks + [Site(k, step=n) for k in self.latents for n in self.steps]
                          + [s for s in sites if not s.is_block] + [Site("image")]))

    def key(self) -> dict:
        """Content-key parts: none for the default grid (every step, no latents), so older stores resume."""
        out: dict[str, Any] = {}
        if self.steps != tuple(range(self.total)):
            out["steps"] = list(self.steps)
        if self.latents:
            out["latents"] = list(self.latents)
        return out


def check_grid(steps: Sequence[int] | None, total: int, x_t: bool, x0_hat: bool, pipe: Any) -> Grid:
    """The grid of an extract call, checked before any compute: steps in 0..total-1, without repeats."""
    if steps is None:
        chosen = tuple(range(total))
    else:
        if isinstance(steps, (str, bytes)) or not all(isinstance(n, (int, np.integer)) for n in steps) or not len(steps):
            raise InputError(f"steps (--capture-steps) must be a non-empty list of step indices, got {steps!r}")
        chosen = tuple(sorted({int(n) for n in steps}))
        bad = [n for n in chosen if not 0 <= n < total]
        if bad or len(chosen) != len(steps):
            raise InputError(f"steps {list(steps)} (--capture-steps): the pipeline runs {total} step(s), so steps are distinct "
                             f"indices in 0-{total - 1}" + (f"; out of range: {bad}" if bad else "; repeated"))
    latents = tuple(k for k, on in (("x_t", x_t), ("x0_hat", x0_hat)) if on)
    if latents and not callable(getattr(getattr(pipe, "scheduler", None), "step", None)):
        raise InputError("x_t / x0_hat need a pipeline with a scheduler")
    return Grid(chosen, total, latents)


def with_layers(sites: list[Site], layers: Sequence[int] | None, pipe: Any) -> list[Site]:
    """`sites` with its blocks replaced by `layers` (when given), each checked against the DiT."""
    if layers is None:
        return sites
    n = len(find_transformer(pipe).transformer_blocks)
    if isinstance(layers, (str, bytes)) or not all(isinstance(k, (int, np.integer)) and 0 <= k < n for k in layers):
        raise InputError(f"layers must be block indices in 0-{n - 1}, got {layers!r}")
    return sorted({Site.block(int(k)) for k in layers} | {s for s in sites if not s.is_block})



__all__ = ["Grid", "check_grid", "with_layers"]
