"""Figures of the step axis (plotting only; the numbers come from `vhslab.probes.grid` and the verdict-by-step
results): (step x block) heatmaps of the gap to the prompt-only baseline, and AUROC against sigma."""

from __future__ import annotations

import numpy as np
import xarray as xr

from vhslab.figures.style import DIVERGING, band, colour_for, figure_legend, figure_title, finish, new_figure

METRIC_NAMES = {"auroc_within": "within-prompt AUROC", "auroc": "AUROC", "r2": "R$^2$"}
TEST_STORE = "held-out test store"  # the suite line of a caption when the result does not name its suite


def _step_labels(ds: xr.Dataset) -> list[str]:
    sigma = ds["sigma"].values if "sigma" in ds.coords else np.full(ds.sizes["step"], np.nan)
    return [f"{int(s)}\n({g:.2f})" if np.isfinite(g) else str(int(s)) for s, g in zip(ds.step.values, sigma, strict=True)]


def _n_test(ds: xr.Dataset):
    """The test samples behind the maps: one number, or 'a-b' when targets use different subsets."""
    if "n_test" not in ds:
        return ds.attrs.get("n_test")
    n = sorted({int(v) for v in np.atleast_1d(ds["n_test"].values)})
    return str(n[0]) if len(n) == 1 else f"{n[0]}-{n[-1]}"


def plot_step_maps(ds: xr.Dataset, targets=None, cols: int = 3, size: float = 3.2, suite: str | None = None):
    """One heatmap per target: step (x, with sigma) by block (y), coloured by the gap to the prompt-only
    baseline (diverging, centred at 0, a colour bar per panel); a dot marks cells decodable by the grid's
    rule, a ring the earliest. `ds`: a `GridResult.ds`. One legend for the figure. Returns the figure."""
    targets = [str(t) for t in (targets or ds.target.values)]
    rows, ncols = -(-len(targets) // cols), min(cols, len(targets))
    fig, axes = new_figure(rows, ncols, width=size * 1.1, height=size)
    for ax in axes.ravel()[len(targets):]:
        ax.axis("off")
    for ax, target in zip(axes.ravel(), targets, strict=False):
        one = ds.sel(target=target)
        gap = one["gap"].transpose("layer", "step").values
        lim = float(np.nanmax(np.abs(gap))) if np.isfinite(gap).any() else 1.0
        im = ax.imshow(gap, origin="lower", aspect="auto", cmap=DIVERGING, vmin=-lim, vmax=lim)
        ax.grid(False)
        dec = one["decodable"].transpose("layer", "step").values.astype(bool)
        yy, xx = np.nonzero(dec)
        ax.scatter(xx, yy, s=18, c="k", marker="o", label="decodable (gap and value intervals clear, Bonferroni)")
        if dec.any():
            first = np.argwhere(dec.T)[0]  # (step, layer) row-major: earliest step, then lowest block
            ax.scatter([first[0]], [first[1]], s=140, facecolors="none", edgecolors="k", linewidths=1.5,
                       label="earliest decodable")
        ax.set_xticks(range(ds.sizes["step"]), _step_labels(ds), fontsize=7)
        ax.set_yticks(range(ds.sizes["layer"]), [str(int(v)) for v in ds.layer.values], fontsize=7)
        ax.set_xlabel("denoising step (sigma)")
        ax.set_ylabel("block")
        metric = METRIC_NAMES.get(str(one.metric.values), str(one.metric.values))
        base = f"{float(one.baseline):.2f} [{float(one.baseline_ci_low):.2f}, {float(one.baseline_ci_high):.2f}]" \
            if "baseline_ci_low" in one else f"{float(one.baseline):.2f}"
        ax.set_title(f"{target}: prompt-only {base}", fontsize=8)
        fig.colorbar(im, ax=ax, label=f"{metric} - prompt-only", shrink=0.85)
    figure_title(fig, "probe gap to the prompt-only baseline by denoising step and block",
                 suite or ds.attrs.get("suite", TEST_STORE), _n_test(ds), "test samples")
    figure_legend(fig, axes)
    return finish(fig, legend_rows=1.2 / rows)


def plot_auroc_vs_sigma(curves: dict[str, dict], metric: str = "within-prompt AUROC", suite: str | None = None,
                        n=None):
    """AUROC against sigma, one line per scorer (its fixed colour: `probe`, `verifier`) with its 95% interval
    as a band. `curves`: name -> {"sigma": [...], "value": [...], "ci": [[lo, hi], ...]} (`StepVerdicts.curves()`).
    Sigma falls as denoising goes on, so the x axis runs from noise (left, sigma 1) to the clean image; the
    dashed line is chance. `suite` and `n` (test samples) go into the caption. Returns the figure."""
    fig, axes = new_figure(1, 1, width=4.6, height=3.4)
    ax = axes[0, 0]
    for name, c in curves.items():
        sigma, value = np.asarray(c["sigma"], float), np.asarray(c["value"], float)
        ci = np.asarray(c["ci"], float).reshape(len(sigma), 2)
        band(ax, sigma, value, ci[:, 0], ci[:, 1], colour_for(name), label=name)
    ax.axhline(0.5, color=colour_for("baseline"), lw=0.8, ls="--", label="chance")
    ax.invert_xaxis()
    ax.set_xlabel("sigma (noise level; denoising runs left to right)")
    ax.set_ylabel(metric)
    figure_title(fig, f"{metric} by noise level\n(bands: 95% interval over test meanings; dashed: chance)", suite or TEST_STORE, n,
                 "test samples")
    figure_legend(fig, axes)
    return finish(fig, legend_rows=1.1)
