"""Figures of geometry studies (plotting only; the numbers come from vhslab.analysis.geometry)."""

from __future__ import annotations

import matplotlib
import seaborn as sns
import xarray as xr


def plot_geometry(ds: xr.Dataset, label: str = "verdict", kind: str = "pca", sites=None, height: float = 2.6):
    """The site x site linear CKA heatmap, then a 2-D embedding (`pca` or `umap`) per site coloured by
    `label`. Returns the matplotlib figure."""
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if kind not in ds:
        raise ValueError(f"the geometry dataset has no {kind!r} embedding (it has {[k for k in ('pca', 'umap') if k in ds]})")
    if f"label_{label}" not in ds:
        raise ValueError(f"the geometry dataset has no label {label!r}")
    sites = list(ds.site.values if sites is None else sites)
    fig, axes = plt.subplots(1, len(sites) + 1, figsize=(height * (len(sites) + 1.4), height), squeeze=False)
    sns.heatmap(ds["cka"].to_pandas(), ax=axes[0][0], vmin=0, vmax=1, cmap="viridis", square=True,
                cbar_kws={"shrink": 0.7}, xticklabels=True, yticklabels=True)
    axes[0][0].set_title("linear CKA", fontsize=8)
    axes[0][0].tick_params(labelsize=5)
    hue = ds[f"label_{label}"].values.astype(str)
    for ax, site in zip(axes[0][1:], sites, strict=True):
        xy = ds[kind].sel(site=site).values
        sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=hue, s=6, ax=ax, legend=ax is axes[0][-1], linewidth=0)
        ax.set_title(f"{site} ({kind})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if len(sites):
        axes[0][-1].legend(fontsize=6, markerscale=2, title=label, title_fontsize=6, loc="best")
    fig.tight_layout()
    return fig
