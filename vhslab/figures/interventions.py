"""Figures of patching and steering (plotting only; the numbers come from vhslab.analysis.interventions)."""

from __future__ import annotations

import numpy as np
import seaborn as sns
import xarray as xr

from vhslab.figures.style import (
    SEQUENTIAL,
    colour_for,
    errorbars,
    figure_legend,
    figure_title,
    finish,
    mark_significance,
    new_figure,
)


def plot_patching(ds: xr.Dataset, height: float = 3.2, suite: str | None = None):
    """Heatmaps (block x region) of the share of pairs whose verdict flips to correct and of its control
    (tokens of another prompt's correct candidate), one shared colour bar; with steering in the dataset,
    a panel of the steering success against block beside its random-direction control, and (when the
    dataset carries `steer_diff_lo` / `steer_diff_hi`) the paired difference with its 95% interval, '*'
    where it excludes 0. Returns the matplotlib figure."""
    steer = "steer_success" in ds
    panels = [("flip", "verdict flips to correct")] + ([("flip_control", "control: another prompt's tokens")]
                                                        if "flip_control" in ds else [])
    fig, axes = new_figure(1, len(panels) + steer, width=height * 1.25, height=height)
    vmax = max(0.5, float(ds["flip"].max()))
    for k, (ax, (var, title)) in enumerate(zip(axes[0], panels, strict=False)):
        table = ds[var].transpose("block", "region").to_pandas()
        sns.heatmap(table, ax=ax, annot=True, fmt=".2f", annot_kws={"size": 6}, cmap=SEQUENTIAL, vmin=0, vmax=vmax,
                    cbar=k == len(panels) - 1, cbar_kws={"label": "share of pairs flipped"})
        ax.set_title(title)
        ax.set_xlabel("patched region (all tokens / image quadrant)")
        ax.set_ylabel("patched block")
        ax.set_yticks(np.arange(len(table.index)) + 0.5, [str(b) for b in table.index], rotation=0)
    if steer:
        _steering(axes[0][-1], ds)
    figure_title(fig, "activation patching (wrong <- correct) and colour steering", suite or ds.attrs.get("suite", "geneval-shapes"),
                 ds.attrs.get("n_pairs"), "pairs")
    figure_legend(fig, axes[0][-1:])
    return finish(fig, legend_rows=1 if steer else 0)


def _steering(ax, ds: xr.Dataset) -> None:
    blocks = ds.block.values
    hit = ds["steer_success"]
    ctl = ds["steer_control"]
    hit, ctl = (v.mean("image").values if "image" in v.dims else v.values for v in (hit, ctl))
    ax.plot(blocks, hit, marker="o", color=colour_for("probe"), label="probe colour direction")
    ax.plot(blocks, ctl, marker="s", ls="--", color=colour_for("random"), label="random direction (control)")
    if "steer_diff_lo" in ds:
        lo, hi = ds["steer_diff_lo"].values, ds["steer_diff_hi"].values
        errorbars(ax, blocks + 0.15, hit - ctl, lo, hi, color=colour_for("teacher"), ls="none", ms=3,
                  label="difference, 95% interval")
        for b, a, z in zip(blocks, lo, hi, strict=True):
            mark_significance(ax, b + 0.15, z, a, z)
    ax.set_xlabel("steered block")
    ax.set_ylabel("share recoloured to the target")
    ax.set_xticks(blocks, [str(b) for b in blocks])
    ax.set_ylim(-0.05, max(0.5, float(np.nanmax(hit)) + 0.15))
    ax.set_title(f"colour steering (x{ds.attrs.get('coefficient', '?')} token norm)")
