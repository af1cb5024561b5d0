"""Figures of the step axis (plotting only; the numbers come from `vhslab.probes.grid` and the verdict-by-step
results): (step x block) heatmaps of the gap to the prompt-only baseline, and AUROC against sigma."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

METRIC_NAMES = {"auroc_within": "within-prompt AUROC", "auroc": "AUROC", "r2": "R$^2$"}


def _step_labels(ds: xr.Dataset) -> list[str]:
    sigma = ds["sigma"].values if "sigma" in ds.coords else np.full(ds.sizes["step"], np.nan)
    return [f"{int(s)}\n({g:.2f})" if np.isfinite(g) else str(int(s)) for s, g in zip(ds.step.values, sigma, strict=True)]


def plot_step_maps(ds: xr.Dataset, targets=None, cols: int = 3, size: float = 3.2):
    """One heatmap per target: step (x, with sigma) by block (y), coloured by the gap to the prompt-only
    baseline (diverging, centred at 0); a dot marks cells decodable by the grid's rule, a ring the earliest.
    `ds`: a `GridResult.ds`. Returns the matplotlib figure."""
    targets = [str(t) for t in (targets or ds.target.values)]
    rows = -(-len(targets) // cols)
    fig, axes = plt.subplots(rows, min(cols, len(targets)), figsize=(size * min(cols, len(targets)), size * rows),
                             squeeze=False)
    for ax in axes.ravel()[len(targets):]:
        ax.axis("off")
    for ax, target in zip(axes.ravel(), targets, strict=False):
        one = ds.sel(target=target)
        gap = one["gap"].transpose("layer", "step").values
        lim = float(np.nanmax(np.abs(gap))) if np.isfinite(gap).any() else 1.0
        im = ax.imshow(gap, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
        dec = one["decodable"].transpose("layer", "step").values.astype(bool)
        yy, xx = np.nonzero(dec)
        ax.scatter(xx, yy, s=18, c="k", marker="o", label="decodable")
        if dec.any():
            first = np.argwhere(dec.T)[0]  # (step, layer) row-major: earliest step, then lowest block
            ax.scatter([first[0]], [first[1]], s=140, facecolors="none", edgecolors="k", linewidths=1.5)
        ax.set_xticks(range(ds.sizes["step"]), _step_labels(ds), fontsize=7)
        ax.set_yticks(range(ds.sizes["layer"]), [str(int(v)) for v in ds.layer.values], fontsize=7)
        ax.set_xlabel("step (sigma)")
        ax.set_ylabel("block")
        metric = METRIC_NAMES.get(str(one.metric.values), str(one.metric.values))
        ax.set_title(f"{target}: baseline {float(one.baseline):.2f}", fontsize=9)
        fig.colorbar(im, ax=ax, label=f"{metric} - prompt-only", shrink=0.85)
    fig.suptitle("gap to the prompt-only baseline (dot: decodable by the grid's rule, interval excludes 0; ring: earliest)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_auroc_vs_sigma(curves: dict[str, dict], metric: str = "within-prompt AUROC"):
    """AUROC against sigma, one line per scorer with its interval band. `curves`: name -> {"sigma": [...],
    "value": [...], "ci": [[lo, hi], ...]} (e.g. "probe", "verifier"). Sigma falls as denoising goes on,
    so the x axis runs from noise (left, sigma 1) to the clean image. Returns the matplotlib figure."""
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    for name, c in curves.items():
        sigma, value = np.asarray(c["sigma"], float), np.asarray(c["value"], float)
        ci = np.asarray(c["ci"], float).reshape(len(sigma), 2)
        line, = ax.plot(sigma, value, marker="o", label=name)
        ax.fill_between(sigma, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.2)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.invert_xaxis()
    ax.set_xlabel("sigma (noise level; denoising runs left to right)")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
