"""The causal timing map (plotting only; the numbers come from vhslab.analysis.timing)."""

from __future__ import annotations

import matplotlib
import numpy as np
import xarray as xr


def plot_timing(ds: xr.Dataset, var: str = "flip_minus_control", height: float = 3.5):
    """Heatmap, rows = denoising steps (labelled with their sigma), columns = blocks then x_t, of the
    flip rate toward the donor minus the control donor's; cells whose paired interval excludes 0 are
    marked with *; a colour bar."""
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = ds[var].transpose("step", "site").values.astype(float)
    n_steps, n_sites = values.shape
    fig, ax = plt.subplots(figsize=(max(3.0, 0.55 * n_sites + 2.0), max(height, 0.45 * n_steps + 1.5)))
    lim = max(0.1, float(np.nanmax(np.abs(values))) if values.size else 0.1)
    im = ax.imshow(values, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    sig = ds["significant"].transpose("step", "site").values if "significant" in ds else np.zeros_like(values, bool)
    for i in range(n_steps):
        for j in range(n_sites):
            ax.text(j, i, f"{values[i, j]:.2f}" + ("*" if sig[i, j] else ""), ha="center", va="center", fontsize=7,
                    color="white" if abs(values[i, j]) > 0.6 * lim else "black")
    ax.set_xticks(range(n_sites), [str(s) for s in ds.site.values], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_steps), [f"{int(s)} (sigma {float(g):.2f})" for s, g in zip(ds.step.values, ds.sigma.values, strict=True)],
                  fontsize=8)
    ax.set_xlabel("site (block output, or the noisy latent x_t)")
    ax.set_ylabel("denoising step (sigma)")
    ax.set_title(f"flip toward donor - control ({ds.attrs.get('n_pairs', '?')} pairs; * interval excludes 0)", fontsize=9)
    fig.colorbar(im, ax=ax, label="flip rate - control")
    fig.tight_layout()
    return fig
