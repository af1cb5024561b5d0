"""The one figure style: the theme (seaborn, set here and nowhere else), a colour-blind-safe palette with a
fixed colour per verifier, path, site, target or stage name, caption-ready titles that state the suite and n,
interval and significance helpers, and `save_figure` (PNG and PDF side by side).

Every function in `vhslab.figures` starts with `new_figure` (or `apply_theme`), so figures look alike
whatever made them; `colour_for("vision")` is the same colour in the budget curve, the verifier sweep and
the latency breakdown."""

from __future__ import annotations

import zlib
from pathlib import Path

import matplotlib
import numpy as np
import seaborn as sns

PALETTE = tuple(sns.color_palette("colorblind", 10))  # Okabe-Ito-like, safe for the common colour-vision deficiencies
BLUE, ORANGE, GREEN, RED, PURPLE, BROWN, PINK, GREY, YELLOW, CYAN = PALETTE
NAMED = {  # one colour per name, in every figure
    "verifier": BLUE, "vhs": BLUE, "probe": ORANGE, "teacher": GREEN, "vision": RED, "ae": PURPLE,
    "ae_latent": PURPLE, "text": BROWN, "text-only": BROWN, "none": (0.2, 0.2, 0.2), "oracle": GREY, "noise": CYAN,
    "random": GREY, "control": GREY, "baseline": GREY, "random DiT": GREY, "trained": BLUE,
    "verdict=0": RED, "verdict=1": GREEN, "verdict": BLUE, "found_color.0": ORANGE, "found_color.1": CYAN, "found_class.0": GREEN,
    "found_class.1": PINK, "found_count.0": RED, "found_count.1": PURPLE, "recon.latent": BROWN,
    "dit": BLUE, "dit_block": BLUE, "decode": PURPLE, "vision_encode": RED, "llm_prefill": ORANGE,
    "prompt_encode": BROWN, "call_overhead": GREY,
    "color_attr": ORANGE, "colors": RED, "counting": GREEN, "position": PURPLE, "single_object": BLUE,
    "two_object": CYAN,
    "early pruning": PURPLE, "Best-of-N": GREEN, "student + VHS": BLUE,  # the searches of the pruning figure
}
READABLE = tuple(c for c in PALETTE if c != YELLOW)  # yellow is hard to see on white: never picked for a new name
SEQUENTIAL = "viridis"  # colour carries a value: 0..1 scores, rates
DIVERGING = "RdBu_r"  # colour carries a signed value: red towards "yes", blue towards "no"
_THEME = {"context": "paper", "style": "whitegrid", "palette": list(PALETTE), "font_scale": 1.1,
          "rc": {"savefig.dpi": 200, "figure.dpi": 100, "axes.titlesize": 10, "axes.labelsize": 9,
                 "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8, "figure.titlesize": 11,
                 "legend.frameon": False, "pdf.fonttype": 42}}


def apply_theme() -> None:
    """The project's theme (seaborn `paper` context, white grid, the colour-blind palette); drawn off
    screen unless a notebook or an interactive session is showing the figures."""
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps") and not interactive():
        matplotlib.use("Agg")
    sns.set_theme(**_THEME)


def interactive() -> bool:
    """True in an interactive interpreter or a notebook kernel (figures are then shown, not only saved)."""
    import sys

    return hasattr(sys, "ps1") or "ipykernel" in sys.modules


def new_figure(nrows: int = 1, ncols: int = 1, width: float = 3.4, height: float = 3.0, **kwargs):
    """`plt.subplots` under the theme: (figure, 2-D array of axes); width and height are per panel (inches)."""
    apply_theme()
    import matplotlib.pyplot as plt

    kwargs.setdefault("squeeze", False)
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kwargs)


def colour_for(name) -> tuple:
    """The fixed colour of a verifier, path, site, target, stage or tag name: a named one when the project
    knows it (`NAMED`), else a stable pick from the palette (the same name, the same colour, in every run)."""
    key = str(name)
    if key in NAMED:
        return NAMED[key]
    return READABLE[zlib.crc32(key.encode()) % len(READABLE)]


def caption(title: str, suite: str | None = None, n=None, unit: str = "prompts") -> str:
    """A caption-ready title: what the figure shows, then the suite and n it was measured on."""
    bits = [f"suite: {suite}" if suite else "", f"n = {n} {unit}" if n is not None else ""]
    tail = ", ".join(b for b in bits if b)
    return f"{title}\n({tail})" if tail else title


def figure_title(fig, title: str, suite: str | None = None, n=None, unit: str = "prompts") -> None:
    """Put the caption (with the suite and n) on top of the figure."""
    fig.suptitle(caption(title, suite, n, unit))


def errorbars(ax, x, value, lo, hi, **kwargs):
    """Points with asymmetric interval bars from [lo, hi] (NaN intervals draw no bar)."""
    value, lo, hi = (np.asarray(a, float) for a in (value, lo, hi))
    err = np.nan_to_num(np.stack([np.maximum(value - lo, 0), np.maximum(hi - value, 0)]))
    kwargs.setdefault("capsize", 2.5)
    kwargs.setdefault("marker", "o")
    kwargs.setdefault("ms", 4)
    return ax.errorbar(x, value, yerr=err, **kwargs)


def band(ax, x, value, lo, hi, colour, label: str | None = None, **kwargs):
    """A line with its interval as a translucent band."""
    line = ax.plot(x, value, color=colour, label=label, marker=kwargs.pop("marker", "o"), ms=3, **kwargs)
    ax.fill_between(x, lo, hi, color=colour, alpha=0.18, lw=0)
    return line


def significance(lo, hi, null: float = 0.0) -> str:
    """The mark of a paired interval: '*' when [lo, hi] excludes the null value, '' when it does not."""
    lo, hi = float(lo), float(hi)
    return "*" if np.isfinite(lo) and np.isfinite(hi) and (lo > null or hi < null) else ""


def mark_significance(ax, x, y, lo, hi, null: float = 0.0, **kwargs) -> None:
    """Write '*' above a point whose paired interval excludes `null`."""
    mark = significance(lo, hi, null)
    if mark:
        ax.annotate(mark, (x, y), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=10, **kwargs)


def figure_legend(fig, axes=None, title: str | None = None, ncol: int | None = None) -> None:
    """One legend for the whole figure, below the panels, from the handles of all its axes (each label once)."""
    seen = {}
    for ax in np.ravel(axes if axes is not None else fig.axes):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if not label.startswith("_"):
                seen.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=ncol or min(len(seen), 6),
                   title=title, bbox_to_anchor=(0.5, -0.01))


def finish(fig, legend_rows: float = 0):
    """Lay the figure out, leaving room for a figure legend below (its number of rows)."""
    fig.tight_layout(rect=(0, 0.06 * legend_rows, 1, 1))
    return fig


def save_figure(fig, path) -> list[Path]:
    """Write the figure as PNG and PDF next to each other (`path`'s suffix is replaced); returns both paths.
    Takes a matplotlib figure or anything with a `.figure` (a seaborn grid)."""
    fig = getattr(fig, "figure", fig)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for suffix in (".png", ".pdf"):
        target = path.with_suffix(suffix)
        fig.savefig(target, bbox_inches="tight")
        out.append(target)
    return out


__all__ = ["DIVERGING", "NAMED", "PALETTE", "READABLE", "SEQUENTIAL", "apply_theme", "band", "caption", "colour_for",
           "errorbars", "figure_legend", "figure_title", "finish", "interactive", "mark_significance",
           "new_figure", "save_figure", "significance"]
