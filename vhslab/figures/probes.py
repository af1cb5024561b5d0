"""Figures of layer-wise probe sweeps (plotting only; the numbers come from vhslab.probes)."""

from __future__ import annotations

import matplotlib
import numpy as np
import seaborn as sns
import xarray as xr

DEFAULT_METRICS = ("auroc", "auroc_within", "r2")


def plot_probe_sweep(
    ds: xr.Dataset,
    metrics=None,
    targets=None,
    probes=None,
    baseline: bool = True,
    height: float = 3.2,
):
    """Metric against depth: a panel per metric, a line per target (colour) and probe (style).

    The band is the spread over CV folds (95% CI of the mean); dashed lines are the prompt-only
    baseline of each target (the first plotted probe's model family, on the ordered prompt structure). Returns the seaborn FacetGrid (`.figure` is the matplotlib figure).
    """
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps") and not _interactive():
        matplotlib.use("Agg")
    df = ds["score"].to_dataframe().dropna(subset=["score"]).reset_index()
    df = df[np.isfinite(df["depth"])]
    metrics = list(metrics) if metrics else [m for m in DEFAULT_METRICS if m in set(df["metric"])]
    if targets:
        df = df[df["target"].isin(targets)]
    if probes:
        df = df[df["probe"].isin(probes)]
    df = df[df["metric"].isin(metrics)]
    if df.empty:
        raise ValueError(f"nothing to plot for metrics={metrics}, targets={targets}, probes={probes}")
    hue_order = [t for t in ds.target.values if t in set(df["target"])]
    palette = dict(zip(hue_order, sns.color_palette(n_colors=len(hue_order)), strict=True))
    g = sns.relplot(
        data=df, x="depth", y="score", hue="target", style="probe", col="metric", col_order=metrics,
        kind="line", markers=True, dashes=False, errorbar=("ci", 95), palette=palette, hue_order=hue_order,
        height=height, facet_kws={"sharey": False},
    )
    if baseline and "baseline_pooled" in ds:
        first = next(p for p in ds.probe.values if p in set(df["probe"]))  # the baseline of the first probe's family
        for metric, ax in g.axes_dict.items():
            for t in hue_order:
                v = float(ds["baseline_pooled"].sel(probe=first, target=t, metric=metric))
                if np.isfinite(v):
                    ax.axhline(v, color=palette[t], ls="--", lw=1, alpha=0.7)
    g.set_axis_labels("depth (block / num_blocks)", "score")
    g.set_titles("{col_name}")
    g.figure.suptitle("probe sweep (dashed: prompt-only baseline)", y=1.02)
    return g


def _interactive() -> bool:
    import sys

    return hasattr(sys, "ps1") or "ipykernel" in sys.modules
