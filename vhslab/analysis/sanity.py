"""The pieces of the sanity checks that come with every attribution run (`vhslab.analysis.checks` runs
them on the trained maps beside model-free controls and the randomised model, and labels each).

- Deletion: removing (setting to the verifier's mean) the most attributed visual tokens should move
  the margin more than removing as many random ones; ratio of mean |margin change|, with a
  bootstrap interval over samples.
- Model randomisation (Adebayo et al. 2018): a verifier with re-initialised connector and LLM should
  give different maps; Spearman rank correlation per sample.
- Pointing: the share of attribution mass (|IG|) on the latent cells under the evaluator's boxes of
  the objects the prompt names, against the share those cells take of the grid (chance).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.stats import interval, row_draws


def _ratio_ci(top: np.ndarray, rnd: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    idx = row_draws(len(top), n_boot, seed)
    reps = top[idx].mean(1) / np.maximum(rnd[idx].mean(1), 1e-12)
    return float(top.mean() / max(rnd.mean(), 1e-12)), *interval(reps)


def by_fraction(curves: dict, name: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """The deletion curve of map `name` from `checks.perturbation`: per fraction, mean |margin change|
    removing its top tokens and random ones, and `ratio` (top / random) with its 95% interval."""
    out = {}
    for i, f in enumerate(curves["fractions"]):
        top, rnd = curves["deletion_top"][name][i], curves["deletion_random"][i]
        ratio, lo, hi = _ratio_ci(top, rnd, n_boot, seed)
        out[f"{f:g}"] = {"tokens": curves["tokens"][i], "drop_top": float(top.mean()), "drop_random": float(rnd.mean()),
                         "ratio": ratio, "ci": [lo, hi]}
    return out


def randomised_copy(verifier, seed: int = 0):
    """A deep copy whose connector and LLM weights are re-drawn from their initialisers."""
    rnd = copy.deepcopy(verifier)
    torch.manual_seed(seed)
    for layer in rnd.connector:
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    rnd.llm.apply(rnd.llm._init_weights)
    return rnd


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation per sample of two (sample, ...) maps."""
    from scipy.stats import spearmanr

    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return np.array([spearmanr(x, y).statistic if np.std(x) > 0 and np.std(y) > 0 else 0.0 for x, y in zip(a, b, strict=True)])


def box_cells(boxes, side: int, image_px: int) -> np.ndarray:
    """(side, side) bool: latent cells whose pixel square overlaps any box (x0, y0, x1, y1)."""
    cell = image_px / side
    out = np.zeros((side, side), bool)
    for x0, y0, x1, y1 in boxes:
        c0, c1 = int(x0 // cell), int(np.ceil(x1 / cell))
        r0, r1 = int(y0 // cell), int(np.ceil(y1 / cell))
        out[max(r0, 0):min(r1, side), max(c0, 0):min(c1, side)] = True
    return out


def object_cells(images: np.ndarray, specs, side: int, evaluator=None) -> list[np.ndarray | None]:
    """Per sample: the (side, side) cells under the evaluator's boxes of objects the prompt names, or None
    where no such object was found."""
    evaluator = evaluator or ShapesEvaluator()
    out = []
    for image, spec in zip(images, specs, strict=True):
        named = {item.cls for item in spec.include}
        boxes = [d.box for d in evaluator.detect(image) if d.cls in named]
        out.append(box_cells(boxes, side, images.shape[1]) if boxes else None)
    return out


def pointing(maps: np.ndarray, images: np.ndarray, specs, evaluator=None, cells=None) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: the share of |attribution| on the cells under the evaluator's boxes of objects the
    prompt names, and that area's share of the grid (chance). NaN where no such object was found.
    `cells` (from `object_cells`) saves the detection when several maps are scored."""
    n, side, _ = maps.shape
    cells = object_cells(images, specs, side, evaluator) if cells is None else cells
    share, chance = np.full(n, np.nan), np.full(n, np.nan)
    for i in range(n):
        if cells[i] is None:
            continue
        mass = np.abs(maps[i])
        share[i] = mass[cells[i]].sum() / max(mass.sum(), 1e-12)
        chance[i] = cells[i].mean()
    return share, chance
