"""Figures of patching and steering (plotting only; the numbers come from vhslab.analysis.interventions)."""

from __future__ import annotations

import matplotlib
import seaborn as sns
import xarray as xr


def plot_patching(ds: xr.Dataset, height: float = 3.0):
    """Heatmaps (block x region) of the verdict flip rate and of its control (tokens of another prompt's
    correct candidate); with steering in the dataset, its success and random-control rates against block."""
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steer = "steer_success" in ds
    panels = [("flip", "verdict flips to correct")] + ([("flip_control", "control: another prompt's tokens")]
                                                        if "flip_control" in ds else [])
    fig, axes = plt.subplots(1, len(panels) + steer, figsize=(height * 1.2 * (len(panels) + steer), height), squeeze=False)
    for ax, (var, title) in zip(axes[0], panels, strict=False):
        sns.heatmap(ds[var].to_pandas(), ax=ax, annot=True, fmt=".2f", annot_kws={"size": 6}, cmap="magma",
                    vmin=0, vmax=max(0.5, float(ds["flip"].max())), cbar=False)
        ax.set_title(title, fontsize=9)
    if steer:
        ax = axes[0][-1]
        ax.plot(ds.block.values, ds["steer_success"].mean("image").values, marker="o", label="probe direction")
        ax.plot(ds.block.values, ds["steer_control"].mean("image").values, marker="s", ls="--", label="random direction")
        ax.set_xlabel("block")
        ax.set_ylabel("colour becomes the target")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
        ax.set_title(f"colour steering (x{ds.attrs.get('coefficient', '?')} token norm)", fontsize=9)
    fig.tight_layout()
    return fig
