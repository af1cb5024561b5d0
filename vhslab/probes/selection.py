"""Choices that never see the meanings they are reported on.

Every choice a result rests on (recipe, training seed, site, probe family and regularisation, teacher
weight, step) is made by a rule fixed here, before any run, and recorded beside the result as
`selected_by` with the candidates it considered. Two rules:

- `by_training_validation`: choose on the training store's validation split. Its meanings come from the
  `train` suite, which shares no meaning with any evaluation suite, so a number reported on an
  evaluation store never rests on a choice that saw its meanings. It yields one model (the shipped one).
- `crossfit`: where a choice is made on evaluation-like data (a dev store holding the test's prompts
  with other seeds), the evaluation meanings are dealt into k folds (within each tag, seeded); the test
  rows of fold f are reported with the candidate chosen on the dev rows of the *other* folds' meanings.
  The combined number is the protocol's: each of its rows was chosen for without its meaning. Choosing
  on every dev meaning instead (`naive_choice`) is kept only to show how much that would flatter.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vhslab.probes.data import ProbeError
from vhslab.probes.metrics import auroc_within

SELECTION_SEED = 20261  # fixed before any run: the fold deal of evaluation meanings
Rows = dict  # {"verdict", "group", "tag", "meaning"}: one entry per candidate row


def within(rows: Rows, score: np.ndarray) -> float:
    """Within-prompt AUROC: the default selection metric (what Best-of-N needs)."""
    return auroc_within(np.asarray(rows["verdict"]).astype(int), np.asarray(score, float), np.asarray(rows["group"]))


def deal_meanings(tags, meanings, k: int = 2, seed: int = SELECTION_SEED) -> dict[str, int]:
    """Meaning -> fold: each tag's distinct meanings shuffled (seeded) and dealt round-robin, so every fold
    holds about 1/k of every tag."""
    if k < 2:
        raise ProbeError(f"cross-fitting needs k >= 2 folds, got {k}")
    tags, meanings = np.asarray(tags).astype(str), np.asarray(meanings).astype(str)
    folds: dict[str, int] = {}
    rng = np.random.default_rng(seed)
    dealt = 0  # the deal goes on across tags, so small tags do not all start in fold 0
    for tag in sorted(set(tags)):
        mine = sorted(set(meanings[tags == tag]))
        for j in rng.permutation(len(mine)):
            folds[mine[j]] = dealt % k
            dealt += 1
    return folds


def _subset(rows: Rows, keep: np.ndarray) -> Rows:
    return {k: np.asarray(v)[keep] for k, v in rows.items()}


def by_training_validation(candidates: dict[str, float], what: str = "training-validation within-prompt AUROC") -> tuple[str, dict]:
    """The candidate with the best training-validation metric (ties: the first), and its record."""
    if not candidates:
        raise ProbeError("nothing to choose from")
    chosen = max(candidates, key=lambda name: (candidates[name], -list(candidates).index(name)))
    return chosen, {"rule": "by_training_validation", "metric": what,
                    "meanings": "the train suite's validation split (no evaluation meaning)",
                    "candidates": {k: round(float(v), 6) for k, v in candidates.items()}, "chosen": chosen}


def crossfit(candidates: dict[str, tuple[np.ndarray, np.ndarray]], dev: Rows, test: Rows,
             metric: Callable[[Rows, np.ndarray], float] = within, k: int = 2,
             seed: int = SELECTION_SEED) -> tuple[np.ndarray, dict]:
    """Cross-fitted choice among `candidates` (name -> (dev scores, test scores)): the test rows of each
    fold of meanings take the scores of the candidate best on the dev rows of the other folds. Returns
    the combined test scores and the `selected_by` record (per fold: the dev metric of every candidate
    and the one chosen)."""
    if not candidates:
        raise ProbeError("nothing to choose from")
    folds = deal_meanings(test["tag"], test["meaning"], k, seed)
    missing = set(np.asarray(dev["meaning"]).astype(str)) - set(folds)
    if missing:
        raise ProbeError(f"{len(missing)} dev meanings are not among the test's (e.g. {sorted(missing)[0]!r}): "
                         "cross-fitting deals the test's meanings; give a dev store of the test's prompts")
    dev_fold = np.array([folds[m] for m in np.asarray(dev["meaning"]).astype(str)])
    test_fold = np.array([folds[m] for m in np.asarray(test["meaning"]).astype(str)])
    names = list(candidates)
    combined = np.full(len(test_fold), np.nan)
    record = {"rule": "crossfit", "folds": k, "seed": seed, "metric": getattr(metric, "__name__", "metric"),
              "candidates": names, "per_fold": []}
    for f in range(k):
        other = dev_fold != f
        values = {n: float(metric(_subset(dev, other), np.asarray(candidates[n][0])[other])) for n in names}
        best = max(names, key=lambda n: (np.nan_to_num(values[n], nan=-np.inf), -names.index(n)))
        rows = test_fold == f
        combined[rows] = np.asarray(candidates[best][1], float)[rows]
        record["per_fold"].append({"fold": f, "test_rows": int(rows.sum()), "chosen": best,
                                   "dev_rows": int(other.sum()), "dev_metric": {n: round(v, 6) for n, v in values.items()}})
    return combined, record


def naive_choice(candidates: dict[str, tuple[np.ndarray, np.ndarray]], dev: Rows,
                 metric: Callable[[Rows, np.ndarray], float] = within) -> str:
    """The candidate best on every dev row: what choosing on the test's meanings would pick (for comparison
    only; a number reported with it is flattered by the choice)."""
    names = list(candidates)
    return max(names, key=lambda n: (np.nan_to_num(float(metric(dev, np.asarray(candidates[n][0]))), nan=-np.inf),
                                     -names.index(n)))
