"""The pruning budget curve (plotting only; the numbers come from vhslab.search.prune_table)."""

from __future__ import annotations

import matplotlib
import numpy as np
import seaborn as sns
import xarray as xr

LABELS = {"prune": "early pruning (teacher)", "bon": "Best-of-N (teacher, verifier at the end)",
          "student": "one-step student + VHS"}


def plot_pruning(ds: xr.Dataset, height: float = 3.4):
    """GenEval-style overall score of each search against the budget (plain teacher generations), with
    95% intervals over meanings as bars; one legend for the figure. Returns the figure."""
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(height * 1.5, height))
    searches = [str(m) for m in ds["search"].values]
    colors = dict(zip(searches, sns.color_palette(n_colors=len(searches)), strict=True))
    xs = np.asarray(ds.budget.values, float)
    for i, m in enumerate(searches):
        v, lo, hi = (ds[name].sel(search=m).values for name in ("value", "lo", "hi"))
        shift = xs * 2 ** (0.04 * (i - (len(searches) - 1) / 2))  # side by side on the log axis
        ax.errorbar(shift, v, yerr=[v - lo, hi - v], marker="o", capsize=2, color=colors[m], label=LABELS.get(m, m))
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [f"{b:g}" for b in xs])
    ax.set_xlabel("budget (plain teacher generations)")
    ax.set_ylabel("GenEval-style overall")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(searches), frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig
