"""Figures of verifier sweeps (plotting only; the numbers come from vhslab.verifier.sweep)."""

from __future__ import annotations

import matplotlib
import numpy as np
import seaborn as sns
import xarray as xr

METRICS = ("auroc", "within_prompt_auroc", "gain")


def plot_verifier_depth(sweep: xr.Dataset, metrics=METRICS, height: float = 3.2):
    """Per metric a panel: verifier and best probe against block depth, with their 95% intervals
    (over meanings) as bands; sites without a depth (`ae_latent`, `vision`, `text`) are horizontal
    lines in the verifier's colour with their name. Returns the matplotlib figure."""
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    missing = [m for m in metrics if m not in sweep.metric.values]
    if missing:
        raise ValueError(f"metrics {missing} are not in the sweep (it has {list(sweep.metric.values)})")
    fig, axes = plt.subplots(1, len(metrics), figsize=(height * 1.35 * len(metrics), height), squeeze=False)
    colors = dict(zip(sweep.model.values, sns.color_palette(n_colors=sweep.sizes["model"]), strict=True))
    depth = sweep["depth"].values
    blocks = np.isfinite(depth)
    order = np.argsort(depth[blocks])
    for ax, metric in zip(axes[0], metrics, strict=True):
        for model in sweep.model.values:
            sel = sweep.sel(model=model, metric=metric)
            x = depth[blocks][order]
            ax.plot(x, sel["value"].values[blocks][order], marker="o", color=colors[model], label=str(model))
            ax.fill_between(x, sel["lo"].values[blocks][order], sel["hi"].values[blocks][order], color=colors[model], alpha=0.2)
        for k, site in enumerate(sweep.site.values[~blocks]):
            v = float(sweep["value"].sel(model="verifier", site=site, metric=metric))
            ax.axhline(v, color=colors["verifier"], ls=(0, (2, 1 + k)), lw=1)
            ax.annotate(str(site), (1.0, v), xycoords=("axes fraction", "data"), fontsize=7, ha="right", va="bottom")
        ax.set_xlabel("block depth (l / L)")
        ax.set_title(metric)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig
