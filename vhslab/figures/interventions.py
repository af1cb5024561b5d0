"""Figures of patching and steering (plotting only; the numbers come from vhslab.analysis.interventions)."""

from __future__ import annotations

import matplotlib
import seaborn as sns
import xarray as xr


def plot_patching(ds: xr.Dataset, height: float = 3.0):
    """Heatmaps (block x region) of the verdict flip rate and the restored share of the verifier's score;
    with steering in the dataset, its success and random-control rates against block."""
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steer = "steer_success" in ds
    fig, axes = plt.subplots(1, 3 if steer else 2, figsize=(height * (3.6 if steer else 2.4), height), squeeze=False)
    for ax, var, title in ((axes[0][0], "flip", "verdict flips to correct"), (axes[0][1], "restored", "verifier score restored")):
        sns.heatmap(ds[var].to_pandas(), ax=ax, annot=True, fmt=".2f", annot_kws={"size": 6}, cmap="magma",
                    vmin=0, vmax=1, cbar=False)
        ax.set_title(title, fontsize=9)
    if steer:
        ax = axes[0][2]
        ax.plot(ds.block.values, ds["steer_success"].values, marker="o", label="probe direction")
        ax.plot(ds.block.values, ds["steer_control"].values, marker="s", ls="--", label="random direction")
        ax.set_xlabel("block")
        ax.set_ylabel("colour becomes the target")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
        ax.set_title(f"colour steering (x{ds.attrs.get('coefficient', '?')} token norm)", fontsize=9)
    fig.tight_layout()
    return fig
