"""Cross-validation folds grouped by prompt: no prompt is ever in both the train and test part."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from vhslab.probes.data import ProbeError


def prompt_folds(
    prompts: np.ndarray, y: np.ndarray | None = None, k: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train, test) index pairs split by prompt; stratified by `y` when given (classification)."""
    prompts = np.asarray(prompts).astype(str)
    n_groups = len(np.unique(prompts))
    if k < 2:
        raise ProbeError(f"k-fold needs k >= 2, got {k}")
    if n_groups < k:
        raise ProbeError(f"only {n_groups} distinct prompts; cannot make {k} prompt-disjoint folds")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members"
        if y is not None:
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            folds = list(splitter.split(np.zeros(len(prompts)), y, prompts))
        else:
            folds = list(GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(prompts, groups=prompts))
    for train, test in folds:  # cheap guard: the whole point of the split
        if np.intersect1d(prompts[train], prompts[test]).size:
            raise AssertionError("a prompt leaked across the split")
    return folds


def fold_of(n: int, folds: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Fold index of each row (-1: in no test part)."""
    out = np.full(n, -1, np.int16)
    for f, (_, test) in enumerate(folds):
        out[test] = f
    return out
