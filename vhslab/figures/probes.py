"""Figures of layer-wise probe sweeps (plotting only; the numbers come from vhslab.probes)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from vhslab.figures.style import (
    band,
    colour_for,
    errorbars,
    figure_legend,
    figure_title,
    finish,
    new_figure,
)

DEFAULT_METRICS = ("auroc", "auroc_within", "r2")
LABELS = {"auroc": "AUROC (pooled)", "auroc_within": "within-prompt AUROC", "r2": "R² (held out)",
          "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy"}


def plot_probe_sweep(ds: xr.Dataset, metrics=None, targets=None, probes=None, baseline: bool = True, height: float = 3.8,
                     suite: str | None = None):
    """Metric against depth: a panel per metric, a line per target (its fixed colour) and probe (solid:
    the first probe, dashed: the next), the band its 95% interval over prompt meanings (`ci_low`,
    `ci_high`). Sites without a block (`ae_latent`, ...) are points on their own labelled ticks right of
    the blocks; the prompt-only baseline of each target is a short bar of the target's colour on the
    `prompt only` tick. One legend for the figure. Returns the matplotlib figure."""
    metrics = [m for m in (metrics or DEFAULT_METRICS) if m in ds.metric.values and np.isfinite(ds["pooled"].sel(metric=m)).any()]
    targets = [t for t in ds.target.values if not targets or t in targets]
    probes = [p for p in ds.probe.values if not probes or p in probes]
    if not metrics or not targets or not probes:
        raise ValueError(f"nothing to plot for metrics={metrics}, targets={targets}, probes={probes}")
    is_block = ds["layer"].values >= 0 if "layer" in ds.coords else np.isfinite(ds["depth"].values)
    depth = ds["depth"].values
    others = [str(s) for s in ds.site.values[~is_block]]
    x_other = 1.0 + 0.15 * (1 + np.arange(len(others)))
    x_base = 1.0 + 0.15 * (len(others) + 1)
    fig, axes = new_figure(1, len(metrics), width=height * 1.5, height=height)
    for ax, metric in zip(axes[0], metrics, strict=True):
        shown = False
        for t in targets:
            for k, p in enumerate(probes):
                sel = dict(target=t, probe=p, metric=metric)
                v, lo, hi = (ds[var].sel(**sel).values for var in ("pooled", "ci_low", "ci_high"))
                if not np.isfinite(v).any():
                    continue
                shown = True
                label = t if k == 0 else f"_{t}"
                band(ax, depth[is_block], v[is_block], lo[is_block], hi[is_block], colour_for(t), label, ls=("-", "--", ":")[k % 3])
                if others:
                    shift = 0.025 * (targets.index(t) - (len(targets) - 1) / 2) + 0.012 * k
                    errorbars(ax, x_other + shift, v[~is_block], lo[~is_block], hi[~is_block], color=colour_for(t), ls="none", ms=3)
            if baseline and "baseline_pooled" in ds:
                b = float(ds["baseline_pooled"].sel(probe=probes[0], target=t, metric=metric))
                if np.isfinite(b):
                    ax.plot([x_base - 0.05, x_base + 0.05], [b, b], color=colour_for(t), lw=2.5, solid_capstyle="butt")
        if not shown:
            ax.set_visible(False)
        for k, p in enumerate(probes):
            ax.plot([], [], color="0.3", ls=("-", "--", ":")[k % 3], label=f"probe: {p}")
        ticks = [0, 0.25, 0.5, 0.75, 1.0]
        names = others + (["prompt only"] if baseline and "baseline_pooled" in ds else [])
        ax.set_xticks(ticks + list(x_other) + ([x_base] if len(names) > len(others) else []), [f"{t:g}" for t in ticks] + names)
        for label in ax.get_xticklabels()[len(ticks):]:
            label.set_rotation(45)
            label.set_ha("right")
        ax.axvline(1.075, color="0.7", lw=0.6)
        ax.set_xlabel("block depth (block / num_blocks)  |  other sites")
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.set_title(LABELS.get(metric, metric))
    n = ds.attrs.get("n_samples") or ds.sizes.get("sample")
    figure_title(fig, "linear and MLP probes by depth (bands: 95% interval over meanings)", suite or ds.attrs.get("suite", "train"), n, "samples")
    figure_legend(fig, axes, ncol=5)
    return finish(fig, legend_rows=1)
