"""Image grids: one row per group (e.g. per GenEval tag), titled."""

from __future__ import annotations

import numpy as np

from vhslab.figures.style import colour_for, figure_title, finish, new_figure


def image_grid(rows: dict[str, list[np.ndarray]], captions: dict[str, list[str]] | None = None,
               marks: dict[str, list[bool]] | None = None, cell: float = 1.4, title: str | None = None,
               suite: str | None = None):
    """A figure with one row of images per key, its name on the left; optional captions and a frame per
    image (green: the evaluator says correct, red: wrong; the title says so). Returns the figure."""
    n_rows = len(rows)
    n_cols = max(len(v) for v in rows.values())
    fig, axes = new_figure(n_rows, n_cols, width=cell, height=cell * 1.15)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if c >= len(images):
                ax.axis("off")
                continue
            ax.imshow(images[c], interpolation="nearest")
            if captions:
                ax.set_title(captions[name][c], fontsize=5)
            for spine in ax.spines.values():
                spine.set_visible(bool(marks))
                if marks:
                    spine.set_edgecolor(colour_for("teacher") if marks[name][c] else colour_for("vision"))
                    spine.set_linewidth(2.5)
        axes[r, 0].set_ylabel(name, fontsize=8)
    if title or marks:
        note = " (frame: green = evaluator says correct, red = wrong)" if marks else ""
        figure_title(fig, (title or "samples") + note, suite, sum(len(v) for v in rows.values()), "images")
    return finish(fig)
