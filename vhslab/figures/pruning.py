"""The pruning budget curve (plotting only; the numbers come from vhslab.search.prune_table)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from vhslab.figures.style import (
    colour_for,
    errorbars,
    figure_legend,
    figure_title,
    finish,
    mark_significance,
    new_figure,
)

NAMES = {"prune": "early pruning", "bon": "Best-of-N", "student": "student + VHS"}  # the colour key of each search
LABELS = {"prune": "early pruning (teacher)", "bon": "Best-of-N (teacher, verifier at the end)",
          "student": "one-step student + VHS"}


def plot_pruning(ds: xr.Dataset, height: float = 3.4, suite: str | None = None):
    """GenEval-style overall score of each search against the budget (plain teacher generations), with
    95% intervals over meanings as bars, each search in its fixed colour; '*' above early pruning where its
    paired interval against Best-of-N (`diff`, comparison `prune-bon`) excludes 0. One legend for the figure.
    Returns the figure."""
    fig, axes = new_figure(1, 1, width=height * 1.5, height=height)
    ax = axes[0, 0]
    searches = [str(m) for m in ds["search"].values]
    xs = np.asarray(ds.budget.values, float)
    for i, m in enumerate(searches):
        v, lo, hi = (ds[name].sel(search=m).values for name in ("value", "lo", "hi"))
        shift = xs * 2 ** (0.04 * (i - (len(searches) - 1) / 2))  # side by side on the log axis
        errorbars(ax, shift, v, lo, hi, color=colour_for(NAMES.get(m, m)), label=LABELS.get(m, m), lw=1.2)
        if m == "prune" and "diff" in ds and "prune-bon" in ds["comparison"].values:
            d = ds.sel(comparison="prune-bon")
            for x, y, top, a, b in zip(shift, v, hi, d["diff_lo"].values, d["diff_hi"].values, strict=True):
                mark_significance(ax, x, np.nanmax([y, top]), a, b)
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [f"{b:g}" for b in xs])
    ax.minorticks_off()
    ax.set_xlabel("budget (plain teacher generations per prompt)")
    ax.set_ylabel("GenEval-style overall score")
    a = ds.attrs
    detail = f", prune at step {a['step']} keeping {a['k']}" if "step" in a and "k" in a else ""
    unit = f"prompts, {a['n_meanings']} meanings" if "n_meanings" in a else "prompts"
    figure_title(fig, f"early pruning vs Best-of-N vs the one-step student\n(scorer: {a.get('scorer', '?')}{detail};"
                      " bars: 95% interval; * prune - BoN excludes 0)",
                 suite or a.get("prompts", "geneval-shapes"), a.get("n_prompt_rows", ds.sizes.get("row")), unit)
    figure_legend(fig, axes, ncol=1)
    return finish(fig, legend_rows=2.2)
