"""Figures of geometry studies (plotting only; the numbers come from vhslab.analysis.geometry)."""

from __future__ import annotations

import itertools

import matplotlib
import seaborn as sns
import xarray as xr


def plot_geometry(ds: xr.Dataset, label: str = "verdict", kind: str = "pca", sites=None, height: float = 2.6):
    """The site x site linear CKA heatmap, the CKA of each block with the next one (with its interval,
    beside a randomly initialised DiT's when the dataset has the control), then a 2-D embedding (`pca` or
    `umap`) per site coloured by `label`. Returns the matplotlib figure."""
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if kind not in ds:
        raise ValueError(f"the geometry dataset has no {kind!r} embedding (it has {[k for k in ('pca', 'umap') if k in ds]})")
    if f"label_{label}" not in ds:
        raise ValueError(f"the geometry dataset has no label {label!r}")
    sites = list(ds.site.values if sites is None else sites)
    index = ds["site_block"].values if "site_block" in ds else [-1] * ds.sizes["site"]  # block index, -1: not a block
    blocks = [(str(s), int(k)) for s, k in zip(ds.site.values, index, strict=True) if k >= 0]
    curve = len(blocks) >= 2 and "cka_lower" in ds
    first = 1 + curve
    fig, axes = plt.subplots(1, len(sites) + first, figsize=(height * (len(sites) + first + 0.4), height), squeeze=False)
    sns.heatmap(ds["cka"].to_pandas(), ax=axes[0][0], vmin=0, vmax=1, cmap="viridis", square=True,
                cbar_kws={"shrink": 0.7}, xticklabels=True, yticklabels=True)
    axes[0][0].set_title("linear CKA", fontsize=8)
    axes[0][0].tick_params(labelsize=5)
    if curve:
        _next_block_curve(axes[0][1], ds, blocks)
    hue = ds[f"label_{label}"].values.astype(str)
    for ax, site in zip(axes[0][first:], sites, strict=True):
        xy = ds[kind].sel(site=site).values
        sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=hue, s=6, ax=ax, legend=ax is axes[0][-1], linewidth=0)
        ax.set_title(f"{site} ({kind})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if len(sites):
        axes[0][-1].legend(fontsize=6, markerscale=2, title=label, title_fontsize=6, loc="best")
    fig.tight_layout()
    return fig


def _next_block_curve(ax, ds: xr.Dataset, blocks: list[tuple[str, int]]) -> None:
    """CKA(block k, block k+1) with its interval, for the trained DiT and (if present) the random one."""
    import numpy as np

    x = np.arange(len(blocks) - 1)
    runs = [("cka", "trained", "tab:blue")] + ([("cka_random_dit", "random DiT", "tab:grey")] if "cka_random_dit" in ds else [])
    for var, name, colour in runs:
        value, lo, hi = (np.array([float(ds[v].sel(site=a, site_b=b)) for (a, _), (b, _) in itertools.pairwise(blocks)])
                         for v in (var, f"{var}_lower", f"{var}_upper"))
        ax.errorbar(x, value, yerr=[np.maximum(value - lo, 0), np.maximum(hi - value, 0)], color=colour, label=name, marker="o", ms=2, lw=1, capsize=1.5)
    ax.set_xticks(x, [f"{a}-{b}" for (_, a), (_, b) in itertools.pairwise(blocks)], fontsize=5, rotation=60)
    ax.set_title("CKA, block k vs k+1", fontsize=8)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6)
