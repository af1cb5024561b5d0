"""Figures of search results and their costs (plotting only; the numbers come from vhslab.search.table and
the cost models of vhslab.search.costs)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from vhslab.figures.style import colour_for, errorbars, figure_legend, figure_title, finish, new_figure

DASHED = ("oracle", "none")  # references, not searches
STAGE_ORDER = ("prompt_encode", "dit", "dit_block", "decode", "vision_encode", "llm_prefill", "call_overhead")


def plot_budget_curve(table: xr.Dataset, height: float = 3.2, x: str = "budget", suite: str | None = None):
    """One panel per cost model: GenEval-style overall score of each path against the budget (in plain
    generations, or `x="budget_ms"` in milliseconds of that model's card), with 95% intervals over meanings
    as bars; references (`oracle`, `none`) dashed; one legend for the figure. Returns the figure."""
    if x not in ("budget", "budget_ms"):
        raise ValueError(f"x is 'budget' or 'budget_ms', got {x!r}")
    models = list(table.cost_model.values)
    fig, axes = new_figure(1, len(models), width=height * 1.4, height=height, sharey=True)
    for ax, cm in zip(axes[0], models, strict=True):
        cell = table.sel(cost_model=cm)
        xs = cell["budget_ms"].values if x == "budget_ms" else cell.budget.values
        for j, m in enumerate(table.verifier.values):
            s = cell.sel(verifier=m)
            jitter = xs * 2 ** (0.03 * (j - table.sizes["verifier"] / 2))  # side by side on the log axis
            errorbars(ax, jitter, s["value"].values, s["lo"].values, s["hi"].values, color=colour_for(m), label=str(m),
                      ls="--" if m in DASHED else "-", lw=1.2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{b:g}" for b in xs])
        ax.minorticks_off()
        ax.set_xlabel("budget (plain generations)" if x == "budget" else "budget (ms per prompt)")
        ax.set_title(f"cost model: {cm}")
        ax.set_ylabel("GenEval-style overall score")
    n = table.sizes.get("row")
    figure_title(fig, "Best-of-N at a matched budget, by verifier path", suite or table.attrs.get("prompts", "geneval-shapes"), n)
    figure_legend(fig, axes, title="path")
    return finish(fig, legend_rows=1.6)


def plot_latency_breakdown(breakdown: dict[str, dict[str, dict[str, float]]], height: float = 2.8,
                           title: str = "per-candidate latency by stage and path"):
    """Stacked horizontal bars, a panel per cost model (e.g. the world on a CPU thread, SANA-Sprint 1.6B
    on its GPU): per path the milliseconds one candidate spends in each stage (`dit`, `decode`,
    `vision_encode`, `llm_prefill`, ...), stage colours fixed; the total at the bar's end. `breakdown` is
    {cost model label: {path: {stage: ms}}}. Returns the matplotlib figure."""
    labels = list(breakdown)
    most = max(len(p) for p in breakdown.values())
    fig, axes = new_figure(1, len(labels), width=height * 1.9, height=max(height, 0.45 * most + 1.2))
    for ax, label in zip(axes[0], labels, strict=True):
        paths = list(breakdown[label])
        stages = list(dict.fromkeys(s for p in paths for s in breakdown[label][p]))
        stages.sort(key=lambda s: STAGE_ORDER.index(s) if s in STAGE_ORDER else len(STAGE_ORDER))  # pipeline order
        left = np.zeros(len(paths))
        for stage in stages:
            ms = np.array([breakdown[label][p].get(stage, 0.0) for p in paths])
            ax.barh(range(len(paths)), ms, left=left, color=colour_for(stage), label=stage, edgecolor="white", lw=0.5)
            left += ms
        for i, total in enumerate(left):
            ax.annotate(f"{total:.1f} ms", (total, i), textcoords="offset points", xytext=(3, 0), va="center", fontsize=8)
        ax.set_yticks(range(len(paths)), paths)
        ax.invert_yaxis()
        ax.set_xlim(0, left.max() * 1.25)
        ax.set_xlabel("milliseconds per candidate")
        ax.set_ylabel("path")
        ax.set_title(label)
    figure_title(fig, title)
    figure_legend(fig, axes, title="stage")
    return finish(fig, legend_rows=1.6)
