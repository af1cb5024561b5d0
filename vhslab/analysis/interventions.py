"""Causal experiments on the generator with `trace` writes: activation patching between a correct and a wrong
candidate of one prompt (block x region), and steering along a probe's colour direction with a
random-direction control of the same norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from vhslab.figures.interventions import plot_patching
from vhslab.pixels import to_uint8
from vhslab.probes.data import as_strings, site_array
from vhslab.search.generation import initial_noise
from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.phrasing import parse_prompt
from vhslab.shapes.suites import load_suite
from vhslab.stats import mean_ci
from vhslab.trace.edit import PatchError, add_direction, region_mask, replace_tokens
from vhslab.trace.site import Site, SiteError, find_site, find_transformer
from vhslab.trace.trace import trace

REGIONS = ("all", "q00", "q01", "q10", "q11")


def pairs_from_store(store: xr.Dataset, n_pairs: int) -> list[tuple[str, int, int]]:
    """(prompt, seed of a correct candidate, seed of a wrong one) for the first prompt rows that have
    both, in store order."""
    verdict, group = store["verdict"].values, store["prompt_index"].values
    seeds, prompts = store["seed"].values, as_strings(store["prompt"].values)
    out = []
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        good, bad = rows[verdict[rows] == 1], rows[verdict[rows] == 0]
        if len(good) and len(bad):
            out.append((prompts[rows[0]], int(seeds[good[0]]), int(seeds[bad[0]])))
        if len(out) == n_pairs:
            break
    if not out:
        raise PatchError("no prompt in the store has both a correct and a wrong candidate")
    return out


@torch.no_grad()
def _generate(world, prompts, seeds, edit=None, site=None):
    """uint8 images (and the hidden states of `site`, if given) of one batch, under an optional edit
    (block Site, edit fn): one trace that writes the block and reads the (edited) site."""
    pipe, gen = world.pipeline, world.gen_config.resolve(world.pipeline)
    noise = initial_noise(pipe, seeds, gen)
    kwargs = gen.call_kwargs(pipe)
    if not (edit or site):  # nothing to read or write: a plain call (it may run inside the caller's trace)
        images = pipe(prompt=list(prompts), latents=noise, output_type="np", **kwargs).images
        return to_uint8(images), None
    try:
        t = trace(pipe, [site] if site else [], writes=dict([edit]) if edit else None, dtype=torch.float32, stop=False)
    except SiteError as err:
        raise PatchError(str(err)) from None
    with t:
        images = pipe(prompt=list(prompts), latents=noise, output_type="np", **kwargs).images
    hidden = t.last(site) if site else None
    return to_uint8(images), hidden


def patch_sweep(world, verifier, pairs, blocks=None, regions=REGIONS, evaluator=None, control: bool = True) -> xr.Dataset:
    """For every block x region: B's generation (the wrong candidate) with the region's tokens at that
    block taken from A's (the correct one). Per pair: `flipped` (the evaluator now judges B correct)
    and `score_change` (verifier P(yes) patched - B's). `restored` = mean change / mean (A's - B's)
    (pyvene's normaliser: 0 no effect, 1 fully restored). With `control`, the same region is patched
    from the correct candidate of *another* pair's prompt (`flipped_control`): what any edit of that
    size does, the baseline a restoring patch must beat."""
    evaluator = evaluator or ShapesEvaluator()
    n_blocks = len(find_transformer(world.pipeline).transformer_blocks)
    blocks = list(range(n_blocks)) if blocks is None else list(blocks)
    if control and len(pairs) < 2:
        raise PatchError("the control patches from another pair: give at least 2 pairs (or control=False)")
    site = Site.parse(verifier.config.site)
    prompts = [p for p, _, _ in pairs]
    specs = [parse_prompt(p) for p in prompts]
    good, bad = [a for _, a, _ in pairs], [b for _, _, b in pairs]
    pipe, gen = world.pipeline, world.gen_config.resolve(world.pipeline)
    names = [Site.block(b) for b in blocks]
    with trace(pipe, names + ([site] if site not in names else []), dtype=torch.float32, stop=False) as cap:
        pipe(prompt=prompts, latents=initial_noise(pipe, good, gen), output_type="latent", **gen.call_kwargs(pipe))
    donors = {b: cap.last(Site.block(b)) for b in blocks}
    score_a = verifier.score(cap.last(site), prompts)
    images_b, h_b = _generate(world, prompts, bad, site=site)
    score_b = verifier.score(h_b, prompts)
    base_b = np.array([evaluator.evaluate(im, s).correct for im, s in zip(images_b, specs, strict=True)])
    side = round(donors[blocks[0]].shape[1] ** 0.5)
    shape = (len(blocks), len(regions), len(pairs))
    flipped, change, flipped_control = np.zeros(shape, bool), np.zeros(shape), np.zeros(shape, bool)

    def run(donor, b, r):
        images, h = _generate(world, prompts, bad, (Site.block(b), replace_tokens(donor, region_mask(side, r))), site)
        ok = np.array([evaluator.evaluate(im, s).correct for im, s in zip(images, specs, strict=True)])
        return ok & ~base_b, verifier.score(h, prompts) - score_b

    for i, b in enumerate(blocks):
        for j, r in enumerate(regions):
            flipped[i, j], change[i, j] = run(donors[b], b, r)
            if control:
                flipped_control[i, j], _ = run(torch.roll(donors[b], 1, 0), b, r)  # pair k gets pair k-1's tokens
    gap = float(np.mean(score_a - score_b))
    dims = ("block", "region", "pair")
    data = {"flipped": (dims, flipped), "score_change": (dims, change),
            "flip": (("block", "region"), flipped.mean(2)),
            "restored": (("block", "region"), change.mean(2) / gap if abs(gap) > 1e-6 else np.full(shape[:2], np.nan))}
    if control:
        data["flipped_control"] = (dims, flipped_control)
        data["flip_control"] = (("block", "region"), flipped_control.mean(2))
    ds = xr.Dataset(data, coords={"block": blocks, "region": list(regions)})
    ds.attrs.update({"n_pairs": len(pairs), "verifier_site": str(site), "b_correct_before": float(base_b.mean()),
                     "score_gap_a_minus_b": gap})
    return ds


def patch_effect(ds: xr.Dataset, n_boot: int = 1000, seed: int = 0) -> dict:
    """Per block: mean flip rate of the quadrant patches minus the control's, with a bootstrap interval
    over pairs, and the depth from which patching stops mattering (the first block from which every
    interval holds 0)."""
    quads = [r for r in ds.region.values if r != "all"]
    diff = (ds["flipped"].sel(region=quads).astype(float) - ds["flipped_control"].sel(region=quads).astype(float)).mean("region").values
    out, above = {}, []
    for i, b in enumerate(ds.block.values):
        ci = mean_ci(diff[i], n_boot, seed)
        out[str(int(b))] = {"value": float(diff[i].mean()), "ci": ci}
        above.append(ci[0] > 0)
    stops = next((int(b) for k, b in enumerate(ds.block.values) if not any(above[k:])), None)
    return {"quadrant_flip_minus_control": out, "stops_mattering_at_block": stops}


def colour_directions(store: xr.Dataset, block: int, seed: int = 0) -> tuple[np.ndarray, list[str], float]:
    """Unit directions (colour, width) of a multinomial logistic probe of the first object's drawn colour
    on block `block`'s token-mean states, its classes, and the mean token norm at that block."""
    from sklearn.linear_model import LogisticRegression

    colours = np.array([str(c) for c in store["found_color"].values[:, 0]])
    rows = np.flatnonzero(colours != "")
    arr = site_array(store, find_site(store, Site.block(block))).isel(sample=rows)
    x = np.asarray(arr.values, np.float32)  # (rows, tokens, width)
    probe = LogisticRegression(max_iter=2000, random_state=seed).fit(x.mean(1), colours[rows])
    coef = probe.coef_ - probe.coef_.mean(0)
    return coef / np.linalg.norm(coef, axis=1, keepdims=True), list(probe.classes_), float(np.linalg.norm(x, axis=2).mean())


def steer_sweep(world, store: xr.Dataset, prompts, blocks, coefficient: float = 1.0, seed: int = 0,
                per_prompt: int = 2, evaluator=None) -> xr.Dataset:
    """Per block: steer single-object colour prompts towards another colour (the next one in the probe's
    classes) by adding coefficient x (mean token norm) x the probe direction to every token; `success`
    (block, image) = the detected object colour became the target; `control` = the same with a random
    direction of the same norm."""
    evaluator = evaluator or ShapesEvaluator()
    unique = {s.prompt: s for s in prompts if s.tag == "colors" and len(s.include) == 1}
    if not unique:
        raise PatchError("steering needs single-object colour prompts (tag 'colors')")
    specs = [s for s in unique.values() for _ in range(per_prompt)]  # each distinct prompt, per_prompt seeds
    rng = np.random.default_rng(seed)
    seeds = [int(rng.integers(2**62)) for _ in specs]
    success, control = np.zeros((len(blocks), len(specs)), bool), np.zeros((len(blocks), len(specs)), bool)
    for i, b in enumerate(blocks):
        dirs, classes, norm = colour_directions(store, b, seed)
        targets = [classes[(classes.index(s.include[0].color) + 1) % len(classes)] if s.include[0].color in classes
                   else classes[0] for s in specs]
        for use_random in (False, True):
            hits = []
            for spec, s, target in zip(specs, seeds, targets, strict=True):
                d = dirs[classes.index(target)]
                if use_random:
                    d = rng.standard_normal(d.shape)
                    d /= np.linalg.norm(d)
                edit = (Site.block(b), add_direction(torch.as_tensor(d, dtype=torch.float32), coefficient * norm))
                image, _ = _generate(world, [spec.prompt], [s], edit)
                found = [det.color for det in evaluator.detect(image[0]) if det.cls == spec.include[0].cls]
                hits.append(bool(found) and found[0] == target)
            (control if use_random else success)[i] = hits
    ds = xr.Dataset({"success": (("block", "image"), success), "control": (("block", "image"), control)},
                    coords={"block": list(blocks)})
    ds.attrs.update({"n_prompts": len(unique), "n_images": len(specs), "coefficient": coefficient, "seed": seed})
    return ds


@dataclass
class PatchResult:
    """What `patch_study` measured: the patching (and steering) dataset `ds` and its plain numbers
    (`summary`, what `vhslab patch --json` prints: `to_json()`); `plot()` the block x region heatmaps."""

    ds: xr.Dataset
    summary: dict

    def to_json(self) -> dict:
        """Flip rates per block and region beside the control, restoration, the quadrant effect per block
        and (with steering) the steering success beside its random-direction control."""
        return dict(self.summary)

    def plot(self):
        """The block x region heatmaps (`vhslab.figures.interventions.plot_patching`)."""
        return plot_patching(self.ds)


def _patch_summary(ds: xr.Dataset, seed: int, steer: bool) -> dict:
    """The plain numbers of a patching dataset (rounded as `vhslab patch` prints them)."""
    table, control = ds["flip"].to_pandas(), ds["flip_control"].to_pandas()
    result = {"n_pairs": ds.attrs["n_pairs"],
              "flip": {str(b): {r: round(float(table.loc[b, r]), 3) for r in table.columns} for b in table.index},
              "flip_control": {str(b): {r: round(float(control.loc[b, r]), 3) for r in control.columns} for b in control.index},
              "restored": {str(b): round(float(ds["restored"].sel(block=b, region="all")), 3) for b in ds.block.values},
              **patch_effect(ds, seed=seed)}
    if steer:
        result["steering"] = {}
        for b in ds.block.values:
            hit, ctl = (ds[v].sel(block=b).values.astype(float) for v in ("steer_success", "steer_control"))
            result["steering"][str(b)] = {"success": float(hit.mean()), "control": float(ctl.mean()),
                                          "diff_ci": mean_ci(hit - ctl, 1000, seed)}
    return result


def patch_study(world, verifier, store: xr.Dataset, blocks, n_pairs: int = 50, train: xr.Dataset | None = None,
                coefficient: float = 1.0, seed: int = 0) -> PatchResult:
    """`vhslab patch`: activation patching at `blocks` on the first `n_pairs` correct / wrong pairs of `store`
    (`pairs_from_store`, `patch_sweep`) and, when `train` (the store the colour probes are fitted on) is
    given, colour steering on the GenEval shapes suite with its random-direction control (`steer_sweep`)."""
    ds = patch_sweep(world, verifier, pairs_from_store(store, n_pairs), blocks)
    if train is not None:
        st = steer_sweep(world, train, load_suite("geneval-shapes"), blocks, coefficient, seed)
        ds = xr.merge([ds, st.rename({"success": "steer_success", "control": "steer_control"})], combine_attrs="drop_conflicts")
    return PatchResult(ds, _patch_summary(ds, seed, train is not None))
