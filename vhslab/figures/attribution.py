"""Figures of attribution studies (plotting only; the numbers come from vhslab.analysis)."""

from __future__ import annotations

import matplotlib
import numpy as np
import xarray as xr


def plot_attribution(ds: xr.Dataset, k: int = 6, height: float = 2.2):
    """For the first k samples: the image with the IG map over it (or the map alone), the patch
    ablation map, the model-free token-norm map (the control the checks hold IG against, if present)
    and the prompt words' IG as bars. Red: towards "yes"; blue: towards "no"."""
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = min(k, ds.sizes["sample"])
    control = "control_token_norm" in ds
    maps = 2 + control
    cols = maps + ("prompt_ig" in ds)
    fig, axes = plt.subplots(k, cols, figsize=(height * (cols + 1.5), height * k), squeeze=False,
                             gridspec_kw={"width_ratios": ([1] * maps + [2.5])[:cols]})
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
        if control:
            axes[i][2].imshow(s["control_token_norm"].values, cmap="Greys")
            axes[i][2].set_title("token norm (model-free control)", fontsize=7)
        if cols > maps:
            keep = s["is_prompt_token"].values
            words, vals = s["token"].values[keep], s["prompt_ig"].values[keep]
            bars = axes[i][maps]
            bars.bar(range(len(vals)), vals, color=np.where(vals >= 0, "tab:red", "tab:blue"))
            bars.axhline(0, color="k", lw=0.5)
            bars.set_xticks(range(len(vals)), list(words), rotation=60, fontsize=7)
            bars.set_title(str(s["prompt"].values)[:70], fontsize=7)
        for ax in axes[i][:maps]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig
