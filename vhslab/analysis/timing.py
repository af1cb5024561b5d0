"""Causal timing on a multi-step generator: when (denoising step) and where (block, or the noisy latent
x_t) is a prompt's attribute fixed?

For each pair, a recipient (prompt, seed) and a donor whose prompt differs in one attribute (the
same seed), the recipient is generated again with one site at one step (`block.k@stepN`, or
`x_t@stepN`) replaced by the donor's; the evaluator then judges the final image against the
donor's prompt (`flip`: the attribute followed the donor) and the recipient's (`kept`). A control
donor (the recipient's own prompt, another seed) is transplanted the same way: what any edit of
that size does; its flip toward the donor's attribute should stay near 0, and the effect reported
is the paired difference real - control, with intervals that resample recipient prompts
(`vhslab.stats`).

    pairs = colour_pairs(load_suite("geneval-shapes"), 24)
    res = patch_timing(world.teacher, pairs, steps=[0, 2, 4, 6], blocks=[0, 4, 8], gen=world.teacher_gen_config)
    res.to_json(); res.ds; res.plot()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from vhslab.errors import InputError
from vhslab.figures.timing import plot_timing
from vhslab.pipeline import GenConfig
from vhslab.pixels import to_uint8
from vhslab.search.generation import initial_noise
from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.phrasing import PREFIX, noun_phrase, parse_prompt
from vhslab.shapes.prompts import PromptSpec
from vhslab.shapes.scenes import COLORS
from vhslab.stats import cluster_draws, interval, row_weights
from vhslab.trace.site import Site, find_transformer
from vhslab.trace.trace import trace

XT = "x_t"  # the site column of the noisy latent


class TimingError(InputError):
    """Bad input to causal timing (a step or block the generator lacks, no pairs, ...)."""


@dataclass(frozen=True)
class TimingPair:
    """A recipient (prompt, seed), a donor prompt differing in one attribute (made from the same
    seed, or from `donor_seed`), and the control donor's seed (the recipient's prompt from another
    seed). `correctness_pairs` makes the donor a correct candidate of the recipient's own prompt."""

    recipient: str
    donor: str
    seed: int
    control_seed: int
    donor_seed: int | None = None  # None: the recipient's seed

    @property
    def donor_noise(self) -> int:
        """The seed the donor is generated from."""
        return self.seed if self.donor_seed is None else self.donor_seed


def colour_pairs(specs: Sequence[PromptSpec], n_pairs: int, seed: int = 0, per_prompt: int = 1) -> list[TimingPair]:
    """Up to `n_pairs` pairs from the single-object colour prompts of `specs` (tag 'colors'), in
    order, `per_prompt` seeds each: the donor asks for the next colour of the world's palette, same
    object; seeds drawn from `seed` (recipient and control differ)."""
    unique = list({s.prompt: s for s in specs if s.tag == "colors" and len(s.include) == 1}.values())
    if not unique:
        raise TimingError("colour pairs need single-object colour prompts (tag 'colors')")
    if per_prompt < 1:
        raise TimingError(f"per_prompt must be >= 1, got {per_prompt}")
    palette = list(COLORS)
    rng = np.random.default_rng(seed)
    out = []
    for spec in unique:
        item = spec.include[0]
        donor = PREFIX + noun_phrase(item.cls, item.count, palette[(palette.index(item.color) + 1) % len(palette)])
        for _ in range(per_prompt):
            a, b = (int(x) for x in rng.choice(2**31, 2, replace=False))
            out.append(TimingPair(spec.prompt, donor, a, b))
    return out[:n_pairs]


def correctness_pairs(pipe, specs: Sequence[PromptSpec], gen: GenConfig, n_pairs: int, candidates: int = 4,
                      seed: int = 0, evaluator=None) -> list[TimingPair]:
    """Up to `n_pairs` pairs "a correct candidate into a wrong one" of the same prompt: for each distinct
    prompt of `specs` in order, `candidates` seeds are generated and judged; a prompt with a correct
    candidate and two wrong ones gives recipient = the first wrong seed, donor = the first correct seed,
    control donor = the second wrong seed (what transplanting any wrong state does). `flip` then reads
    "the recipient became correct"."""
    if candidates < 3:
        raise TimingError(f"candidates must be >= 3 (a correct donor and two wrong ones), got {candidates}")
    evaluator = evaluator or ShapesEvaluator()
    rng = np.random.default_rng(seed)
    out = []
    for spec in {s.prompt: s for s in specs}.values():
        seeds = [int(x) for x in rng.choice(2**31, candidates, replace=False)]
        right = _judge(evaluator, teacher_images(pipe, [spec.prompt] * candidates, seeds, gen), [spec] * candidates)
        good, bad = [x for x, r in zip(seeds, right, strict=True) if r], [x for x, r in zip(seeds, right, strict=True) if not r]
        if good and len(bad) >= 2:
            out.append(TimingPair(spec.prompt, spec.prompt, bad[0], bad[1], donor_seed=good[0]))
        if len(out) == n_pairs:
            break
    return out


