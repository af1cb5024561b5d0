"""Image grids: one row per group (e.g. per GenEval tag), titled."""

from __future__ import annotations

import matplotlib
import numpy as np


def image_grid(rows: dict[str, list[np.ndarray]], captions: dict[str, list[str]] | None = None,
               marks: dict[str, list[bool]] | None = None, cell: float = 1.4):
    """A figure with one row of images per key; optional captions and a green/red frame per image."""
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps"):  # as every figure here: drawn off screen
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = len(rows)
    n_cols = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell * n_cols, cell * n_rows * 1.15), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(images):
                ax.axis("off")
                continue
            ax.imshow(images[c], interpolation="nearest")
            if captions:
                ax.set_title(captions[name][c], fontsize=5)
            if marks:
                for spine in ax.spines.values():
                    spine.set_edgecolor("tab:green" if marks[name][c] else "tab:red")
                    spine.set_linewidth(2)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    return fig
