"""Figures of geometry studies (plotting only; the numbers come from vhslab.analysis.geometry)."""

from __future__ import annotations

import itertools

import numpy as np
import seaborn as sns
import xarray as xr

from vhslab.figures.style import SEQUENTIAL, colour_for, errorbars, figure_legend, figure_title, finish, new_figure


def short_site(name: str, block: int) -> str:
    """A tick label that fits: block 7's site -> `b7` (block index >= 0), other sites by their name."""
    return f"b{block}" if block >= 0 else str(name)


def plot_geometry(ds: xr.Dataset, label: str = "verdict", kind: str = "pca", sites=None, height: float = 3.4,
                  suite: str | None = None):
    """The site x site linear CKA heatmap (short tick labels, a colour bar), the CKA of each block with the
    next one with its 95% interval beside a randomly initialised DiT's when the dataset has the control, then
    a 2-D embedding (`pca` or `umap`) per site coloured by `label` (one legend). Returns the figure."""
    if kind not in ds:
        raise ValueError(f"the geometry dataset has no {kind!r} embedding (it has {[k for k in ('pca', 'umap') if k in ds]})")
    if f"label_{label}" not in ds:
        raise ValueError(f"the geometry dataset has no label {label!r}")
    sites = list(ds.site.values if sites is None else sites)
    index = ds["site_block"].values if "site_block" in ds else [-1] * ds.sizes["site"]  # block index, -1: not a block
    blocks = [(str(s), int(k)) for s, k in zip(ds.site.values, index, strict=True) if k >= 0]
    curve = len(blocks) >= 2 and "cka_lower" in ds
    first = 1 + curve
    ratios = [1.8] + [1.2] * curve + [1] * len(sites)
    fig, axes = new_figure(1, len(sites) + first, width=height, height=height, gridspec_kw={"width_ratios": ratios})
    table = ds["cka"].to_pandas()
    block_of = dict(zip(map(str, ds.site.values), map(int, index), strict=True))
    names = [short_site(s, block_of.get(str(s), -1)) for s in table.index]
    sns.heatmap(table, ax=axes[0][0], vmin=0, vmax=1, cmap=SEQUENTIAL, square=True,
                cbar_kws={"shrink": 0.7, "label": "linear CKA"}, xticklabels=names, yticklabels=names)
    axes[0][0].tick_params(labelsize=6)
    axes[0][0].set_title("linear CKA between sites")
    axes[0][0].set_xlabel("site")
    axes[0][0].set_ylabel("site")
    if curve:
        _next_block_curve(axes[0][1], ds, blocks)
    hue = ds[f"label_{label}"].values.astype(str)
    levels = sorted(set(hue))
    for ax, site in zip(axes[0][first:], sites, strict=True):
        xy = ds[kind].sel(site=site).values
        for level in levels:
            keep = hue == level
            ax.scatter(xy[keep, 0], xy[keep, 1], s=5, lw=0, alpha=0.7, color=colour_for(f"{label}={level}"), label=f"{label} {level}")
        ax.set_title(f"{site} ({kind.upper()})")
        ax.set_xlabel(f"{kind.upper()} 1")
        ax.set_ylabel(f"{kind.upper()} 2")
        ax.set_xticks([])
        ax.set_yticks([])
    figure_title(fig, "representation geometry across sites", suite, ds.sizes.get("sample"), "samples")
    figure_legend(fig, axes[0][1:], ncol=6)
    return finish(fig, legend_rows=1)


def _next_block_curve(ax, ds: xr.Dataset, blocks: list[tuple[str, int]]) -> None:
    """CKA(block k, block k+1) with its interval, for the trained DiT and (if present) the random one."""
    x = np.arange(len(blocks) - 1)
    runs = [("cka", "trained")] + ([("cka_random_dit", "random DiT")] if "cka_random_dit" in ds else [])
    for var, name in runs:
        value, lo, hi = (np.array([float(ds[v].sel(site=a, site_b=b)) for (a, _), (b, _) in itertools.pairwise(blocks)])
                         for v in (var, f"{var}_lower", f"{var}_upper"))
        errorbars(ax, x, value, lo, hi, color=colour_for(name), label=name, lw=1, ms=3)
    ax.set_xticks(x, [f"{a}-{b}" for (_, a), (_, b) in itertools.pairwise(blocks)], fontsize=6, rotation=60)
    ax.set_xlabel("block pair (k - k+1)")
    ax.set_ylabel("linear CKA")
    ax.set_ylim(0, 1.05)
    ax.set_title("CKA of block k with k+1")
