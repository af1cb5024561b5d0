"""Figures of verifier sweeps and evaluations (plotting only; the numbers come from vhslab.verifier.sweep and
vhslab.verifier.report)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from vhslab.figures.style import band, colour_for, errorbars, figure_legend, figure_title, finish, new_figure

METRICS = ("auroc", "within_prompt_auroc", "gain")
LABELS = {"auroc": "AUROC (pooled)", "within_prompt_auroc": "within-prompt AUROC", "gain": "Bo4 gain over Bo1",
          "bo4": "Bo4 (GenEval-style overall)", "balanced_accuracy": "balanced accuracy", "ece": "ECE",
          "bo1": "Bo1 (GenEval-style overall)"}
CHANCE = {"auroc": 0.5, "within_prompt_auroc": 0.5, "gain": 0.0, "balanced_accuracy": 0.5}


def plot_verifier_depth(sweep: xr.Dataset, metrics=METRICS, height: float = 3.4, title: str = "verifier vs best probe by site"):
    """Per metric a panel: verifier and best probe against block depth, with their 95% intervals (over
    meanings) as bands; the sites without a depth (`ae_latent`, `vision`, `text`) are points with interval
    bars to the right of the blocks, each on its own labelled tick. The dotted line is chance. One legend,
    the test suite's n in the title. Returns the matplotlib figure."""
    missing = [m for m in metrics if m not in sweep.metric.values]
    if missing:
        raise ValueError(f"metrics {missing} are not in the sweep (it has {list(sweep.metric.values)})")
    fig, axes = new_figure(1, len(metrics), width=height * 1.45, height=height)
    depth = sweep["depth"].values
    blocks = np.isfinite(depth)
    order = np.argsort(depth[blocks])
    others = [str(s) for s in sweep.site.values[~blocks]]
    x_other = 1.0 + 0.14 * (1 + np.arange(len(others)))
    models = [str(m) for m in sweep.model.values]
    for ax, metric in zip(axes[0], metrics, strict=True):
        for j, model in enumerate(models):
            sel = sweep.sel(model=model, metric=metric)
            v, lo, hi = (sel[k].values for k in ("value", "lo", "hi"))
            band(ax, depth[blocks][order], v[blocks][order], lo[blocks][order], hi[blocks][order], colour_for(model), model)
            if others:
                errorbars(ax, x_other + 0.03 * (j - 0.5), v[~blocks], lo[~blocks], hi[~blocks], color=colour_for(model), ls="none")
        if metric in CHANCE:
            ax.axhline(CHANCE[metric], color="k", ls=":", lw=0.8, label="chance (AUROC 0.5) / no gain (0)")
        ticks = [0, 0.25, 0.5, 0.75, 1.0]
        ax.set_xticks(ticks + list(x_other), [f"{t:g}" for t in ticks] + others, rotation=0)
        for label in ax.get_xticklabels()[len(ticks):]:
            label.set_rotation(45)
            label.set_ha("right")
        if others:
            ax.axvline(1.07, color="0.7", lw=0.6)
        ax.set_xlabel("block depth (block / num_blocks)  |  other sites")
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.set_title(LABELS.get(metric, metric))
    n = sweep.attrs.get("n_prompt_rows")
    figure_title(fig, title, sweep.attrs.get("suite", "geneval-shapes (verifier-test)"), n)
    figure_legend(fig, axes)
    return finish(fig, legend_rows=1)


def plot_side_by_side(results: dict[str, dict], metrics=("auroc", "within_prompt_auroc", "gain"), suite: str | None = None,
                      n=None, title: str = "verifier, probe and teacher on the same test candidates", height: float = 3.0):
    """One panel per metric: each scorer (e.g. `verifier`, `probe`, `teacher`, `text`) as a point with its
    95% interval; `results[name][metric]` is `{"value", "ci": [lo, hi]}` (as `verifier eval --json`
    reports). A '*' over a name marks a paired difference to the first scorer that excludes 0 when
    `results[name]["minus_first"][metric]` carries one. Returns the matplotlib figure."""
    names = list(results)
    fig, axes = new_figure(1, len(metrics), width=height * 1.15, height=height)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, name in enumerate(names):
            cell = results[name].get(metric)
            if not cell:
                continue
            lo, hi = cell["ci"]
            errorbars(ax, [i], [cell["value"]], [lo], [hi], color=colour_for(name), label=name, ls="none", ms=6)
            diff = results[name].get("minus_first", {}).get(metric)
            if diff and i:
                mark = "*" if diff["ci"][0] > 0 or diff["ci"][1] < 0 else "n.s."
                ax.annotate(mark, (i, hi), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
        if metric in CHANCE:
            ax.axhline(CHANCE[metric], color="k", ls=":", lw=0.8)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.margins(y=0.18)
        ax.set_xlabel("scorer")
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.set_title(LABELS.get(metric, metric))
    figure_title(fig, title + f" (*: paired interval vs {names[0]} excludes 0)", suite, n)
    return finish(fig)


def plot_tag_confusion(counts: xr.DataArray, suite: str | None = None, title: str = "verifier decision vs evaluator verdict, per tag",
                       height: float = 2.2):
    """Per GenEval tag a 2 x 2 confusion matrix: the evaluator's verdict (rows) against the verifier's
    decision (columns, its score above the threshold), coloured by the share of the tag's candidates with
    the count written in each cell; one colour bar. `counts` has dims (tag, evaluator, verifier), values 0/1
    on the last two. Returns the matplotlib figure."""
    tags = [str(t) for t in counts.tag.values]
    cols = min(len(tags), 3)
    rows = int(np.ceil(len(tags) / cols))
    fig, axes = new_figure(rows, cols, width=height * 1.5, height=height * 1.1)
    image = None
    for ax, tag in zip(axes.ravel(), tags, strict=False):
        c = counts.sel(tag=tag).transpose("evaluator", "verifier").values.astype(float)
        share = c / max(c.sum(), 1)
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (r, k), v in np.ndenumerate(c):
            ax.text(k, r, f"{int(v)}\n{share[r, k]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if share[r, k] > 0.5 else "black")
        acc = (c[0, 0] + c[1, 1]) / max(c.sum(), 1)
        ax.set_title(f"{tag}\nn = {int(c.sum())}, agree {acc:.0%}", fontsize=9)
        ax.set_xticks([0, 1], ["no", "yes"])
        ax.set_yticks([0, 1], ["wrong", "correct"])
        ax.set_xlabel("verifier says")
        ax.set_ylabel("evaluator verdict")
        ax.grid(False)
    for ax in axes.ravel()[len(tags):]:
        ax.axis("off")
    figure_title(fig, title, suite, int(counts.sum()), "candidates")
    finish(fig)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.7, label="share of the tag's candidates")
    return fig