def _recorder(box: dict, key):
    def fn(t: torch.Tensor) -> torch.Tensor:
        box[key] = t.detach().clone()
        return t
    return fn


def _replacer(donor: torch.Tensor):
    def fn(t: torch.Tensor) -> torch.Tensor:
        if t.shape != donor.shape:
            raise TimingError(f"donor state {tuple(donor.shape)} does not fit the recipient's {tuple(t.shape)}")
        return donor.to(t.device, t.dtype)
    return fn


@torch.no_grad()
def teacher_images(pipe, prompts: Sequence[str], seeds: Sequence[int], gen: GenConfig,
                   writes: dict | None = None) -> np.ndarray:
    """uint8 images (B, H, W, 3) of one batch (prompts, seeds), under optional trace writes
    ({Site: fn}); a plain call when there are none."""
    noise = initial_noise(pipe, list(seeds), gen)
    kwargs = gen.call_kwargs(pipe)
    if not writes:
        return to_uint8(pipe(prompt=list(prompts), latents=noise, output_type="np", **kwargs).images)
    with trace(pipe, writes=writes, calls=gen.steps, dtype=torch.float32, stop=False):
        images = pipe(prompt=list(prompts), latents=noise, output_type="np", **kwargs).images
    return to_uint8(images)


def capture_states(pipe, prompts, seeds, gen: GenConfig, sites: Sequence[Site]) -> tuple[np.ndarray, dict]:
    """The images of one batch and, per site, the state a write at that site sees (so that writing
    it back into the same batch changes nothing)."""
    box: dict = {}
    images = teacher_images(pipe, prompts, seeds, gen, {s: _recorder(box, s) for s in sites})
    return images, box


def timing_sites(steps: Sequence[int], blocks: Sequence[int], x_t: bool = True) -> list[Site]:
    """`block.k@stepN` for each step and block, then `x_t@stepN` for each step (when `x_t`)."""
    return [Site.block(b, s) for s in steps for b in blocks] + ([Site(XT, None, s) for s in steps] if x_t else [])


def check_timing(pipe, gen: GenConfig, pairs, steps, blocks) -> GenConfig:
    """The resolved generation settings, or a TimingError naming what is wrong (before any compute)."""
    gen = gen.resolve(pipe)
    n_blocks = len(find_transformer(pipe).transformer_blocks)
    if not pairs:
        raise TimingError("pairs: give at least one recipient / donor pair")
    if not steps:
        raise TimingError("steps: give at least one denoising step")
    bad = [s for s in steps if not 0 <= int(s) < gen.steps]
    if bad:
        raise TimingError(f"steps: the generator runs {gen.steps} steps (0-{gen.steps - 1}), got {list(steps)}")
    bad = [b for b in blocks if not 0 <= int(b) < n_blocks]
    if bad:
        raise TimingError(f"blocks: the generator has blocks 0-{n_blocks - 1}, got {list(blocks)}")
    if len(set(steps)) != len(steps) or len(set(blocks)) != len(blocks):
        raise TimingError(f"steps and blocks must not repeat, got steps {list(steps)}, blocks {list(blocks)}")
    for p in pairs:
        for text in (p.recipient, p.donor):
            parse_prompt(text)  # an unreadable prompt fails here
        if p.control_seed == p.seed and p.donor != p.recipient:
            raise TimingError(f"pair {p}: the control donor needs another seed than the recipient's")
        if p.donor_seed is not None and p.donor == p.recipient and p.donor_seed == p.seed:
            raise TimingError(f"pair {p}: a donor of the recipient's own prompt needs another seed")
    return gen


