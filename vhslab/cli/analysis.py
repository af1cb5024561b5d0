"""`vhslab attribute | patch | geometry`: why a verdict, on held-out stores of the world (or any store)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
import xarray as xr

from vhslab.analysis.geometry import geometry
from vhslab.analysis.interventions import pairs_from_store, patch_effect, patch_sweep, steer_sweep
from vhslab.analysis.study import attribution_study
from vhslab.cli.common import (
    claim_outputs,
    comma_list,
    emit,
    finite,
    fit_batch,
    save_outputs,
    verifier_row_bytes,
)
from vhslab.cli.options import AllowIncomplete, JsonFlag, OverwriteOutPlot, Seed, progress_flag
from vhslab.data.default_stores import default_store
from vhslab.errors import InputError
from vhslab.figures.geometry import plot_geometry
from vhslab.figures.interventions import plot_patching
from vhslab.probes import open_store
from vhslab.shapes.suites import load_suite
from vhslab.stats import mean_ci
from vhslab.trace.site import Site
from vhslab.verifier.load import named_verifier
from vhslab.world import load_world

StoreProgress = progress_flag("show progress bars (store extraction)")
TEST_HELP = "held-out store (default: the world's `verifier-test` store: geneval-shapes x 4, seed 1)"


def _test_store(data: Path | None, progress: bool, allow_incomplete: bool = False):
    """The held-out store at --data, or the world's `verifier-test` store."""
    return open_store(data if data is not None else default_store("verifier-test", progress), allow_incomplete=allow_incomplete)


def attribute_cmd(
    verifier: str = typer.Option("default", help="'default' (the shipped VHS verifier) or a saved verifier folder"),
    data: Path = typer.Option(None, "--data", help=TEST_HELP),
    n: int = typer.Option(64, min=1, help="held-out samples to attribute"),
    n_steps: int = typer.Option(16, min=2, help="integration steps"),
    patch: int = typer.Option(2, min=1, help="patch side (latent cells) for the ablation map"),
    internal_batch_size: int = typer.Option(64, min=1, help="most forward rows at once (bounds memory; clipped to "
                                            "--n x --n-steps)"),
    seed: Seed = 0,
    out: Path = typer.Option(None, "--out", help="attribution dataset to write (.nc)"),
    plot: Path = typer.Option(None, help="save maps over images and prompt-word bars to this image"),
    overwrite: OverwriteOutPlot = False,
    allow_incomplete: AllowIncomplete = False,
    progress: StoreProgress = True,
    as_json: JsonFlag = False,
) -> None:
    """Attributions of the verifier's yes-no margin (latent tokens: IG and patch ablation; prompt words: IG)
    with sanity checks that can fail: deletion and insertion (tokens set to the mean, and ROAD imputation),
    pointing and randomisation, each on the trained maps beside model-free controls (token norm, random)
    and the randomised model's IG, with intervals; a trained map no better than a control is "uninformative"."""
    t0 = time.perf_counter()
    outs = claim_outputs("attribute", overwrite, inputs={"--data": data, "--verifier": verifier}, out=out, plot=plot)
    v = named_verifier(verifier)
    store = _test_store(data, progress, allow_incomplete)
    internal_batch_size = fit_batch(internal_batch_size, min(n, store.sizes["sample"]) * n_steps,
                                    verifier_row_bytes(v.llm, v.config.token_grid, store), "--internal-batch-size")
    res = attribution_study(v, store, n, seed=seed, n_steps=n_steps, patch=patch, internal_batch_size=internal_batch_size,
                            pipe=load_world().pipeline)
    result = res.summary()
    save_outputs(result, res.ds, res.plot, outs)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit(result, as_json, title="attribute")


