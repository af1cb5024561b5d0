"""An attribution study on held-out store rows: maps, prompt-token attributions and the sanity checks,
in one dataset (`AttributionResult.ds`) that plots itself."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from vhslab.analysis.attribution import AttributionError, attribute, patch_ablation, visual_ig
from vhslab.analysis.checks import random_map, run_checks, token_norm_map
from vhslab.analysis.sanity import by_fraction, object_cells, pointing, randomised_copy, rank_correlation
from vhslab.figures.attribution import plot_attribution
from vhslab.probes.data import as_strings
from vhslab.search.generation import decode_ae
from vhslab.shapes.phrasing import parse_prompt
from vhslab.stats import mean_ci
from vhslab.trace.site import find_site
from vhslab.verifier.data import ChunkReader

MAPS = {"ig": "integrated gradients of the trained verifier", "ablation": "patch ablation of the trained verifier",
        "token_norm": "model-free: each token's norm after the verifier's normalisation",
        "random": "model-free: a seeded Gaussian draw",
        "randomised_ig": "integrated gradients of the verifier with re-initialised connector and LLM"}


@dataclass
class AttributionResult:
    """An attribution study: per-sample maps and the sanity checks beside them (`ds`), with
    `summary()` (the JSON the CLI prints) and the figure."""

    ds: xr.Dataset

    def summary(self) -> dict:
        return json.loads(self.ds.attrs["summary"])

    def plot(self, k: int = 6):
        return plot_attribution(self.ds, k)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        self.ds.to_netcdf(path)
        return path


def choose_rows(ds: xr.Dataset, n: int, seed: int = 0) -> np.ndarray:
    """n store rows drawn without replacement (seeded), sorted; an error if the store is smaller."""
    total = ds.sizes["sample"]
    if not (isinstance(n, int) and 1 <= n <= total):
        raise AttributionError(f"n must be in 1-{total} (the store's rows), got {n!r}")
    return np.sort(np.random.default_rng(seed).choice(total, n, replace=False))


def store_images(pipe, ds: xr.Dataset, rows: np.ndarray) -> np.ndarray | None:
    """The decoded images of store rows, from their stored `ae_latent` (the decoder's exact input)."""
    if "ae_latent" not in ds:
        return None
    z = torch.as_tensor(np.asarray(ds["ae_latent"].isel(sample=rows).values, np.float32))  # (n, h*w, C)
    side = round(z.shape[1] ** 0.5)
    with torch.no_grad():
        return decode_ae(pipe, z.transpose(1, 2).reshape(len(rows), z.shape[2], side, side))


def attribution_study(verifier, store: xr.Dataset, n: int = 64, *, seed: int = 0, n_steps: int = 16, patch: int = 2,
                      internal_batch_size: int = 64, pipe=None, fractions=(0.1, 0.2, 0.3, 0.5), n_boot: int = 1000,
                      text: bool = True) -> AttributionResult:
    """Attribute `verifier` on n held-out rows of `store` and run the sanity checks; `pipe` (the
    generator whose decoder made the store) lets the maps be drawn over the images and enables the
    pointing score."""
    site = find_site(store, verifier.config.site) if verifier.config.site != "text" else None
    if site is None:
        raise AttributionError("a text-only verifier has no visual tokens to attribute")
    rows = choose_rows(store, n, seed)
    hidden = torch.as_tensor(ChunkReader(store, site, int(store.attrs.get("sample_chunk", 64)))(rows))
    prompts = list(as_strings(store["prompt"].values[rows]))
    images = store_images(pipe, store, rows) if pipe is not None else None
    res = attribute(verifier, hidden, prompts, images=images, n_steps=n_steps, patch=patch,
                    internal_batch_size=internal_batch_size, text=text)
    verifier.eval()
    maps, randomised = _maps(verifier, hidden, prompts, res, seed, n_steps, patch, internal_batch_size)
    cells = None if images is None else object_cells(images, [parse_prompt(p) for p in prompts], res.sizes["grid_row"])
    table, values, curves = run_checks(verifier, hidden, prompts, maps, randomised, images=images, cells=cells,
                                       fractions=fractions, n_boot=n_boot, seed=seed)
    rho = rank_correlation(maps["ig"], randomised["ig"])
    tags = np.array(as_strings(store["tag"].values[rows]), dtype=object)
    side = res.sizes["grid_row"]
    grid = ("sample", "grid_row", "grid_col")
    res = res.assign(rank_corr_randomised=("sample", rho), tag=("sample", tags), row=("sample", rows),
                     verdict=("sample", store["verdict"].values[rows].astype(np.int8)),
                     control_token_norm=(grid, maps["token_norm"].reshape(n, side, side)),
                     control_random=(grid, maps["random"].reshape(n, side, side)),
                     randomised_ig=(grid, maps["randomised_ig"].reshape(n, side, side)))
    res = res.assign(_check_arrays(values, list(maps), n)).assign_coords(check=list(values), map=list(maps))
    summary = {"site": verifier.config.site, "n": n, "checks": table, "maps": MAPS,
               "deletion": by_fraction(curves, "ig", n_boot, seed),
               "randomisation_rank_corr": {"mean": float(rho.mean()), "ci": mean_ci(rho, n_boot, seed)},
               "ig_completeness_error": float(res["ig_delta"].mean()), "mean_abs_margin": float(np.abs(res["margin"]).mean())}
    if images is not None:
        share, chance = pointing(res["visual_ig"].values, images, None, cells=cells)
        res = res.assign(pointing=("sample", share), pointing_chance=("sample", chance))
        summary["pointing"] = {}
        for t in sorted(set(tags)):
            ok = (tags == t) & np.isfinite(share)
            if ok.any():
                summary["pointing"][t] = {"share": float(share[ok].mean()), "chance": float(chance[ok].mean()),
                                          "n": int(ok.sum()), "gain_ci": mean_ci(share[ok] - chance[ok], n_boot, seed)}
    res.attrs["summary"] = json.dumps(summary)
    return AttributionResult(res)


def _maps(verifier, hidden, prompts, res, seed, n_steps, patch, internal_batch_size):
    """The maps the checks compare ({name: (sample, token)}, see MAPS) and the same maps computed on the
    weight-randomised verifier (the randomised model's own map on a second, independent randomisation)."""
    n, t = hidden.shape[:2]
    rnd, rnd2 = randomised_copy(verifier, seed), randomised_copy(verifier, seed + 1)
    rnd_ig, _ = visual_ig(rnd, hidden, prompts, n_steps, internal_batch_size)
    maps = {"ig": res["visual_ig"].values.reshape(n, t), "ablation": res["visual_ablation"].values.reshape(n, t),
            "token_norm": token_norm_map(verifier, hidden), "random": random_map((n, t), seed), "randomised_ig": rnd_ig}
    randomised = {"ig": rnd_ig, "ablation": patch_ablation(rnd, hidden, prompts, patch, internal_batch_size),
                  "token_norm": token_norm_map(rnd, hidden), "random": random_map((n, t), seed),
                  "randomised_ig": visual_ig(rnd2, hidden, prompts, n_steps, internal_batch_size)[0]}
    return maps, randomised


def _check_arrays(values: dict, names: list[str], n: int) -> dict:
    """`check_num` / `check_den` (check, map, sample): each check's per-sample terms (value = sum / sum)."""
    num, den = np.full((2, len(values), len(names), n), np.nan)
    for i, per_map in enumerate(values.values()):
        for j, name in enumerate(names):
            if name in per_map:
                num[i, j], den[i, j] = per_map[name]
    return {"check_num": (("check", "map", "sample"), num), "check_den": (("check", "map", "sample"), den)}