def _judge(evaluator, images, specs) -> np.ndarray:
    return np.array([evaluator.evaluate(im, s).correct for im, s in zip(images, specs, strict=True)])


def _run_chunk(pipe, gen, chunk, sites, evaluator) -> dict:
    """All measurements of one batch of pairs: (site, pair) verdicts for real and control donors, and
    the unpatched baselines."""
    rec_p, don_p = [p.recipient for p in chunk], [p.donor for p in chunk]
    seeds, ctl_seeds = [p.seed for p in chunk], [p.control_seed for p in chunk]
    rec_s, don_s = [parse_prompt(x) for x in rec_p], [parse_prompt(x) for x in don_p]
    donor_images, real = capture_states(pipe, don_p, [p.donor_noise for p in chunk], gen, sites)
    _, control = capture_states(pipe, rec_p, ctl_seeds, gen, sites)
    base = teacher_images(pipe, rec_p, seeds, gen)
    out = {"base_flip": _judge(evaluator, base, don_s), "base_kept": _judge(evaluator, base, rec_s),
           "donor_correct": _judge(evaluator, donor_images, don_s)}
    for name, states in (("", real), ("_control", control)):
        flip, kept = np.zeros((len(sites), len(chunk)), bool), np.zeros((len(sites), len(chunk)), bool)
        for i, site in enumerate(sites):
            images = teacher_images(pipe, rec_p, seeds, gen, {site: _replacer(states[site])})
            flip[i], kept[i] = _judge(evaluator, images, don_s), _judge(evaluator, images, rec_s)
        out["flipped" + name], out["kept" + name] = flip, kept
    return out


def _cell_intervals(reps: np.ndarray) -> np.ndarray:
    """(n_boot, *cells) replicates -> (*cells, 2) percentile intervals (`vhslab.stats.interval`)."""
    flat = reps.reshape(len(reps), -1)
    return np.array([interval(flat[:, j]) for j in range(flat.shape[1])]).reshape(*reps.shape[1:], 2)


def _intervals(ds: xr.Dataset, n_boot: int, seed: int) -> xr.Dataset:
    """Per cell: the means, intervals (recipient prompts resampled, one set of draws for every cell,
    so that the differences real - control are paired) and `significant` (the interval of
    flip - control excludes 0)."""
    weights = row_weights(cluster_draws(ds["recipient"].values, n_boot, seed))
    weights /= weights.sum(1, keepdims=True)
    names = {"flip": "flipped", "flip_control": "flipped_control", "kept": "kept", "kept_control": "kept_control"}
    per_pair = {k: ds[v].values.astype(float) for k, v in names.items()}  # (step, site, pair)
    means = {k: x.mean(-1) for k, x in per_pair.items()}
    reps = {k: np.einsum("bp,...p->b...", weights, x) for k, x in per_pair.items()}
    for what in ("flip", "kept"):
        means[f"{what}_minus_control"] = means[what] - means[f"{what}_control"]
        reps[f"{what}_minus_control"] = reps[what] - reps[f"{what}_control"]
    cell = ("step", "site")
    out = {}
    for name in means:
        out[name] = (cell, means[name])
        out[f"{name}_ci"] = ((*cell, "bound"), _cell_intervals(reps[name]))
    ci = out["flip_minus_control_ci"][1]
    out["significant"] = (cell, (ci[..., 0] > 0) | (ci[..., 1] < 0))
    return ds.assign(out).assign_coords(bound=["low", "high"])


def _site_label(site: Site) -> str:
    return XT if site.kind == XT else str(Site.block(site.index))


