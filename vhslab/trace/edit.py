"""Edit a DiT block's output tokens during generation: the edit functions `trace` writes with.

    with Edit(pipe, "block.5", replace_tokens(donor, region)) as edit:
        pipe(...)                      # block 5's output has `region` taken from `donor`

Edits: `replace_tokens` (another candidate's tokens in a region), `ablate_tokens` (zero or a mean),
`add_direction` (steering: + coefficient * direction on chosen tokens). Guarantees as `Capture`'s:
the hook is always removed, edits do not nest, and the block must fire exactly `calls` times (a
caching hook that skips the block is an error, not a silent no-op). To read the edited run, enter
one `trace` with both reads and writes: a block's reads see its edited output.
"""

from __future__ import annotations

import numpy as np
import torch

from vhslab.errors import InputError
from vhslab.trace.site import Site, SiteError
from vhslab.trace.trace import EditFn, Trace


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


class Edit(Trace):
    """Context manager: `fn` applied to the output of `site` (block.k) on every call of the block: `trace`
    with one write."""

    def __init__(self, model, site: str | Site, fn: EditFn, calls: int = 1):
        try:
            super().__init__(model, writes={site: fn}, calls=calls, stop=False)
        except SiteError as err:
            raise PatchError(f"edits act on a block site of the model: {err}") from None


__all__ = ["Edit", "PatchError", "ablate_tokens", "add_direction", "region_mask", "replace_tokens"]
