"""ROAD's noisy linear imputation on a latent token grid (Rong et al. 2022, "A Consistent and Efficient
Evaluation Strategy for Attribution Methods").

Setting removed tokens to the verifier's mean (the IG baseline) moves them off the data: any token far
from the mean then moves the margin when removed, whatever the model reads. ROAD removes a token's
information without leaving the data: each removed token becomes the weighted mean of its 8 grid
neighbours (1/6 for the 4 direct ones, 1/12 for the diagonals, as in ROAD), kept neighbours fixed and
removed ones solved jointly (a small linear system), plus a little Gaussian noise so the mask's shape
is not left as a clean linear trace.

Hand-written: ROAD's reference code and pytorch-grad-cam's port impute (C, H, W) images one at a time
through scipy.sparse and neither is in our stack; captum has no imputation. A token grid has at most a
few hundred cells, so a dense solve per sample is exact and fast.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

from vhslab.errors import InputError

NEIGHBOURS = (((0, 1), 1 / 6), ((1, 0), 1 / 6), ((0, -1), 1 / 6), ((-1, 0), 1 / 6),
              ((1, 1), 1 / 12), ((1, -1), 1 / 12), ((-1, 1), 1 / 12), ((-1, -1), 1 / 12))


@cache
def neighbour_weights(side: int) -> np.ndarray:
    """(side^2, side^2) weights: [i, j] = ROAD's weight of cell j as a neighbour of cell i (row-major)."""
    w = np.zeros((side * side, side * side))
    rows, cols = np.divmod(np.arange(side * side), side)
    for (dr, dc), weight in NEIGHBOURS:
        r, c = rows + dr, cols + dc
        ok = (r >= 0) & (r < side) & (c >= 0) & (c < side)
        w[np.flatnonzero(ok), (r * side + c)[ok]] = weight
    return w


def road_impute(hidden: torch.Tensor, drop: np.ndarray, scale: torch.Tensor, noise: float = 0.01,
                rng: np.random.Generator | None = None) -> torch.Tensor:
    """`hidden` (sample, token, channel) with the tokens in `drop` (sample, token) bool imputed from their
    grid neighbours, plus N(0, (noise * scale)^2) per channel (`scale`: the channels' standard deviation,
    so `noise` is in the verifier's normalised units). Every sample must keep at least one token."""
    _, t, c = hidden.shape
    side = round(t**0.5)
    if side * side != t:
        raise InputError(f"{t} tokens are no square grid to impute on")
    drop = np.asarray(drop, bool)
    if drop.all(1).any():
        raise InputError("ROAD imputation needs at least one kept token per sample")
    w = neighbour_weights(side)
    rng = rng or np.random.default_rng(0)
    x = hidden.detach().cpu().double().numpy()
    out = x.copy()
    sd = np.asarray(scale, np.float64).reshape(1, -1) * noise
    for i in np.flatnonzero(drop.any(1)):
        gone = drop[i]
        w_gone = w[gone]
        system = np.diag(w_gone.sum(1)) - w_gone[:, gone]  # removed = weighted mean of all its neighbours
        out[i, gone] = np.linalg.solve(system, w_gone[:, ~gone] @ x[i, ~gone])
        out[i, gone] += rng.standard_normal((int(gone.sum()), c)) * sd
    return torch.as_tensor(out, dtype=hidden.dtype)
