"""Capture hidden states of a diffusers DiT (and the decoder/vision baselines): a read-only `trace`.

Sites (`vhslab.trace.site`): `block.{i}` (output of `transformer.transformer_blocks[i]`, shape
(B, tokens, width)), `ae_latent` (the latent handed to the decoder, as (B, h*w, channels), row-major),
`image` (decoded pixels, uint8 (B, H, W, 3)) and `vision` (the vision encoder's features of that
image, (B, tokens, width)).

    with Capture(pipe, ["block.7"]) as cap:
        pipe(prompt, ...)          # stops right after block 7
    h7 = cap.last("block.7")        # (B, H*W, C), float16 on the CPU
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vhslab.trace.site import Site
from vhslab.trace.trace import Trace, VisionFn


class Capture(Trace):
    """Context manager that records `sites` while a pipeline (or DiT) runs: `trace` with reads only.

    calls: forward calls expected per site (denoising steps x guidance calls per step).
    dtype: storage dtype, applied inside the hook together with the move to `device`.
    stop: end the forward after the deepest requested block when no later site is needed.
    tokens: optional index of the tokens to keep (applied to block sites).
    branch: the guidance rows a block read keeps: "cond" (default), "uncond" or "both".
    """

    def __init__(self, model: Any, sites: str | Site | Sequence[str | Site], *, calls: int = 1,
                 dtype: torch.dtype = torch.float16, stop: bool = True, vision: VisionFn | None = None,
                 device: str | torch.device = "cpu", tokens: Any = None, branch: str = "cond"):
        super().__init__(model, sites, calls=calls, dtype=dtype, stop=stop, vision=vision, device=device, tokens=tokens,
                         branch=branch)


__all__ = ["Capture"]
