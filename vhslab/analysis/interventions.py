"""Causal experiments on the generator with `Edit`: activation patching between a correct and a wrong
candidate of one prompt (block x region), and steering along a probe's colour direction with a
random-direction control of the same norm.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import xarray as xr

from vhslab.analysis.patching import Edit, PatchError, add_direction, region_mask, replace_tokens
from vhslab.data.capture import Capture, find_transformer
from vhslab.search.generation import initial_noise

REGIONS = ("all", "q00", "q01", "q10", "q11")


def pairs_from_store(store: xr.Dataset, n_pairs: int) -> list[tuple[str, int, int]]:
    """(prompt, seed of a correct candidate, seed of a wrong one) for the first prompt rows that have
    both, in store order."""
    from vhslab.probes.verifier_sweep import _strs

    verdict, group = store["verdict"].values, store["prompt_index"].values
    seeds, prompts = store["seed"].values, _strs(store["prompt"].values)
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
    """uint8 images (and the hidden states of `site`, if given) of one batch, under an optional Edit."""
    pipe, gen = world.pipeline, world.gen_config.resolve(world.pipeline)
    noise = initial_noise(pipe, seeds, gen)
    kwargs = gen.call_kwargs(pipe)
    edit_ctx = Edit(pipe, *edit) if edit else contextlib.nullcontext()
    with edit_ctx, Capture(pipe, [site], dtype=torch.float32, stop=False) if site else contextlib.nullcontext() as cap:
        images = pipe(prompt=list(prompts), latents=noise, output_type="np", **kwargs).images
    hidden = cap.last(site) if site else None
    return (np.asarray(images) * 255).round().astype(np.uint8), hidden


def patch_sweep(world, verifier, pairs, blocks=None, regions=REGIONS, evaluator=None) -> xr.Dataset:
    """For every block x region: B's generation (the wrong candidate) with the region's tokens at that
    block taken from A's (the correct one). `flip` = share of pairs whose finished image the evaluator
    now judges correct; `score_change` = verifier P(yes) patched - B's; `restored` = that change over
    A's - B's (pyvene's normaliser: 0 no effect, 1 fully restored), averaged over pairs."""
    from vhslab.data.evaluate import ShapesEvaluator
    from vhslab.data.phrasing import parse_prompt

    evaluator = evaluator or ShapesEvaluator()
    n_blocks = len(find_transformer(world.pipeline).transformer_blocks)
    blocks = list(range(n_blocks)) if blocks is None else list(blocks)
    site = verifier.config.site
    prompts = [p for p, _, _ in pairs]
    specs = [parse_prompt(p) for p in prompts]
    good, bad = [a for _, a, _ in pairs], [b for _, _, b in pairs]
    pipe, gen = world.pipeline, world.gen_config.resolve(world.pipeline)
    with Capture(pipe, [f"block.{b}" for b in blocks] + ([site] if site not in [f"block.{b}" for b in blocks] else []),
                 dtype=torch.float32, stop=False) as cap:
        pipe(prompt=prompts, latents=initial_noise(pipe, good, gen), output_type="latent", **gen.call_kwargs(pipe))
    donors = {b: cap.last(f"block.{b}") for b in blocks}
    score_a = verifier.score(cap.last(site), prompts)
    images_b, h_b = _generate(world, prompts, bad, site=site)
    score_b = verifier.score(h_b, prompts)
    base_b = np.array([evaluator.evaluate(im, s).correct for im, s in zip(images_b, specs, strict=True)], float)
    side = round(donors[blocks[0]].shape[1] ** 0.5)
    flip = np.zeros((len(blocks), len(regions)))
    change, restored = np.zeros_like(flip), np.zeros_like(flip)
    for i, b in enumerate(blocks):
        for j, r in enumerate(regions):
            images, h = _generate(world, prompts, bad, (f"block.{b}", replace_tokens(donors[b], region_mask(side, r))), site)
            ok = np.array([evaluator.evaluate(im, s).correct for im, s in zip(images, specs, strict=True)], float)
            s = verifier.score(h, prompts)
            flip[i, j] = float(np.mean(ok > base_b))
            change[i, j] = float(np.mean(s - score_b))
            gap = score_a - score_b
            keep = np.abs(gap) > 1e-3
            restored[i, j] = float(np.mean((s - score_b)[keep] / gap[keep])) if keep.any() else np.nan
    ds = xr.Dataset({"flip": (("block", "region"), flip), "score_change": (("block", "region"), change),
                     "restored": (("block", "region"), restored)},
                    coords={"block": blocks, "region": list(regions)})
    ds.attrs.update({"n_pairs": len(pairs), "verifier_site": site, "b_correct_before": float(base_b.mean())})
    return ds


def colour_directions(store: xr.Dataset, block: int, seed: int = 0) -> tuple[np.ndarray, list[str], float]:
    """Unit directions (colour, width) of a multinomial logistic probe of the first object's drawn colour
    on block `block`'s token-mean states, its classes, and the mean token norm at that block."""
    from sklearn.linear_model import LogisticRegression

    from vhslab.probes.data import site_array
    from vhslab.probes.verifier_train import find_site

    colours = np.array([str(c) for c in store["found_color"].values[:, 0]])
    rows = np.flatnonzero(colours != "")
    arr = site_array(store, find_site(store, f"block.{block}")).isel(sample=rows)
    x = np.asarray(arr.values, np.float32)  # (rows, tokens, width)
    probe = LogisticRegression(max_iter=2000, random_state=seed).fit(x.mean(1), colours[rows])
    coef = probe.coef_ - probe.coef_.mean(0)
    return coef / np.linalg.norm(coef, axis=1, keepdims=True), list(probe.classes_), float(np.linalg.norm(x, axis=2).mean())


def steer_sweep(world, store: xr.Dataset, prompts, blocks, coefficient: float = 1.0, seed: int = 0,
                per_prompt: int = 2, evaluator=None) -> xr.Dataset:
    """Per block: steer single-object colour prompts towards another colour (the next one in the probe's
    classes) by adding coefficient x (mean token norm) x the probe direction to every token; `success`
    = share of images whose detected object colour becomes the target; `control` = the same with a
    random direction of the same norm."""
    from vhslab.data.evaluate import ShapesEvaluator

    evaluator = evaluator or ShapesEvaluator()
    unique = {s.prompt: s for s in prompts if s.tag == "colors" and len(s.include) == 1}
    if not unique:
        raise PatchError("steering needs single-object colour prompts (tag 'colors')")
    specs = [s for s in unique.values() for _ in range(per_prompt)]  # each distinct prompt, per_prompt seeds
    rng = np.random.default_rng(seed)
    seeds = [int(rng.integers(2**62)) for _ in specs]
    success, control = np.zeros(len(blocks)), np.zeros(len(blocks))
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
                edit = (f"block.{b}", add_direction(torch.as_tensor(d, dtype=torch.float32), coefficient * norm))
                image, _ = _generate(world, [spec.prompt], [s], edit)
                found = [det.color for det in evaluator.detect(image[0]) if det.cls == spec.include[0].cls]
                hits.append(bool(found) and found[0] == target)
            (control if use_random else success)[i] = float(np.mean(hits))
    ds = xr.Dataset({"success": (("block",), success), "control": (("block",), control)}, coords={"block": list(blocks)})
    ds.attrs.update({"n_prompts": len(unique), "n_images": len(specs), "coefficient": coefficient, "seed": seed})
    return ds
