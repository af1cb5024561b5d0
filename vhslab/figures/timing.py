"""The causal timing map (plotting only; the numbers come from vhslab.analysis.timing)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from vhslab.figures.style import DIVERGING, figure_title, finish, new_figure


def plot_timing(ds: xr.Dataset, var: str = "flip_minus_control", height: float = 3.5, suite: str | None = None):
    """Heatmap, rows = denoising steps (labelled with their sigma), columns = blocks then x_t, of the
    flip rate toward the donor minus the control donor's (diverging colours, a colour bar); each cell
    carries its value and, when `{var}_ci` is there, its paired 95% interval; cells whose interval
    excludes 0 are marked with *. The caption states the suite and the number of pairs. Returns the figure."""
    values = ds[var].transpose("step", "site").values.astype(float)
    n_steps, n_sites = values.shape
    fig, axes = new_figure(1, 1, width=max(3.0, 0.85 * n_sites + 2.2), height=max(height, 0.6 * n_steps + 1.6))
    ax = axes[0, 0]
    lim = max(0.1, float(np.nanmax(np.abs(values))) if values.size else 0.1)
    im = ax.imshow(values, cmap=DIVERGING, vmin=-lim, vmax=lim, aspect="auto")
    ax.grid(False)
    sig = ds["significant"].transpose("step", "site").values if "significant" in ds else np.zeros_like(values, bool)
    ci = ds[f"{var}_ci"].transpose("step", "site", "bound").values if f"{var}_ci" in ds else None
    for i in range(n_steps):
        for j in range(n_sites):
            text = f"{values[i, j]:.2f}" + ("*" if sig[i, j] else "")
            if ci is not None:
                text += f"\n[{ci[i, j, 0]:.2f}, {ci[i, j, 1]:.2f}]"
            ax.text(j, i, text, ha="center", va="center", fontsize=6.5,
                    color="white" if abs(values[i, j]) > 0.6 * lim else "black")
    ax.set_xticks(range(n_sites), [str(s) for s in ds.site.values], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_steps), [f"{int(s)} (sigma {float(g):.2f})" for s, g in zip(ds.step.values, ds.sigma.values, strict=True)],
                  fontsize=8)
    ax.set_xlabel("site (block output, or the noisy latent x_t)")
    ax.set_ylabel("denoising step (sigma)")
    kind = ds.attrs.get("pairs", "colour")  # colour: the donor asks for another colour; correctness: a correct candidate
    fig.colorbar(im, ax=ax, label=("became correct" if kind == "correctness" else "flip rate toward donor")
                 + " - control (fraction of pairs)")
    figure_title(fig, "causal timing: transplanting the donor's state at (step, site)\n"
                      "flip - control, [95% interval over recipient prompts], * interval excludes 0",
                 suite or ds.attrs.get("prompts", "geneval-shapes"), ds.attrs.get("n_pairs", ds.sizes.get("pair")),
                 "correct-into-wrong pairs" if kind == "correctness" else "colour pairs")
    return finish(fig)
