"""One instrument on a diffusers DiT pipeline: read sites, write blocks, stop early, replay a cache.

    with trace(pipe, reads=["block.7", "image"], writes={"block.5": replace_tokens(donor, region)}) as t:
        pipe(prompt, ...)
    h7, image = t.last("block.7"), t.last("image")

    with trace(pipe, replay=(9, cached)):    # blocks 0-8 skipped, block 9 returns `cached`
        pipe(prompt, ...)                     # the later blocks and the decoder run as usual

    with trace(teacher, ["block.3@step2", "x_t@step2", "x0_hat@step2"], calls=8, dtype=torch.float32) as t:
        teacher(prompt, num_inference_steps=8, ...)   # stops after step 2's scheduler step
    t.last("x0_hat@step2"), t.sigmas                   # the clean-latent estimate; sigma of each step run

Steps: `@stepN` is the pipeline's (N+1)-th transformer call, one per denoising step (with
classifier-free guidance diffusers runs both branches in one call on a doubled batch [uncond,
cond]). Block reads keep the conditional rows by default (`branch`: "cond", "uncond" or "both"; a
bare DiT, or a call without guidance, keeps every row); writes act on every row of the chosen call.
While a trace is active on a pipeline, the scheduler's `step` and the pipeline's `prepare_latents`
are wrapped (restored on exit): `x_t@stepN` is the `sample` that step N's `scheduler.step` receives
(the latent the transformer saw at step N); `x0_hat@stepN` the scheduler's `pred_original_sample`,
or for a flow-matching scheduler `sample - sigma_N * model_output` with sigma_N =
`scheduler.sigmas[step_index]`; with guidance the pipeline hands the scheduler the guided output, so
x0_hat is the guided estimate. A write at `x_t@stepN` replaces the latent entering step N exactly:
for N > 0 it edits the `prev_sample` that step N-1's `scheduler.step` returns, for N = 0 the
initial noise `prepare_latents` returns; the transformer and the scheduler both see the edit.

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

from vhslab.pixels import decoded_to_uint8
from vhslab.trace.site import Site, SiteError, check_steps, find_transformer, parse_sites, pipeline_sites

VisionFn = Callable[[np.ndarray], torch.Tensor]  # uint8 (B, H, W, 3) -> (B, tokens, width)
EditFn = Callable[[torch.Tensor], torch.Tensor]  # (B, tokens, width) -> same shape
SiteLike = str | Site
BRANCHES = ("cond", "uncond", "both")  # which rows of a guidance batch [uncond, cond] a block read keeps


to_uint8 = decoded_to_uint8  # VAE output in [-1, 1] -> uint8 images: the one conversion, vhslab.pixels


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
                 tokens: Any = None, branch: str = "cond"):
        if branch not in BRANCHES:
            raise SiteError(f"branch must be one of {', '.join(BRANCHES)}, got {branch!r}")
        self.model, self.vision, self.calls, self.branch = model, vision, calls, branch
        self.dtype, self.device, self.tokens = dtype, torch.device(device), tokens
        self.dit = find_transformer(model)
        self.sites = parse_sites(reads, model, vision, steps=calls) if (isinstance(reads, str) or reads) else []  # before compute
        self.writes, self.x_writes = self._parse_writes(writes or {})
        self.replay = self._parse_replay(replay)
        self._blocks = sorted({s.index for s in self.sites if s.is_block} | set(self.writes))
        self._late = any(s.is_late for s in self.sites)
        self.stop_at = self._stop_point() if stop and not self._late else None
        self.fired: dict[int, int] = {}
        self.states: dict[Site, list[Any]] = {s: [] for s in self.sites}
        self.timesteps: list[float] = []  # per scheduler step run: its timestep and sigma (NaN if none)
        self.sigmas: list[float] = []
        self.batch: int | None = None  # rows of the latents (`prepare_latents`), when the model is a pipeline
        self._handles: list[Any] = []
        self._swapped: list[tuple[int, torch.nn.Module]] = []
        self._wrapped: list[tuple[Any, str, Any]] = []
        self._stopped: tuple[int, int] | None = None

    def _parse_writes(self, writes: Mapping[SiteLike, Any]) -> tuple[dict[int, list], dict[int, list[EditFn]]]:
        valid = [s for s in pipeline_sites(self.model, steps=self.calls) if s.is_block or s.kind == "x_t"]
        blocks: dict[int, list[tuple[int | None, EditFn]]] = {}
        latents: dict[int, list[EditFn]] = {}
        for name, fns in writes.items():
            site = Site.parse(name)
            fns = [fns] if callable(fns) else list(fns)
            if not (site.is_block or site.kind == "x_t"):
                raise SiteError(f"writes act on a block site (block.k, block.k@stepN) or on x_t@stepN, got {str(name)!r}")
            if site.is_block and Site.block(site.index) not in valid:
                raise SiteError(f"{site}: the model has blocks 0-{sum(s.is_block for s in valid) - 1}")
            if site.kind == "x_t" and not any(s.kind == "x_t" for s in valid):
                raise SiteError(f"{site}: x_t writes need a pipeline with a scheduler, not a bare DiT")
            check_steps([site], self.calls)
            if site.is_block:
                blocks.setdefault(site.index, []).extend((site.step, fn) for fn in fns)
            else:
                latents.setdefault(site.step, []).extend(fns)
        return blocks, latents

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

    def _stop_point(self) -> tuple[int, int] | None:
        """(step, place) after which nothing read or written remains: place = a block index, or the
        number of blocks for the scheduler's step (it follows the step's transformer call)."""
        sched, last = len(self.dit.transformer_blocks), self.calls - 1
        needs = [(last if s.step is None else s.step, s.index) for s in self.sites if s.is_block]
        needs += [(s.step, sched) for s in self.sites if s.is_step]
        needs += [(last if at is None else at, i) for i, fns in self.writes.items() for at, _ in fns]
        needs += [(n - 1, sched) for n in self.x_writes if n > 0]
        return max(needs) if needs else None

    # -- hooks -------------------------------------------------------------
    def _keep(self, t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(device=self.device, dtype=self.dtype, copy=True)

    def _rows(self, t: torch.Tensor) -> torch.Tensor:
        """The guidance branch `branch` of a block output: rows [B:] (cond) or [:B] (uncond) of 2B."""
        b = self.batch
        if self.branch == "both" or b is None:
            return t
        if t.shape[0] == 2 * b:
            return t[b:] if self.branch == "cond" else t[:b]
        if self.branch == "uncond":
            raise SiteError("branch='uncond': this call runs no unconditional branch (guidance off)")
        return t

    def _block_hook(self, index: int):
        fns = self.writes.get(index, [])
        reads = [s for s in self.sites if s.is_block and s.index == index]

        def hook(_module, _args, output):
            call = self.fired[index] = self.fired.get(index, 0) + 1
            out = output[0] if isinstance(output, tuple) else output
            edited = False
            for at, fn in fns:
                if at is None or at == call - 1:
                    out, edited = fn(out), True
            kept = out if self.tokens is None else out[:, self.tokens]
            for site in reads:
                if site.step is None or site.step == call - 1:
                    self.states[site].append(self._keep(self._rows(kept)))
            if self.stop_at == (call - 1, index):
                self._stopped = self.stop_at
                raise _StopForward(self)
            if edited:
                return (out, *output[1:]) if isinstance(output, tuple) else out
            return None

        return hook

    def _scheduler_step(self, scheduler: Any, original: Callable):
        """`scheduler.step`, recording x_t / x0_hat / timestep / sigma and applying x_t writes."""
        flow = any(c.__name__.startswith("FlowMatch") for c in type(scheduler).__mro__)
        names = ("model_output", "timestep", "sample")

        def step(*args, **kwargs):
            n = len(self.timesteps)
            model_output, timestep, sample = (args[i] if len(args) > i else kwargs[k] for i, k in enumerate(names))
            as_dict = kwargs.pop("return_dict", True)
            out = original(*args, return_dict=True, **kwargs)
            index = getattr(scheduler, "step_index", None)
            sigmas = getattr(scheduler, "sigmas", None)
            sigma = float(sigmas[index - 1]) if index is not None and sigmas is not None else float("nan")
            self.timesteps.append(float(torch.as_tensor(timestep).flatten()[0]))
            self.sigmas.append(sigma)
            if Site("x_t", step=n) in self.states:
                self.states[Site("x_t", step=n)].append(self._keep(sample))
            if Site("x0_hat", step=n) in self.states:
                x0 = getattr(out, "pred_original_sample", None)
                if x0 is None and not flow:
                    raise SiteError(f"x0_hat: {type(scheduler).__name__}.step gives no pred_original_sample and is "
                                    "not a flow-matching scheduler; vhslab cannot form the clean-latent estimate")
                if x0 is None:
                    x0 = sample.float() - sigma * model_output.float()
                self.states[Site("x0_hat", step=n)].append(self._keep(x0))
            for fn in self.x_writes.get(n + 1, []):
                out.prev_sample = fn(out.prev_sample)
            if self.stop_at == (n, len(self.dit.transformer_blocks)):
                self._stopped = self.stop_at
                raise _StopForward(self)
            return out if as_dict else out.to_tuple()

        return step

    def _prepare_latents(self, original: Callable):
        def prepare(*args, **kwargs):
            latents = original(*args, **kwargs)
            self.batch = latents.shape[0]
            for fn in self.x_writes.get(0, []):
                latents = fn(latents)
            return latents

        return prepare

    def _wrap(self, owner: Any, name: str, make: Callable) -> None:
        """Shadow `owner.name` by an instance attribute for the trace (the previous one restored on exit)."""
        self._wrapped.append((owner, name, owner.__dict__.get(name)))
        setattr(owner, name, make(getattr(owner, name)))

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
        scheduler = getattr(self.model, "scheduler", None)
        if callable(getattr(scheduler, "step", None)):
            self._wrap(scheduler, "step", lambda f: self._scheduler_step(scheduler, f))
        if callable(getattr(self.model, "prepare_latents", None)):
            self._wrap(self.model, "prepare_latents", self._prepare_latents)
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
        for owner, name, before in reversed(self._wrapped):
            if before is None:
                owner.__dict__.pop(name, None)
            else:
                owner.__dict__[name] = before
        self._wrapped.clear()
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

    def _expected(self, index: int) -> int:
        """Calls of block `index` before the trace ended: all, or those up to its stop point."""
        if self._stopped is None:
            return self.calls
        step, place = self._stopped
        return step + 1 if index <= place else step

    def _check_counts(self) -> None:
        bad = [f"{s} fired {len(got)} times, expected {1 if s.is_late or s.step is not None else self.calls}"
               for s, got in self.states.items() if len(got) != (1 if s.is_late or s.step is not None else self.calls)]
        bad += [f"{Site.block(i)} fired {self.fired.get(i, 0)} times, expected {self._expected(i)}"
                for i in self._blocks if self.fired.get(i, 0) != self._expected(i)]
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

    reads: sites to record ('all', a comma list, or Sites; `block.k@stepN`, `x_t@stepN`,
    `x0_hat@stepN` at one step). writes: {block site: edit fn(s)}, applied to the block's output on
    every call (`block.k`) or on step N's call only (`block.k@stepN`), and {x_t@stepN: fn}, replacing
    the latent entering step N. replay: (block, cached output): blocks before it are skipped and it
    returns `cached`. calls: forward calls per block (the denoising steps; sites at a step beyond it
    are refused before compute). dtype/device: how reads are kept (converted inside the hook). stop:
    end the pipeline call once the last read or write is done, when no late site is read. vision: the
    encoder of the `vision` site. tokens: an index of the tokens to keep at block reads. branch:
    "cond" (default), "uncond" or "both": the guidance rows a block read keeps.
    """
    return Trace(model, reads, **options)


__all__ = ["BRANCHES", "EditFn", "Trace", "VisionFn", "to_uint8", "trace"]
