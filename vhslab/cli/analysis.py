"""`vhslab attribute | patch | patch-timing | geometry`: why a verdict, on held-out stores of the world (or any store)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from vhslab.analysis.geometry import geometry_study
from vhslab.analysis.interventions import patch_study
from vhslab.analysis.study import attribution_study
from vhslab.analysis.timing import colour_pairs, correctness_pairs, patch_timing
from vhslab.cli.common import (
    claim_outputs,
    comma_list,
    console,
    emit,
    finite,
    fit_batch,
    save_outputs,
    verifier_row_bytes,
)
from vhslab.cli.options import AllowIncomplete, JsonFlag, OverwriteOutPlot, Seed, progress_flag
from vhslab.data.default_stores import default_store
from vhslab.errors import InputError, MissingError
from vhslab.probes import open_store
from vhslab.shapes.suites import load_suite
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
    store = _test_store(data, progress, allow_incomplete)
    train_store = open_store(train if train is not None else default_store("verifier-train", progress),
                             allow_incomplete=allow_incomplete) if steer else None
    res = patch_study(world, v, store, block_list, pairs, train=train_store, coefficient=coefficient, seed=seed)
    result = res.to_json()
    save_outputs(result, res.ds, res.plot, outs)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit(result, as_json, title="patch")


def patch_timing_cmd(
    pairs: int = typer.Option(20, min=1, help="recipient / donor pairs: single-object colour prompts of the held-out "
                              "`geneval-shapes` suite (20 of them), the donor asking for the next colour"),
    per_prompt: int = typer.Option(1, min=1, help="pairs (seeds) per recipient prompt"),
    kind: str = typer.Option("colour", help="'colour' (the donor asks for the next colour) or 'correctness' (a correct "
                             "candidate of the recipient's own prompt into a wrong one; control: another wrong one)"),
    candidates: int = typer.Option(4, min=3, help="with --kind correctness: candidates generated per prompt to find pairs"),
    steps: str = typer.Option("", help="comma list of denoising steps, 0-based (default: every step of the teacher)"),
    blocks: str = typer.Option("", help="comma list of block indices (default: every block)"),
    x_t: bool = typer.Option(True, "--x-t/--no-x-t", help="also transplant the noisy latent x_t at each step"),
    batch_size: int = typer.Option(32, min=1, help="pairs generated at once"),
    n_boot: int = typer.Option(1000, min=1, help="bootstrap draws (recipient prompts resampled)"),
    seed: Seed = 0,
    out: Path = typer.Option(None, "--out", help="timing dataset to write (.nc)"),
    plot: Path = typer.Option(None, help="save the step x site map to this PNG, and a PDF beside it"),
    overwrite: OverwriteOutPlot = False,
    as_json: JsonFlag = False,
) -> None:
    """Causal timing on the world's multi-step teacher: for each (step, block) and x_t at each step,
    transplant a donor's state (a prompt differing in colour) into the recipient at that one step, and a
    control donor's (the recipient's prompt, another seed); the flip rate toward the donor's colour minus
    the control's, with paired intervals over prompts."""
    t0 = time.perf_counter()
    if kind not in ("colour", "correctness"):
        raise InputError(f"--kind is 'colour' or 'correctness', got {kind!r}")
    plots = {"plot": plot.with_suffix(".png"), "plot_pdf": plot.with_suffix(".pdf")} if plot is not None else {}
    outs = claim_outputs("patch-timing", overwrite, out=out, **plots)
    world = load_world()
    if world.teacher is None:
        raise MissingError("patch-timing needs the world's multi-step teacher (vhslab/assets/world/teacher); it is not shipped")
    gen = world.teacher_gen_config.resolve(world.teacher)
    n_blocks = len(world.teacher.transformer.transformer_blocks)
    step_list = comma_list(steps, int, "--steps", "step indices") or list(range(gen.steps))
    block_list = comma_list(blocks, int, "--blocks", "block indices") or list(range(n_blocks))
    suite = load_suite("geneval-shapes")
    pair_list = (colour_pairs(suite, pairs, seed, per_prompt) if kind == "colour"
                 else correctness_pairs(world.teacher, suite, gen, pairs, candidates, seed))
    res = patch_timing(world.teacher, pair_list, step_list, block_list, gen=gen, x_t=x_t, batch_size=batch_size,
                       n_boot=n_boot, seed=seed)
    res.ds.attrs["pairs"] = kind
    result = {"pairs": kind, **res.to_json()}
    save_outputs(result, res.ds, res.plot, outs)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if not as_json:
        print_timing_table(res.ds)
    emit(result, as_json, title="patch-timing")


def print_timing_table(ds) -> None:
    """The step x site map of flip - control (* when its interval excludes 0) as a rich table."""
    table = Table(title="flip toward donor - control (rows: step, sigma)")
    table.add_column("step (sigma)")
    for site in ds.site.values:
        table.add_column(str(site), justify="right")
    for s, sigma in zip(ds.step.values, ds.sigma.values, strict=True):
        row = ds.sel(step=s)
        table.add_row(f"{int(s)} ({float(sigma):.2f})", *[
            f"{float(row['flip_minus_control'].sel(site=x)):+.2f}" + ("*" if bool(row["significant"].sel(site=x)) else "")
            for x in ds.site.values])
    console.print(table)


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
    res = geometry_study(store, comma_list(sites) or None, n, label, umap=umap, seed=seed, n_boot=n_boot,
                         world=load_world() if control else None, control_n=control_n)
    result = res.to_json()
    save_outputs(result, res.ds, res.plot, outs)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit(result, as_json, title="geometry")

