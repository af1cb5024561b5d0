"""Figures of attribution studies (plotting only; the numbers come from vhslab.analysis)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from vhslab.figures.style import DIVERGING, colour_for, figure_title, finish, new_figure


def spread_samples(ds: xr.Dataset, k: int) -> list[int]:
    """k sample indices spread over tags and verdicts (round robin over the (tag, verdict) groups, in
    their order in the dataset), so the figure does not show k examples of one prompt kind."""
    keys = [tuple(str(ds[c].values[i]) for c in ("tag", "verdict") if c in ds) for i in range(ds.sizes["sample"])]
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    picked, queues = [], [list(v) for v in groups.values()]
    while len(picked) < min(k, len(keys)):
        for q in queues:
            if q and len(picked) < k:
                picked.append(q.pop(0))
    return picked


def plot_attribution(ds: xr.Dataset, k: int = 6, height: float = 2.2, samples=None, suite: str | None = None):
    """For k samples (spread over tags and verdicts, or `samples`): the image with the IG map over it,
    the patch-ablation map, the model-free token-norm map (the control the checks hold IG against, if
    present), each with its colour bar, and the prompt words' IG as bars. Red: towards "yes" (the
    verifier's margin rises), blue: towards "no". Returns the matplotlib figure."""
    samples = list(samples) if samples is not None else spread_samples(ds, k)
    control = "control_token_norm" in ds
    maps = 2 + control
    cols = maps + ("prompt_ig" in ds)
    fig, axes = new_figure(len(samples), cols, width=height * 1.15, height=height,
                           gridspec_kw={"width_ratios": ([1] * maps + [2.2])[:cols]})
    for row, i in zip(axes, samples, strict=True):
        s = ds.isel(sample=i)
        _maps(fig, row, s, ds, control)
        if cols > maps:
            keep = s["is_prompt_token"].values
            words, vals = s["token"].values[keep], s["prompt_ig"].values[keep]
            bars = row[maps]
            bars.bar(range(len(vals)), vals, color=[colour_for("vision") if v >= 0 else colour_for("verifier") for v in vals])
            bars.axhline(0, color="k", lw=0.5)
            bars.set_xticks(range(len(vals)), list(words), rotation=60, fontsize=7)
            bars.set_ylabel("IG (margin units)", fontsize=7)
            bars.set_xlabel("prompt token", fontsize=7)
            tag = f"[{s['tag'].values}] " if "tag" in ds else ""
            bars.set_title(tag + str(s["prompt"].values)[:60], fontsize=7)
    figure_title(fig, "where the verifier looks: integrated gradients, patch ablation and a model-free control", suite,
                 len(samples), "examples")
    return finish(fig)


def _maps(fig, row, s, ds: xr.Dataset, control: bool) -> None:
    ig, abl = s["visual_ig"].values, s["visual_ablation"].values
    verdict = f", verdict {int(s['verdict'])}" if "verdict" in ds else ""
    lim = max(np.abs(ig).max(), 1e-12)
    ax = row[0]
    if "image" in ds:
        img = s["image"].values
        ax.imshow(img)
        im = ax.imshow(ig, cmap=DIVERGING, vmin=-lim, vmax=lim, alpha=0.45, extent=(0, img.shape[1], img.shape[0], 0),
                       interpolation="nearest")
    else:
        im = ax.imshow(ig, cmap=DIVERGING, vmin=-lim, vmax=lim)
    fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
    ax.set_title(f"IG, margin {float(s['margin']):+.2f}{verdict}", fontsize=7)
    lim = max(np.abs(abl).max(), 1e-12)
    im = row[1].imshow(abl, cmap=DIVERGING, vmin=-lim, vmax=lim)
    fig.colorbar(im, ax=row[1], shrink=0.8).ax.tick_params(labelsize=6)
    row[1].set_title("patch ablation", fontsize=7)
    if control:
        im = row[2].imshow(s["control_token_norm"].values, cmap="Greys")
        fig.colorbar(im, ax=row[2], shrink=0.8).ax.tick_params(labelsize=6)
        row[2].set_title("token norm (model-free control)", fontsize=7)
    for ax in row[:2 + control]:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