def patch_timing(pipe, pairs: Sequence[TimingPair], steps: Sequence[int], blocks: Sequence[int],
                 gen: GenConfig | None = None, x_t: bool = True, evaluator=None, batch_size: int = 32,
                 n_boot: int = 1000, seed: int = 0) -> TimingResult:
    """Patch each (step, block) site, and x_t at each step, from the donor and from the control donor
    into the recipient, one site at one step per run; judge the final images. Returns a
    `TimingResult`: dataset dims (step, site[, pair]) with coords sigma/timestep on step."""
    steps, blocks = [int(s) for s in steps], [int(b) for b in blocks]
    gen = check_timing(pipe, gen or GenConfig(), list(pairs), steps, blocks)
    if batch_size < 1:
        raise TimingError(f"batch_size must be >= 1, got {batch_size}")
    evaluator = evaluator or ShapesEvaluator()
    sites = timing_sites(steps, blocks, x_t)
    chunks = [_run_chunk(pipe, gen, pairs[i:i + batch_size], sites, evaluator) for i in range(0, len(pairs), batch_size)]
    got = {k: np.concatenate([c[k] for c in chunks], axis=-1) for k in chunks[0]}
    labels = [str(Site.block(b)) for b in blocks] + ([XT] if x_t else [])
    grid = (len(steps), len(labels), len(pairs))

    def cells(x):  # (sites, pairs) in `sites` order -> (step, site, pair); cells not measured stay False
        out = np.zeros(grid, bool)
        for i, site in enumerate(sites):
            out[steps.index(site.step), labels.index(_site_label(site))] = x[i]
        return out

    sched = pipe.scheduler
    data = {k: (("step", "site", "pair"), cells(got[k])) for k in ("flipped", "kept", "flipped_control", "kept_control")}
    data.update({k: ("pair", got[k]) for k in ("base_flip", "base_kept", "donor_correct")})
    ds = xr.Dataset(data, coords={
        "step": steps, "site": labels, "pair": np.arange(len(pairs)),
        "sigma": ("step", [float(sched.sigmas[s]) for s in steps]),
        "timestep": ("step", [float(sched.timesteps[s]) for s in steps]),
        "recipient": ("pair", [p.recipient for p in pairs]), "donor": ("pair", [p.donor for p in pairs]),
        "seed": ("pair", [p.seed for p in pairs]), "control_seed": ("pair", [p.control_seed for p in pairs]),
        "donor_seed": ("pair", [p.donor_noise for p in pairs])})
    ds.attrs.update({"n_pairs": len(pairs), "n_steps": gen.steps, "guidance_scale": float(gen.guidance_scale or 0.0),
                     "n_boot": n_boot, "seed": seed})
    ds = _intervals(ds, n_boot, seed)
    return TimingResult(ds, timing_summary(ds))


def timing_summary(ds: xr.Dataset) -> dict:
    """The plain numbers of a timing dataset: per cell flip, kept, their controls and flip - control with
    intervals; baselines; per site, the last step at which the transplant still moves the attribute
    (flip - control interval above 0)."""
    r = lambda x: round(float(x), 3)  # noqa: E731
    cells = {}
    for s in ds.step.values:
        for site in ds.site.values:
            c = ds.sel(step=s, site=site)
            cells[f"{site}@step{int(s)}"] = {
                "flip": r(c["flip"]), "flip_ci": [r(x) for x in c["flip_ci"].values],
                "flip_control": r(c["flip_control"]), "flip_control_ci": [r(x) for x in c["flip_control_ci"].values],
                "flip_minus_control": r(c["flip_minus_control"]), "ci": [r(x) for x in c["flip_minus_control_ci"].values],
                "kept": r(c["kept"]), "kept_control": r(c["kept_control"]), "significant": bool(c["significant"])}
    last = {}
    for site in ds.site.values:
        up = [int(s) for s in ds.step.values if ds["flip_minus_control_ci"].sel(step=s, site=site, bound="low") > 0]
        last[str(site)] = max(up) if up else None
    return {"n_pairs": int(ds.attrs["n_pairs"]), "n_steps": int(ds.attrs["n_steps"]),
            "steps": [int(s) for s in ds.step.values], "sigma": [r(x) for x in ds.sigma.values],
            "baseline": {"recipient_kept": r(ds["base_kept"].mean()), "recipient_has_donor_attribute": r(ds["base_flip"].mean()),
                         "donor_correct": r(ds["donor_correct"].mean())},
            "control_flip_max": r(ds["flip_control"].max()),
            "last_step_that_moves_attribute": last, "cells": cells}


@dataclass
class TimingResult:
    """What `patch_timing` measured: the dataset `ds` (step, site[, pair]) and its plain numbers
    (`summary`, what `vhslab patch-timing --json` prints: `to_json()`); `plot()` the step x site map."""

    ds: xr.Dataset
    summary: dict

    def to_json(self) -> dict:
        """Per (step, site) flip toward the donor, its control and the paired difference with its interval."""
        return dict(self.summary)

    def plot(self):
        """The (step x block + x_t) map of flip - control (`vhslab.figures.timing.plot_timing`)."""
        return plot_timing(self.ds)
