"""Figures of attribution studies (plotting only; the numbers come from vhslab.analysis)."""

from __future__ import annotations

import matplotlib
import numpy as np
import xarray as xr


def plot_attribution(ds: xr.Dataset, k: int = 6, height: float = 2.2):
    """For the first k samples: the image with the IG map over it (or the map alone), the patch
    ablation map, and the prompt words' IG as bars. Red: towards "yes"; blue: towards "no"."""
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = min(k, ds.sizes["sample"])
    cols = 3 if "prompt_ig" in ds else 2
    fig, axes = plt.subplots(k, cols, figsize=(height * (cols + 1.5), height * k), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 2.5][:cols]})
    for i in range(k):
        s = ds.isel(sample=i)
        ig, abl = s["visual_ig"].values, s["visual_ablation"].values
        lim = max(np.abs(ig).max(), 1e-12)
        ax = axes[i][0]
        if "image" in ds:
            img = s["image"].values
            ax.imshow(img)
            ax.imshow(ig, cmap="bwr", vmin=-lim, vmax=lim, alpha=0.55, extent=(0, img.shape[1], img.shape[0], 0),
                      interpolation="nearest")
        else:
            ax.imshow(ig, cmap="bwr", vmin=-lim, vmax=lim)
        verdict = f", verdict {int(s['verdict'])}" if "verdict" in ds else ""
        ax.set_title(f"IG, margin {float(s['margin']):+.2f}{verdict}", fontsize=7)
        lim = max(np.abs(abl).max(), 1e-12)
        axes[i][1].imshow(abl, cmap="bwr", vmin=-lim, vmax=lim)
        axes[i][1].set_title("patch ablation", fontsize=7)
        if cols == 3:
            keep = s["is_prompt_token"].values
            words, vals = s["token"].values[keep], s["prompt_ig"].values[keep]
            axes[i][2].bar(range(len(vals)), vals, color=np.where(vals >= 0, "tab:red", "tab:blue"))
            axes[i][2].axhline(0, color="k", lw=0.5)
            axes[i][2].set_xticks(range(len(vals)), list(words), rotation=60, fontsize=7)
            axes[i][2].set_title(str(s["prompt"].values)[:70], fontsize=7)
        for ax in axes[i][:2]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig
