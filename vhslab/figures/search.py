"""Figures of search results (plotting only; the numbers come from vhslab.search.table)."""

from __future__ import annotations

import matplotlib
import seaborn as sns
import xarray as xr


def plot_budget_curve(table: xr.Dataset, height: float = 3.4, x: str = "budget"):
    """One panel per cost model: GenEval-style overall score of each method against the budget (in
    plain generations, or `x="budget_ms"`), with 95% intervals over meanings as bars. Returns the figure."""
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if x not in ("budget", "budget_ms"):
        raise ValueError(f"x is 'budget' or 'budget_ms', got {x!r}")
    models = list(table.cost_model.values)
    fig, axes = plt.subplots(1, len(models), figsize=(height * 1.4 * len(models), height), squeeze=False, sharey=True)
    colors = dict(zip(table.verifier.values, sns.color_palette(n_colors=table.sizes["verifier"]), strict=True))
    for ax, cm in zip(axes[0], models, strict=True):
        cell = table.sel(cost_model=cm)
        xs = cell["budget_ms"].values if x == "budget_ms" else cell.budget.values
        for m in table.verifier.values:
            s = cell.sel(verifier=m)
            v = s["value"].values
            ax.errorbar(xs, v, yerr=[v - s["lo"].values, s["hi"].values - v], marker="o", capsize=2,
                        color=colors[m], label=str(m), ls="--" if m == "oracle" else "-")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{b:g}" for b in xs])
        ax.set_xlabel("budget (plain generations)" if x == "budget" else "budget (ms)")
        ax.set_title(f"cost model: {cm}")
    axes[0][0].set_ylabel("GenEval-style overall")
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
