"""One instrument on a diffusers DiT pipeline: read sites, write blocks, stop early, replay a cache.

    with trace(pipe, reads=["block.7", "image"], writes={"block.5": replace_tokens(donor, region)}) as t:
        pipe(prompt, ...)
    h7, image = t.last("block.7"), t.last("image")

    with trace(pipe, replay=(9, cached)):    # blocks 0-8 skipped, block 9 returns `cached`
        pipe(prompt, ...)                     # the later blocks and the decoder run as usual

One forward hook per module: a block's hook applies its writes (in the order given) and then records
the block's reads, so a read sees the edited output. The decoder is reached as modules: `ae_latent` is
the input of `vae.post_quant_conv` (or of `vae.decoder` when there is none), `image` the output of
`vae.decoder`, `vision` the vision encoder's features of that image. Hooks are always removed (also
on an exception); traces do not nest; on a normal exit every site must have fired as often as
expected (blocks `calls` times, late sites once), else a RuntimeError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from diffusers.image_processor import VaeImageProcessor

from vhslab.trace.site import Site, SiteError, find_transformer, parse_sites, pipeline_sites

VisionFn = Callable[[np.ndarray], torch.Tensor]  # uint8 (B, H, W, 3) -> (B, tokens, width)
EditFn = Callable[[torch.Tensor], torch.Tensor]  # (B, tokens, width) -> same shape
SiteLike = str | Site


def to_uint8(decoded: torch.Tensor) -> np.ndarray:
    """VAE output in [-1, 1], (B, 3, H, W) -> uint8 (B, H, W, 3), rounded as diffusers does for PIL."""
    arr = VaeImageProcessor.pt_to_numpy(VaeImageProcessor.denormalize(decoded.float().cpu()))
    return (arr * 255).round().astype(np.uint8)


class _StopForward(Exception):
    """Raised by a hook after the last needed site; swallowed by the trace that raised it."""

    def __init__(self, owner: Trace):
        super().__init__("vhslab trace: forward stopped early")
        self.owner = owner


class _Skip(torch.nn.Module):
    """Stands in for a block before the replayed one: passes its input through untouched."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


class _Replay(torch.nn.Module):
    """Stands in for the replayed block: returns its recorded output."""

    def __init__(self, cached: torch.Tensor):
        super().__init__()
        self.cached = cached

    def forward(self, hidden_states, *args, **kwargs):
        if hidden_states.shape != self.cached.shape:
            raise SiteError(f"cached hidden state {tuple(self.cached.shape)} does not fit {tuple(hidden_states.shape)}")
        return self.cached.to(hidden_states.device, hidden_states.dtype)


class Trace:
    """Context manager: see the module docstring and `trace`."""

    def __init__(self, model: Any, reads: SiteLike | Sequence[SiteLike] = (), *,
                 writes: Mapping[SiteLike, EditFn | Sequence[EditFn]] | None = None,
                 replay: tuple[int, torch.Tensor] | None = None, calls: int = 1, dtype: torch.dtype = torch.float16,
                 stop: bool = True, vision: VisionFn | None = None, device: str | torch.device = "cpu",
                 tokens: Any = None):
        self.model, self.vision, self.calls = model, vision, calls
        self.dtype, self.device, self.tokens = dtype, torch.device(device), tokens
        self.dit = find_transformer(model)
        self.sites = parse_sites(reads, model, vision) if (isinstance(reads, str) or reads) else []  # before compute
        self.writes = self._parse_writes(writes or {})
        self.replay = self._parse_replay(replay)
        blocks = {s.index for s in self.sites if s.is_block} | set(self.writes)
        self._late = any(s.is_late for s in self.sites)
        self.stop_block = max(blocks) if (stop and blocks and not self._late) else None
        self._blocks = sorted(blocks)
        self.fired: dict[int, int] = {}
        self.states: dict[Site, list[Any]] = {s: [] for s in self.sites}
        self._handles: list[Any] = []
        self._swapped: list[tuple[int, torch.nn.Module]] = []

    def _parse_writes(self, writes: Mapping[SiteLike, Any]) -> dict[int, list[EditFn]]:
        valid = [s for s in pipeline_sites(self.model) if s.is_block]
        out: dict[int, list[EditFn]] = {}
        for name, fns in writes.items():
            site = Site.parse(name)
            if not site.is_block or site.step is not None:
                raise SiteError(f"writes act on a block site (block.k, every call), got {str(name)!r}")
            if site not in valid:
                raise SiteError(f"{site}: the model has blocks 0-{len(valid) - 1}")
            out.setdefault(site.index, []).extend([fns] if callable(fns) else list(fns))
        return out

    def _parse_replay(self, replay: tuple[int, torch.Tensor] | None) -> tuple[int, torch.Tensor] | None:
        if replay is None:
            return None
        block, cached = replay
        n = len(self.dit.transformer_blocks)
        if not 0 <= int(block) < n:
            raise SiteError(f"replay from {Site.block(block)}: the model has blocks 0-{n - 1}")
        early = [str(s) for s in self.sites if s.is_block and s.index <= block] + [
            str(Site.block(i)) for i in self.writes if i <= block]
        if early:
            raise SiteError(f"{', '.join(early)} do not run when replaying from {Site.block(block)}")
        return int(block), cached

    # -- hooks -------------------------------------------------------------
    def _keep(self, t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(device=self.device, dtype=self.dtype, copy=True)

    def _block_hook(self, index: int):
        fns = self.writes.get(index, [])
        reads = [s for s in self.sites if s.is_block and s.index == index]

        def hook(_module, _args, output):
            call = self.fired[index] = self.fired.get(index, 0) + 1
            out = output[0] if isinstance(output, tuple) else output
            for fn in fns:
                out = fn(out)
            kept = out if self.tokens is None else out[:, self.tokens]
            for site in reads:
                if site.step is None or site.step == call - 1:
                    self.states[site].append(self._keep(kept))
            if index == self.stop_block and call >= self.calls:
                raise _StopForward(self)
            if fns:
                return (out, *output[1:]) if isinstance(output, tuple) else out
            return None

        return hook

    def _latent_hook(self, _module, args):
        z = args[0]
        self.states[Site("ae_latent")].append(self._keep(z.flatten(2).transpose(1, 2)))

    def _decoder_hook(self, _module, _args, decoded):
        image = to_uint8(decoded)
        if Site("image") in self.states:
            self.states[Site("image")].append(image)
        if Site("vision") in self.states:
            self.states[Site("vision")].append(self._keep(self.vision(image)))

    def _add_hooks(self) -> None:
        for i in self._blocks:
            self._handles.append(self.dit.transformer_blocks[i].register_forward_hook(self._block_hook(i)))
        vae = getattr(self.model, "vae", None)
        if Site("ae_latent") in self.states:
            first = vae.post_quant_conv if getattr(vae, "post_quant_conv", None) is not None else vae.decoder
            self._handles.append(first.register_forward_pre_hook(self._latent_hook))
        if Site("image") in self.states or Site("vision") in self.states:
            self._handles.append(vae.decoder.register_forward_hook(self._decoder_hook))
        if self.replay is not None:
            block, cached = self.replay
            blocks = self.dit.transformer_blocks
            for i in range(block + 1):
                self._swapped.append((i, blocks[i]))
                blocks[i] = _Replay(cached) if i == block else _Skip()

    # -- context -----------------------------------------------------------
    def __enter__(self) -> Trace:
        if any(self.states.values()) or self.fired:
            raise RuntimeError("this trace already holds a run's states; make a new Capture/trace for each pipeline call")
        if getattr(self.dit, "_vhslab_trace", None) is not None:
            raise RuntimeError("a trace is already active on this model; traces do not nest: "
                               "list every read, write and replay in one trace")
        self.dit._vhslab_trace = self
        try:
            self._add_hooks()
        except BaseException:
            self._remove()
            raise
        return self

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        blocks = self.dit.transformer_blocks
        for i, block in self._swapped:
            blocks[i] = block
        self._swapped.clear()
        if getattr(self.dit, "_vhslab_trace", None) is self:
            self.dit._vhslab_trace = None

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._remove()
        if exc is not None and not (isinstance(exc, _StopForward) and exc.owner is self):
            return False
        self._check_counts()
        return exc is not None

    def _check_counts(self) -> None:
        bad = [f"{s} fired {len(got)} times, expected {1 if s.is_late or s.step is not None else self.calls}"
               for s, got in self.states.items() if len(got) != (1 if s.is_late or s.step is not None else self.calls)]
        bad += [f"{Site.block(i)} fired {self.fired.get(i, 0)} times, expected {self.calls}"
                for i in self._blocks if self.fired.get(i, 0) != self.calls]
        if bad:
            raise RuntimeError(
                "trace incomplete: " + "; ".join(dict.fromkeys(bad)) + ". A skipped block usually means a caching "
                "hook (e.g. FirstBlockCache) is enabled on the transformer, or `calls` does not match steps x "
                "guidance calls; a late site firing more than once, that the VAE decodes in slices.")

    # -- results -----------------------------------------------------------
    def __getitem__(self, site: SiteLike) -> torch.Tensor | np.ndarray:
        """All calls of a site stacked: (calls, B, ...) for blocks; (1, B, ...) for late sites."""
        site = Site.parse(site)
        got = self.states[site]
        return np.stack(got) if site.kind == "image" else torch.stack(got)

    def last(self, site: SiteLike) -> torch.Tensor | np.ndarray:
        """The last call of a site: (B, ...)."""
        return self.states[Site.parse(site)][-1]


def trace(model: Any, reads: SiteLike | Sequence[SiteLike] = (), **options: Any) -> Trace:
    """A `Trace` of `model` (a pipeline or a DiT).

    reads: sites to record ('all', a comma list, or Sites). writes: {block site: edit fn(s)}, applied to
    the block's output on every call. replay: (block, cached output): blocks before it are skipped and
    it returns `cached`. calls: forward calls per block (steps x guidance calls). dtype/device: how
    reads are kept (converted inside the hook). stop: end the forward after the deepest read or written
    block when no late site is read. vision: the encoder of the `vision` site. tokens: an index of the
    tokens to keep at block reads.
    """
    return Trace(model, reads, **options)


__all__ = ["EditFn", "Trace", "VisionFn", "to_uint8", "trace"]
