"""`vhslab probe`: layer-wise probe sweep over an activation store."""

from __future__ import annotations

from pathlib import Path

import typer

from vhslab.cli.common import claim_outputs, comma_list, emit
from vhslab.cli.options import AllowIncomplete, JsonFlag, Seed, overwrite_flag, plot_option, progress_flag
from vhslab.outputs import claim, save_figure
from vhslab.probes import open_store, run_sweep
from vhslab.probes.results import results_output
from vhslab.threads import torch_threads

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