def patch_cmd(
    data: Path = typer.Option(None, "--data", help=TEST_HELP + "; pairs of a correct and a wrong candidate come from it"),
    train: Path = typer.Option(None, "--train", help="store the colour probes are fitted on (default: `verifier-train`)"),
    verifier: str = typer.Option("default", help="'default' (the shipped VHS verifier) or a saved verifier folder"),
    pairs: int = typer.Option(50, min=1, help="prompt rows with a correct and a wrong candidate"),
    blocks: str = typer.Option("", help="comma list of block indices (default: every block)"),
    coefficient: float = typer.Option(1.0, min=0.0, callback=finite, help="steering strength, in units of the mean token norm"),
    steer: bool = typer.Option(True, help="also run colour steering with its random-direction control"),
    seed: Seed = 0,
    out: Path = typer.Option(None, "--out", help="patching dataset to write (.nc)"),
    plot: Path = typer.Option(None, help="save the block x region heatmaps to this image"),
    overwrite: OverwriteOutPlot = False,
    allow_incomplete: AllowIncomplete = False,
    progress: StoreProgress = True,
    as_json: JsonFlag = False,
) -> None:
    """Activation patching (block x region, correct into wrong candidate) and colour steering per block."""
    t0 = time.perf_counter()
    outs = claim_outputs("patch", overwrite, inputs={"--data": data, "--train": train, "--verifier": verifier}, out=out,
                         plot=plot)
    world = load_world()
    n_blocks = len(world.pipeline.transformer.transformer_blocks)
    block_list = comma_list(blocks, int, "--blocks", "block indices") or list(range(n_blocks))
    if any(not 0 <= b < n_blocks for b in block_list):
        raise InputError(f"--blocks: the world's generator has blocks 0-{n_blocks - 1}, got {block_list}")
    v = named_verifier(verifier)
    ds = patch_sweep(world, v, pairs_from_store(_test_store(data, progress, allow_incomplete), pairs), block_list)
    if steer:
        train_store = open_store(train if train is not None else default_store("verifier-train", progress),
                                 allow_incomplete=allow_incomplete)
        st = steer_sweep(world, train_store, load_suite("geneval-shapes"), block_list, coefficient, seed)
        ds = xr.merge([ds, st.rename({"success": "steer_success", "control": "steer_control"})], combine_attrs="drop_conflicts")
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
    save_outputs(result, ds, lambda: plot_patching(ds), outs)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit(result, as_json, title="patch")


def geometry_cmd(
    data: Path = typer.Option(None, "--data", help=TEST_HELP),
    sites: str = typer.Option("", help="comma list of sites (default: every block, ae_latent, vision)"),
    n: int = typer.Option(1000, min=3, help="rows to embed"),
    label: str = typer.Option("verdict", help="colour points by: verdict, tag, prompt_color, found_color, found_class"),
    umap: bool = typer.Option(True, help="also compute UMAP embeddings (slower than PCA)"),
    n_boot: int = typer.Option(200, min=1, help="bootstrap draws (prompt meanings resampled) for the CKA intervals"),
    control: bool = typer.Option(True, help="also the CKA of a randomly initialised DiT of the world's shape on the same "
                                 "prompts and noise (needs a store of the world's generator)"),
    control_n: int = typer.Option(64, min=3, help="rows the random-DiT control regenerates"),
    seed: Seed = 0,
    out: Path = typer.Option(None, "--out", help="geometry dataset to write (.nc)"),
    plot: Path = typer.Option(None, help="save the CKA heatmap and embeddings to this image"),
    overwrite: OverwriteOutPlot = False,
    allow_incomplete: AllowIncomplete = False,
    progress: StoreProgress = True,
    as_json: JsonFlag = False,
) -> None:
    """PCA / UMAP of per-layer pooled states and the site x site linear CKA with bootstrap intervals, beside
    the CKA of a randomly initialised DiT of the same shape (the control)."""
    t0 = time.perf_counter()
    outs = claim_outputs("geometry", overwrite, inputs={"--data": data}, out=out, plot=plot)
    store = _test_store(data, progress, allow_incomplete)
    site_list = comma_list(sites) or None
    ds = geometry(store, site_list, n, labels=tuple(dict.fromkeys(["verdict", label])), umap=umap, seed=seed, n_boot=n_boot,
                  world=load_world() if control else None, control_n=control_n)
    names = [str(s) for s in ds.site.values]
    result = {"n": ds.attrs["n"], "sites": names, "interval": ds.attrs["interval"], **_pairs(ds, names, "cka"),
              "pca_variance_ratio": {s: [round(float(x), 3) for x in ds["pca_variance_ratio"].sel(site=s).values] for s in names}}
    if control:
        blocks = [s for s in names if Site.parse(s).is_block]
        result["random_dit"] = {"n": ds.attrs["control_n"], "seed": ds.attrs["control_seed"], "what": ds.attrs["control"],
                                **_pairs(ds.sel(site=blocks, site_b=blocks), blocks, "cka_random_dit"),
                                **_pairs(ds.sel(site=blocks, site_b=blocks), blocks, "cka_minus_random")}
    wanted = (str(Site.block(0)), str(Site.block(len(names) // 2)), "ae_latent", "vision")
    shown = [s for s in names if s in wanted] or names[:3]
    save_outputs(result, ds, lambda: plot_geometry(ds, label, "umap" if umap else "pca", shown), outs)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit(result, as_json, title="geometry")


def _pairs(ds, names: list[str], var: str) -> dict:
    """{var: {a: {b: value}}, var_ci: {a: {b: [lower, upper]}}} of a (site, site_b) matrix and its interval."""
    value, lo, hi = (ds[v].values for v in (var, f"{var}_lower", f"{var}_upper"))
    return {var: {a: {b: round(float(value[i, j]), 3) for j, b in enumerate(names)} for i, a in enumerate(names)},
            f"{var}_ci": {a: {b: [round(float(lo[i, j]), 3), round(float(hi[i, j]), 3)] for j, b in enumerate(names)}
                          for i, a in enumerate(names)}}
