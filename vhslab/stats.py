"""The package's one statistics module: bootstrap draws, percentile intervals and paired differences.

Every interval vhslab reports comes from here. Two draw schemes, both seeded with
`np.random.default_rng(seed)` (the draws are part of every documented number: do not reorder them):

- `cluster_draws`: whole clusters (prompt meanings, prompts) resampled with replacement, one
  `rng.integers` call per replicate; a replicate is a multiplicity per cluster, so a row weighs its
  cluster's multiplicity (`row_weights`) and every replicate is a weighted statistic.
- `meaning_draws`: the same, stratified: distinct meanings resampled within each tag (each tag keeps
  its number of meanings; `rng.multinomial` per tag, tags in sorted order), for GenEval's mean of tag means.
- `row_draws`: plain rows resampled (samples that are independent of each other), for `mean_ci`.

A paired difference (`paired_interval`) takes the replicates of two statistics computed on the very
same draws, so what the two share cancels.
"""

from __future__ import annotations

import numpy as np


def interval(reps, level: float = 0.95) -> list[float]:
    """The percentile interval of bootstrap replicates (non-finite ones dropped; NaNs when none is left):
    the one spelling every interval of the package uses."""
    reps = np.asarray(reps, float)
    reps = reps[np.isfinite(reps)]
    if not reps.size:
        return [float("nan"), float("nan")]
    return [float(np.percentile(reps, (1 - level) / 2 * 100)), float(np.percentile(reps, (1 + level) / 2 * 100))]


def paired_interval(reps_a, reps_b, level: float = 0.95) -> list[float]:
    """The interval of A - B from replicates of A and of B drawn on the same draws (paired)."""
    return interval(np.asarray(reps_a, float) - np.asarray(reps_b, float), level)


def cluster_draws(clusters, n_boot: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n_boot x clusters) multiplicities of a bootstrap over whole clusters, and each row's cluster
    (index into the sorted distinct clusters)."""
    rng = np.random.default_rng(seed)
    uniq, g = np.unique(clusters, return_inverse=True)
    mult = np.stack([np.bincount(rng.integers(0, len(uniq), len(uniq)), minlength=len(uniq)) for _ in range(n_boot)])
    return mult, g


def row_weights(draws: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(n_boot, rows) float weights of `cluster_draws`: each row weighs its cluster's multiplicity."""
    mult, g = draws
    return mult[:, g].astype(float)


def meaning_draws(tags, meanings, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot, rows) bootstrap weights that resample distinct prompt meanings within each tag (each
    tag keeps its number of meanings; a row weighs its meaning's multiplicity): rows of one meaning
    share their fate, so intervals count meanings, not rows."""
    tags, meanings = np.asarray(tags), np.asarray(meanings)
    rng = np.random.default_rng(seed)
    weights = np.zeros((n_boot, len(tags)))
    for tag in np.unique(tags):
        rows = np.flatnonzero(tags == tag)
        uniq, inv = np.unique(meanings[rows], return_inverse=True)
        weights[:, rows] = rng.multinomial(len(uniq), np.full(len(uniq), 1 / len(uniq)), size=n_boot)[:, inv]
    return weights


def row_draws(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n) row indices of a plain bootstrap (rows resampled with replacement)."""
    return np.random.default_rng(seed).integers(0, n, (n_boot, n))


def mean_ci(x, n_boot: int = 1000, seed: int = 0) -> list[float]:
    """95% bootstrap interval of the mean of `x` (rows resampled)."""
    x = np.asarray(x, float)
    return interval(x[row_draws(len(x), n_boot, seed)].mean(1))


__all__ = ["cluster_draws", "interval", "mean_ci", "meaning_draws", "paired_interval", "row_draws", "row_weights"]
