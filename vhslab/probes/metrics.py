"""Probe metrics (AUROC, within-prompt AUROC, balanced accuracy, ECE, R^2) and cluster bootstrap CIs
(plain and paired).

Short numpy versions instead of sklearn's: the bootstrap needs weighted (multiplicity) forms
computed for all replicates at once, which sklearn does not offer. Tests check them against
sklearn and against explicit resampling.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from vhslab.stats import cluster_draws, interval, row_weights

CLASSIFICATION_METRICS = ("auroc", "bal_acc", "ece")
METRICS = ("auroc", "auroc_within", "bal_acc", "ece", "r2")


def auroc_binary(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUROC (ties count half); NaN with a single class."""
    pos = y == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(score)
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def auroc(y: np.ndarray, proba: np.ndarray) -> float:
    """Binary AUROC on proba[:, 1], or macro one-vs-rest over the classes present in `y`."""
    if proba.shape[1] == 2:
        return auroc_binary(y, proba[:, 1])
    vals = [auroc_binary((y == k).astype(int), proba[:, k]) for k in np.unique(y)]
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def within_stats(y: np.ndarray, score: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group: (Mann-Whitney U of positives over negatives, number of pos x neg pairs)."""
    _, g = np.unique(groups, return_inverse=True)
    u = np.zeros(g.max() + 1)
    pairs = np.zeros_like(u)
    for k in np.unique(g):
        m = g == k
        n1 = int(y[m].sum())
        n0 = int(m.sum()) - n1
        if n1 and n0:
            r = rankdata(score[m])
            u[k] = r[y[m] == 1].sum() - n1 * (n1 + 1) / 2
            pairs[k] = n1 * n0
    return u, pairs


def auroc_within(y: np.ndarray, score: np.ndarray, groups: np.ndarray) -> float:
    """AUROC over pairs (positive, negative) of the same group (prompt) only: what Best-of-N needs."""
    u, pairs = within_stats(y, score, groups)
    return float(u.sum() / pairs.sum()) if pairs.sum() else float("nan")


def balanced_accuracy(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean per-class recall of the argmax prediction."""
    pred = proba.argmax(axis=1)
    recalls = [np.mean(pred[y == k] == k) for k in np.unique(y)]
    return float(np.mean(recalls))


def ece(y: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """Top-label expected calibration error, equal-width bins (sklearn has no ECE)."""
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    b = np.minimum((conf * bins).astype(int), bins - 1)
    n = np.bincount(b, minlength=bins)
    gap = np.abs(np.bincount(b, conf, bins) - np.bincount(b, correct.astype(float), bins))
    return float(gap.sum() / max(n.sum(), 1))


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Variance-weighted R^2 over all outputs (= sklearn r2_score(multioutput='variance_weighted'))."""
    y = y.reshape(len(y), -1)
    pred = pred.reshape(len(pred), -1)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum()
    return float(1 - ((y - pred) ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan")


def score_all(kind: str, y: np.ndarray, pred: np.ndarray, groups: np.ndarray, within: bool) -> dict[str, float]:
    """All metrics that apply to a target kind; `pred` is proba (classification) or values."""
    if kind == "regression":
        return {"r2": r2(y, pred)}
    out = {"auroc": auroc(y, pred), "bal_acc": balanced_accuracy(y, pred), "ece": ece(y, pred)}
    if within and pred.shape[1] == 2:
        out["auroc_within"] = auroc_within(y, pred[:, 1], groups)
    return out


def _wauroc(pos: np.ndarray, score: np.ndarray, W: np.ndarray) -> np.ndarray:
    """AUROC of each row of weights W (replicates x samples): Mann-Whitney with multiplicities."""
    order = np.argsort(score, kind="stable")
    s, pos = score[order], pos[order]
    W = W[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # tie groups, contiguous once sorted
    tie = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1
    neg = np.add.reduceat(W * ~pos, starts, axis=1)  # negative weight per tie group
    below = np.cumsum(neg, axis=1) - neg
    u = ((below + 0.5 * neg)[:, tie] * (W * pos)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return u / ((W * pos).sum(1) * (W * ~pos).sum(1))


def _weighted_scores(kind: str, y: np.ndarray, pred: np.ndarray, W: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics of `score_all` for every row of weights W at once (a bootstrap replicate each)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if kind == "regression":
            yy, pp = y.reshape(len(y), -1), pred.reshape(len(pred), -1)
            tot = W @ (yy**2).sum(1) - ((W @ yy) ** 2).sum(1) / W.sum(1)
            return {"r2": 1 - (W @ ((yy - pp) ** 2).sum(1)) / tot}
        classes = np.unique(y)
        if pred.shape[1] == 2:
            auc = _wauroc(y == 1, pred[:, 1], W)
        else:
            auc = np.nanmean(np.stack([_wauroc(y == k, pred[:, k], W) for k in classes]), axis=0)
        hit = pred.argmax(1) == y
        bal = np.mean([(W @ (hit & (y == k))) / (W @ (y == k)) for k in classes], axis=0)
        conf = pred.max(1)
        bins = np.eye(10)[np.minimum((conf * 10).astype(int), 9)]  # same 10 bins as `ece`
        gap = np.abs(W @ (bins * conf[:, None]) - W @ (bins * hit[:, None])).sum(1)
        return {"auroc": auc, "bal_acc": bal, "ece": gap / W.sum(1)}


def replicates(kind: str, y, pred, clusters, within: bool, draws, pair_groups=None) -> dict[str, np.ndarray]:
    """Every metric of `score_all` on every bootstrap replicate of `draws` (from `cluster_draws`).
    Within-prompt AUROC pairs candidates of one `pair_groups` value (default: the clusters); each
    pair group must lie inside one cluster."""
    mult, g = draws
    vals = _weighted_scores(kind, y, pred, row_weights(draws))
    if within and kind != "regression" and pred.shape[1] == 2:
        pair_groups = clusters if pair_groups is None else pair_groups
        u, pairs = within_stats(y, pred[:, 1], pair_groups)
        _, pg = np.unique(pair_groups, return_inverse=True)
        cluster_of = np.zeros(len(u), int)
        cluster_of[pg] = g
        u_c, pairs_c = (np.bincount(cluster_of, w, minlength=mult.shape[1]) for w in (u, pairs))
        with np.errstate(invalid="ignore", divide="ignore"):
            vals["auroc_within"] = (mult @ u_c) / (mult @ pairs_c)
    return vals


def percentile_ci(vals: dict[str, np.ndarray], level: float = 0.95) -> dict[str, tuple[float, float]]:
    return {m: tuple(interval(v, level)) for m, v in vals.items()}


def bootstrap_ci(
    kind: str,
    y: np.ndarray,
    pred: np.ndarray,
    clusters: np.ndarray,
    within: bool,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    pair_groups: np.ndarray | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile CIs from a cluster bootstrap that resamples whole clusters (prompt meanings: the
    candidates of a prompt, and the prompts of one meaning, are correlated). A replicate is a
    weight per row (its cluster's multiplicity in the draw), so all replicates are computed at once."""
    if n_boot <= 0:
        return {}
    return percentile_ci(replicates(kind, y, pred, clusters, within, cluster_draws(clusters, n_boot, seed), pair_groups), level)


def paired_bootstrap_ci(
    kind: str,
    y: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    clusters: np.ndarray,
    within: bool,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    pair_groups: np.ndarray | None = None,
) -> dict[str, tuple[float, float]]:
    """CI of metric(A) - metric(B) on the same rows, from the same cluster draws for both (paired)."""
    if n_boot <= 0:
        return {}
    draws = cluster_draws(clusters, n_boot, seed)
    a = replicates(kind, y, pred_a, clusters, within, draws, pair_groups)
    b = replicates(kind, y, pred_b, clusters, within, draws, pair_groups)
    return percentile_ci({m: a[m] - b[m] for m in a if m in b}, level)
