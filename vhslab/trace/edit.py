"""Edit a DiT block's output tokens during generation: the capture hook's sibling.

    with Edit(pipe, "block.5", replace_tokens(donor, region)) as edit:
        pipe(...)                      # block 5's output has `region` taken from `donor`

Edits: `replace_tokens` (another candidate's tokens in a region), `ablate_tokens` (zero or a mean),
`add_direction` (steering: + coefficient * direction on chosen tokens). Guarantees as `Capture`'s:
the hook is always removed, edits do not nest, and the block must fire exactly `calls` times (a
caching hook that skips the block is an error, not a silent no-op). To read the edited run, enter
the `Edit` first and a `Capture` inside it: hooks on one block run in the order they were added.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from vhslab.errors import InputError
from vhslab.trace.capture import find_transformer

EditFn = Callable[[torch.Tensor], torch.Tensor]  # (B, tokens, width) -> same shape


class PatchError(InputError):
    """Bad input to an edit (unknown site, wrong shapes, a region outside the grid)."""


def region_mask(side: int, region: str) -> np.ndarray:
    """(side*side,) bool of a named latent-grid region: `all`, `top`, `bottom`, `left`, `right`, or
    `q{r}{c}` (quadrant row r, column c in 0-1)."""
    r, c = np.divmod(np.arange(side * side), side)
    half = side / 2
    named = {"all": np.ones(side * side, bool), "top": r < half, "bottom": r >= half, "left": c < half, "right": c >= half}
    if region in named:
        return named[region]
    if len(region) == 3 and region[0] == "q" and region[1] in "01" and region[2] in "01":
        return ((r >= half) == (region[1] == "1")) & ((c >= half) == (region[2] == "1"))
    raise PatchError(f"unknown region {region!r}: all, top, bottom, left, right or q00/q01/q10/q11")


def replace_tokens(donor: torch.Tensor, tokens: np.ndarray) -> EditFn:
    """Tokens `tokens` (bool over the grid) taken from `donor` (B or 1, tokens, width)."""
    idx = torch.as_tensor(tokens)

    def edit(out: torch.Tensor) -> torch.Tensor:
        if donor.shape[1:] != out.shape[1:]:
            raise PatchError(f"donor tokens {tuple(donor.shape)} do not fit the block output {tuple(out.shape)}")
        out = out.clone()
        out[:, idx] = donor.to(out.dtype).expand(out.shape[0], -1, -1)[:, idx]
        return out

    return edit


def ablate_tokens(tokens: np.ndarray, value: torch.Tensor | None = None) -> EditFn:
    """Tokens set to zero, or to `value` (width,) e.g. a mean."""
    idx = torch.as_tensor(tokens)

    def edit(out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[:, idx] = 0.0 if value is None else value.to(out.dtype)
        return out

    return edit


def add_direction(direction: torch.Tensor, coefficient: float, tokens: np.ndarray | None = None) -> EditFn:
    """+ coefficient * direction (width,) on `tokens` (default every token)."""
    def edit(out: torch.Tensor) -> torch.Tensor:
        if direction.shape[-1] != out.shape[-1]:
            raise PatchError(f"a direction of width {direction.shape[-1]} does not fit the block's {out.shape[-1]}")
        add = coefficient * direction.to(out.dtype)
        if tokens is None:
            return out + add
        out = out.clone()
        out[:, torch.as_tensor(tokens)] += add
        return out

    return edit


class Edit:
    """Context manager: `fn` applied to the output of `site` (block.k) on every call of the block."""

    def __init__(self, model, site: str, fn: EditFn, calls: int = 1):
        self.dit = find_transformer(model)
        if not site.startswith("block.") or not site[6:].isdigit():
            raise PatchError(f"edits act on a block site (block.k), got {site!r}")
        self.index = int(site[6:])
        if self.index >= len(self.dit.transformer_blocks):
            raise PatchError(f"{site}: the model has blocks 0-{len(self.dit.transformer_blocks) - 1}")
        self.fn, self.calls, self.fired, self._handle = fn, calls, 0, None

    def _hook(self, _module, _args, output):
        self.fired += 1
        if isinstance(output, tuple):
            return (self.fn(output[0]), *output[1:])
        return self.fn(output)

    def __enter__(self) -> Edit:
        if getattr(self.dit, "_vhslab_edit", None) is not None:
            raise RuntimeError("an Edit is already active on this model; edits do not nest: compose them in one function")
        self.dit._vhslab_edit = self
        self._handle = self.dit.transformer_blocks[self.index].register_forward_hook(self._hook)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._handle.remove()
        self.dit._vhslab_edit = None
        if exc is None and self.fired != self.calls:
            raise RuntimeError(f"block.{self.index} fired {self.fired} times under the edit, expected {self.calls}; "
                               "a caching hook (e.g. FirstBlockCache) may skip it")
        return False
