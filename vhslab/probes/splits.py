"""Cross-validation folds grouped by prompt meaning: no meaning is ever in both the train and test part.

Two prompts that mean the same ("a red circle and a blue square" / "a blue square and a red
circle", mirrored relations) share a group (`PromptSpec.meaning`, the store's `meaning` coord),
so a probe is never tested on a rewording of a prompt it was trained on.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from vhslab.probes.data import ProbeError


def meaning_folds(
    meanings: np.ndarray, y: np.ndarray | None = None, k: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train, test) index pairs split by meaning; stratified by `y` when given (classification)."""
    meanings = np.asarray(meanings).astype(str)
    n_groups = len(np.unique(meanings))
    if k < 2:
        raise ProbeError(f"k-fold needs k >= 2, got {k}")
    if n_groups < k:
        raise ProbeError(f"only {n_groups} distinct prompt meanings; cannot make {k} meaning-disjoint folds")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members"
        if y is not None:
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            folds = list(splitter.split(np.zeros(len(meanings)), y, meanings))
        else:
            folds = list(GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(meanings, groups=meanings))
    for train, test in folds:  # cheap guard: the whole point of the split
        if np.intersect1d(meanings[train], meanings[test]).size:
            raise AssertionError("a prompt meaning leaked across the split")
    return folds


def fold_of(n: int, folds: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Fold index of each row (-1: in no test part)."""
    out = np.full(n, -1, np.int16)
    for f, (_, test) in enumerate(folds):
        out[test] = f
    return out


def check_disjoint(train_meanings, test_meanings, what: str = "the train and test stores") -> None:
    """Refuse (ProbeError) when two stores share a prompt meaning: a number measured on the test store would
    rest on meanings the probe was trained on."""
    strings = lambda values: {str(v) for v in np.asarray(values).ravel()}  # noqa: E731  (zarr's StringDType too)
    shared = sorted(strings(train_meanings) & strings(test_meanings))
    if shared:
        raise ProbeError(f"{what} share {len(shared)} prompt meaning(s) (e.g. {shared[0]!r}); train on the `train` "
                         "suite and test on an evaluation suite (e.g. geneval-shapes), whose meanings are disjoint")
