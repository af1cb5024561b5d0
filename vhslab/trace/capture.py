"""Capture hidden states of a diffusers DiT (and the decoder/vision baselines) with hooks.

Sites: `block.{i}` (output of `transformer.transformer_blocks[i]`, shape (B, tokens, width)),
`ae_latent` (the latent handed to `vae.decode`, as (B, h*w, channels), row-major),
`image` (decoded pixels, uint8 (B, H, W, 3)) and `vision` (the vision encoder's features
of that image, (B, tokens, width)).

    with Capture(pipe, ["block.7"]) as cap:
        pipe(prompt, ...)          # stops right after block 7
    h7 = cap.last("block.7")        # (B, H*W, C), float16 on the CPU
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from vhslab.pixels import decoded_to_uint8

LATE_SITES = ("ae_latent", "image", "vision")
VisionFn = Callable[[np.ndarray], torch.Tensor]  # uint8 (B, H, W, 3) -> (B, tokens, width)


class _StopForward(Exception):
    """Raised by a hook after the last needed site; swallowed by the Capture that raised it."""

    def __init__(self, owner: Capture):
        super().__init__("vhslab capture: forward stopped early")
        self.owner = owner


def find_transformer(model: Any) -> torch.nn.Module:
    """The DiT of a pipeline (or the DiT itself): any module with `transformer_blocks`."""
    dit = getattr(model, "transformer", model)
    if not hasattr(dit, "transformer_blocks"):
        raise TypeError(f"{type(dit).__name__} has no `transformer_blocks`: not a supported DiT")
    return dit


def valid_sites(model: Any, vision: VisionFn | None = None) -> list[str]:
    """Site names available on `model` (a pipeline or a DiT)."""
    sites = [f"block.{i}" for i in range(len(find_transformer(model).transformer_blocks))]
    if getattr(model, "vae", None) is not None:
        sites += ["ae_latent", "image"]
        if vision is not None:
            sites.append("vision")
    return sites


def parse_sites(spec: str | Sequence[str], model: Any, vision: VisionFn | None = None) -> list[str]:
    """Expand "all" (every block) and comma lists; raise on unknown sites, listing the valid ones."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    valid = valid_sites(model, vision)
    out: list[str] = []
    for name in (n.strip() for n in names):
        expanded = [s for s in valid if s.startswith("block.")] if name == "all" else [name]
        for site in expanded:
            if site == "vision" and vision is None and "image" in valid:
                raise ValueError("site 'vision' needs a vision encoder (pass `vision=`); none was given")
            if site not in valid:
                raise ValueError(f"unknown site {site!r}; valid sites: {', '.join(valid)} (or 'all')")
            if site not in out:
                out.append(site)
    if not out:
        raise ValueError("no sites requested")
    return sorted(out, key=valid.index)


to_uint8 = decoded_to_uint8  # VAE output in [-1, 1] -> uint8 images: the one conversion, vhslab.pixels


class Capture:
    """Context manager that records `sites` while a pipeline (or DiT) runs.

    calls: forward calls expected per site (denoising steps x guidance calls per step).
    dtype: storage dtype, applied inside the hook together with the move to `device`.
    stop: end the forward after the deepest requested block when no later site is needed.
    tokens: optional index of the tokens to keep (applied to block sites).
    """

    def __init__(
        self,
        model: Any,
        sites: str | Sequence[str],
        *,
        calls: int = 1,
        dtype: torch.dtype = torch.float16,
        stop: bool = True,
        vision: VisionFn | None = None,
        device: str | torch.device = "cpu",
        tokens: Any = None,
    ):
        self.model, self.vision, self.calls = model, vision, calls
        self.dtype, self.device, self.tokens = dtype, torch.device(device), tokens
        self.dit = find_transformer(model)
        self.sites = parse_sites(sites, model, vision)  # fails before any compute
        blocks = [int(s.split(".")[1]) for s in self.sites if s.startswith("block.")]
        late = any(s in LATE_SITES for s in self.sites)
        self.stop_block = max(blocks) if (stop and blocks and not late) else None
        self._blocks = blocks
        self._late = late
        self.states: dict[str, list[Any]] = {s: [] for s in self.sites}
        self._handles: list[Any] = []
        self._vae = None

    # -- hooks -------------------------------------------------------------
    def _keep(self, t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(device=self.device, dtype=self.dtype, copy=True)

    def _block_hook(self, index: int):
        site = f"block.{index}"

        def hook(_module, _args, output):
            out = output[0] if isinstance(output, tuple) else output
            if self.tokens is not None:
                out = out[:, self.tokens]
            self.states[site].append(self._keep(out))
            if index == self.stop_block and len(self.states[site]) >= self.calls:
                raise _StopForward(self)

        return hook

    def _wrap_decode(self, vae: torch.nn.Module) -> None:
        decode = vae.decode

        def wrapped(z, *args, **kwargs):
            if "ae_latent" in self.states:
                self.states["ae_latent"].append(self._keep(z.flatten(2).transpose(1, 2)))
            result = decode(z, *args, **kwargs)
            if "image" in self.states or "vision" in self.states:
                decoded = result[0] if isinstance(result, tuple) else result.sample
                image = to_uint8(decoded)
                if "image" in self.states:
                    self.states["image"].append(image)
                if "vision" in self.states:
                    self.states["vision"].append(self._keep(self.vision(image)))
            return result

        vae.decode = wrapped
        self._vae = vae

    # -- context -----------------------------------------------------------
    def __enter__(self) -> Capture:
        if any(self.states.values()):
            raise RuntimeError("this Capture already holds a run's states; make a new Capture for each pipeline call")
        if getattr(self.dit, "_vhslab_capture", None) is not None:
            raise RuntimeError(
                "a Capture is already active on this model; captures do not nest: list every site in one Capture"
            )
        self.dit._vhslab_capture = self
        try:
            for i in self._blocks:
                block = self.dit.transformer_blocks[i]
                self._handles.append(block.register_forward_hook(self._block_hook(i)))
            if self._late:
                self._wrap_decode(self.model.vae)
        except BaseException:
            self._remove()
            raise
        return self

    def _remove(self) -> None:
        if getattr(self.dit, "_vhslab_capture", None) is self:
            self.dit._vhslab_capture = None
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._vae is not None:
            del self._vae.decode  # drop the instance attribute: the class method is back
            self._vae = None

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._remove()
        if exc is not None and not (isinstance(exc, _StopForward) and exc.owner is self):
            return False
        self._check_counts()
        return exc is not None

    def _check_counts(self) -> None:
        # The late sites fire once per pipeline call (one decode); blocks once per forward call.
        bad = []
        for site, got in self.states.items():
            want = 1 if site in LATE_SITES else self.calls
            if len(got) != want:
                bad.append(f"{site} fired {len(got)} times, expected {want}")
        if bad:
            raise RuntimeError(
                "capture incomplete: " + "; ".join(bad) + ". A skipped block usually means a caching hook "
                "(e.g. FirstBlockCache) is enabled on the transformer, or `calls` does not match "
                "steps x guidance calls."
            )

    # -- results -----------------------------------------------------------
    def __getitem__(self, site: str) -> torch.Tensor | np.ndarray:
        """All calls of a site stacked: (calls, B, ...) for blocks; (1, B, ...) for late sites."""
        got = self.states[site]
        return np.stack(got) if site == "image" else torch.stack(got)

    def last(self, site: str) -> torch.Tensor | np.ndarray:
        """The last call of a site: (B, ...)."""
        return self.states[site][-1]
