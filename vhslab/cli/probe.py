"""`vhslab probe`: layer-wise probe sweep over an activation store; `vhslab probe-grid`: (step x block) maps of a
multi-step train / test store pair."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from vhslab.cli.common import claim_outputs, comma_list, console, emit
from vhslab.cli.options import AllowIncomplete, JsonFlag, Seed, overwrite_flag, plot_option, progress_flag
from vhslab.errors import InputError
from vhslab.figures import plot_auroc_vs_sigma
from vhslab.outputs import claim, save_figure, save_netcdf
from vhslab.probes import open_store, probe_grid, run_sweep
from vhslab.probes.results import results_output
from vhslab.threads import torch_threads
from vhslab.verifier import VerifierTrainConfig, verdict_by_step
from vhslab.verifier.load import load_llm

OverwriteResults = overwrite_flag("replace --out if it holds earlier probe results (never anything else)")
ProgressBar = progress_flag("show a progress bar")
DepthPlot = plot_option("save the depth plot to this image file")


def probe_cmd(
    data: Path = typer.Option(..., "--data", help="activation store (zarr) written by `vhslab extract`"),
    targets: str = typer.Option("verdict", help="comma list: verdict, found_class, found_color, found_count, "
                                "found_relation, present, prompt_class, recon (aliases shape, color, count, position, "
                                "class; item-wise: found_color.0; recon.latent / recon.image)"),
    probes: str = typer.Option("linear", help="comma list: linear,mlp,attn (attention pooling over tokens)"),
    out: Path = typer.Option(None, "--out", help="results file: .nc (netCDF) or a zarr folder (new, or --overwrite)"),
    overwrite: OverwriteResults = False,
    layers: str = typer.Option(None, help="comma list of block indices (default: every block of the store)"),
    sites: str = typer.Option("", "--extra-sites", "--sites", help="whole-model sites to probe IN ADDITION to the blocks: ae_latent,vision (adds, never restricts: --layers picks the blocks; --sites is the old name)"),
    folds: int = typer.Option(5, "--folds", "-k", min=2, help="meaning-disjoint CV folds"),
    inner_folds: int = typer.Option(3, "--inner-folds", min=2, help="inner CV folds that choose the site in each outer fold"),
    select: bool = typer.Option(True, help="choose the best site by nested CV (about inner-folds + 1 times the fits)"),
    grid: int = typer.Option(4, min=1, help="side of the pooled token grid for reconstruction targets"),
    n_boot: int = typer.Option(200, min=0, help="bootstrap resamples (of prompt meanings) for CIs; 0 = none"),
    baseline: bool = typer.Option(True, help="also fit the prompt-only baseline (ordered prompt structure, same model family)"),
    plot: DepthPlot = None,
    seed: Seed = 0,
    allow_incomplete: AllowIncomplete = False,
    progress: ProgressBar = True,
    as_json: JsonFlag = False,
) -> None:
    """Fit probes on every site (one in memory at a time); report per target the site chosen by nested CV,
    its selection-free score and its paired gap to the prompt-only baseline, with intervals over meanings."""
    try:
        layer_list = [int(v) for v in comma_list(layers)] if layers else None
    except ValueError:
        raise typer.BadParameter(f"--layers {layers!r}: expected comma-separated integers") from None
    outs = claim_outputs("probe", overwrite, inputs={"--data": data}, plot=plot)  # before any compute
    if out is not None:
        outs["out"] = results_output(out)
        claim([outs["out"]], overwrite, inputs={"--data": data, **({"--plot": plot} if plot else {})})
    ds = open_store(data, allow_incomplete=allow_incomplete)
    res = run_sweep(
        ds, comma_list(targets), comma_list(probes), layers=layer_list, extra_sites=tuple(comma_list(sites)), k=folds,
        inner_k=inner_folds, select=select, grid=grid, n_boot=n_boot, baseline=baseline, seed=seed, progress=progress,
        threads=torch_threads(),  # the fits (and their BLAS) on the command's --threads
    )
    result = {"data": str(data), "n_samples": int(ds.sizes["sample"]), **res.report()}
    if out:
        result["out"] = str(res.write(outs["out"]))
    if plot:
        save_figure(outs["plot"], res.plot().figure)
        result["plot"] = str(plot)
    emit(result, as_json, title="probe sweep")


def probe_grid_cmd(
    train: Path = typer.Option(..., "--train", help="multi-step store of the train suite (`vhslab extract --steps`)"),
    test: Path = typer.Option(..., "--test", help="multi-step store of an evaluation suite (meanings disjoint from --train)"),
    targets: str = typer.Option("verdict,colour,shape,count,recon", help="comma list of targets (as `vhslab probe`)"),
    probe: str = typer.Option("linear", help="probe family: linear or mlp"),
    steps: str = typer.Option(None, help="comma list of stored steps (default: every step both stores hold)"),
    layers: str = typer.Option(None, help="comma list of stored blocks (default: every block both stores hold)"),
    grid: int = typer.Option(4, min=1, help="side of the pooled token grid for the recon target"),
    n_boot: int = typer.Option(1000, min=100, help="bootstrap resamples of test meanings (>= 100: Bonferroni intervals)"),
    plot: Path = typer.Option(None, help="save the (step x block) heatmaps as PLOT.png and PLOT.pdf (PLOT: a path stem), "
                              "and with --verdict-steps the AUROC-vs-sigma curves as PLOT_sigma.png and .pdf"),
    verdict_steps: str = typer.Option(None, help="comma list of steps: also the verdict by noise level there (probe at the "
                                      "block chosen on the train store; within-prompt AUROC and Best-of-4 gain vs sigma)"),
    verifier: bool = typer.Option(False, help="with --verdict-steps: also train a VHS verifier (the world's LLM) per step"),
    verifier_steps: int = typer.Option(60, min=1, help="training steps of each per-step verifier"),
    out: Path = typer.Option(None, "--out", help="save the maps as a netCDF file (GridResult.ds; with --verdict-steps "
                             "also OUT_sigma.nc, the verdicts by noise level) for figures without recomputing"),
    overwrite: OverwriteResults = False,
    seed: Seed = 0,
    allow_incomplete: AllowIncomplete = False,
    progress: ProgressBar = True,
    as_json: JsonFlag = False,
) -> None:
    """(step x block) probe maps: fit on --train at every stored cell, score on --test against the prompt-only
    baseline with paired intervals over test meanings; per target the earliest decodable (step, block)."""
    steps_list = comma_list(steps, int, "--steps", "integers") or None
    layer_list = comma_list(layers, int, "--layers", "integers") or None
    verdict_list = comma_list(verdict_steps, int, "--verdict-steps", "integers")
    if verifier and not verdict_list:
        raise InputError("--verifier trains a verifier per step of --verdict-steps; give --verdict-steps too")
    figures = {f"plot_{ext}": None if plot is None else plot.with_suffix(f".{ext}") for ext in ("png", "pdf")}
    figures.update({f"sigma_{ext}": None if plot is None or not verdict_list else
                    plot.with_name(f"{plot.name}_sigma.{ext}") for ext in ("png", "pdf")})
    if out is not None:
        figures["out"] = out
        figures["out_sigma"] = out.with_name(f"{out.stem}_sigma.nc") if verdict_list else None
    outs = claim_outputs("probe-grid", overwrite, inputs={"--train": train, "--test": test}, **figures)
    train_ds, test_ds = (open_store(p, allow_incomplete=allow_incomplete, steps=True) for p in (train, test))
    res = probe_grid(train_ds, test_ds, comma_list(targets), probe=probe, steps=steps_list, layers=layer_list, grid=grid,
                     n_boot=n_boot, seed=seed, progress=progress, threads=torch_threads())
    result = {"train": str(train), "test": str(test), **res.to_json()}
    if verdict_list:
        llm, tokenizer = load_llm(None) if verifier else (None, None)
        cfg = VerifierTrainConfig(steps=verifier_steps, eval_every=max(1, verifier_steps // 3), align_steps=0, seed=seed)
        by_step = verdict_by_step(train_ds, test_ds, verdict_list, layer_list, llm=llm, tokenizer=tokenizer, cfg=cfg,
                                  seed=seed)
        result["verdict_by_step"] = by_step.to_json()
    for name, target in outs.items():
        if name == "out":
            save_netcdf(target, res.ds)
        elif name == "out_sigma":
            save_netcdf(target, by_step.ds)
        else:
            fig = res.plot() if name.startswith("plot") else plot_auroc_vs_sigma(by_step.curves(),
                                                                                 n=by_step.ds.attrs["n_test"])
            save_figure(target, fig)
    if plot is not None:
        result["plot"] = [str(o.path) for n, o in outs.items() if not n.startswith("out")]
    if not as_json:
        table = Table(title="earliest decodable (step, block) per target")
        for col in ("target", "metric", "baseline", "best cell", "best gap", "earliest", "gap [95% CI]"):
            table.add_column(col)
        for row in res.table():
            e = row["earliest"]
            table.add_row(row["target"], row["metric"], f"{row['baseline']:.3f}", row["best"], f"{row['best_gap']:+.3f}",
                          e["site"] if e else "none",
                          f"{e['gap']:+.3f} [{e['gap_ci'][0]:+.3f}, {e['gap_ci'][1]:+.3f}]" if e else "")
        console.print(table)
        result = {k: v for k, v in result.items() if k not in ("targets", "verdict_by_step")}
        if verdict_list:
            console.print(_verdict_table(by_step))
    emit(result, as_json, title="probe grid")


def _verdict_table(by_step) -> Table:
    """Per step and scorer: within-prompt AUROC and Best-of-4 gain, each with its interval."""
    table = Table(title="verdict by noise level (test store)")
    for col in ("step", "sigma", "block", "scorer", "within-prompt AUROC", "Bo4 gain"):
        table.add_column(col)
    cell = lambda m: f"{m['value']:.3f} [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]"  # noqa: E731
    for row in by_step.to_json()["steps"]:
        for scorer in ("probe", "verifier"):
            if scorer in row:
                table.add_row(str(row["step"]), f"{row['sigma']}", str(row["block"]), scorer,
                              cell(row[scorer]["within_prompt_auroc"]), cell(row[scorer]["gain"]))
    return table
