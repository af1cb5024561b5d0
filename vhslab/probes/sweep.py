"""The layer-wise probe sweep: every site x probe x target, prompt-grouped k-fold CV, one site in memory."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
import xarray as xr
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from vhslab.probes.data import ProbeError, Site, check_store, list_sites, site_features
from vhslab.probes.metrics import METRICS, bootstrap_ci, score_all
from vhslab.probes.models import PROBES, make_probe, make_prompt_baseline
from vhslab.probes.results import ProbeResults
from vhslab.probes.splits import fold_of, prompt_folds
from vhslab.probes.targets import Target, build_targets


def _oof(make, X, t: Target, folds) -> np.ndarray:
    """Out-of-fold predictions: class probabilities (rows, classes) or values shaped like t.y."""
    if t.is_classification:
        out = np.zeros((len(t.y), len(t.classes)))
        for train, test in folds:
            m = make().fit(X[train], t.y[train])
            out[np.ix_(test, np.asarray(m.classes_))] = m.predict_proba(X[test])
        return out
    out = np.zeros(t.y.shape, np.float32)
    for train, test in folds:
        xt = X[train].reshape(-1, X.shape[-1]) if X.ndim == 3 else X[train]
        yt = t.y[train].reshape(len(xt), -1)
        m = make().fit(xt, yt)
        xs = X[test].reshape(-1, X.shape[-1]) if X.ndim == 3 else X[test]
        out[test] = m.predict(xs).reshape(out[test].shape)
    return out


def _score(t: Target, pred, groups, folds, n_boot, seed, k):
    """(k folds x metrics) scores, pooled scores and their bootstrap CIs."""
    within = t.kind == "binary"
    fold = np.full((len(METRICS), k), np.nan)
    for f, (_, test) in enumerate(folds):
        for m, v in score_all(t.kind, t.y[test], pred[test], groups[test], within).items():
            fold[METRICS.index(m), f] = v
    pooled = np.full(len(METRICS), np.nan)
    for m, v in score_all(t.kind, t.y, pred, groups, within).items():
        pooled[METRICS.index(m)] = v
    ci = np.full((2, len(METRICS)), np.nan)
    for m, (lo, hi) in bootstrap_ci(t.kind, t.y, pred, groups, within, n_boot, seed=seed).items():
        ci[:, METRICS.index(m)] = lo, hi
    return fold, pooled, ci


def run_sweep(
    ds: xr.Dataset,
    targets: list[str] | tuple[str, ...] = ("verdict",),
    probes: list[str] | tuple[str, ...] = ("linear",),
    *,
    layers: list[int] | None = None,
    extra_sites: tuple[str, ...] = (),
    k: int = 5,
    grid: int = 4,
    attn_grid: int = 8,
    n_boot: int = 200,
    baseline: bool = True,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = 1,
) -> ProbeResults:
    """Probe every site of `ds` (one at a time, mean-pooled tokens) for every target and probe.

    Targets: see `build_targets`; reconstruction targets use tokens pooled to a `grid` x `grid`
    grid, one row per cell (a shared local linear map); the `attn` probe reads tokens pooled to an
    `attn_grid` x `attn_grid` grid. Folds are prompt-disjoint (k-fold,
    stratified for classification); `baseline` adds the prompt-only probe (bag of words + tag).
    `threads` caps BLAS/torch threads (None: leave as is): probe fits are small, and extra
    threads made them ~20x slower on a shared 2-core machine.
    """
    with _threads(threads):
        return _run(ds, targets, probes, layers, extra_sites, k, grid, attn_grid, n_boot, baseline, seed, progress)


@contextmanager
def _threads(n: int | None):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(old)


def _run(ds, targets, probes, layers, extra_sites, k, grid, attn_grid, n_boot, baseline, seed, progress):
    ds = check_store(ds)
    bad = [p for p in probes if p not in PROBES]
    if bad:
        raise ProbeError(f"unknown probe(s) {bad}; known probes: {', '.join(PROBES)}")
    if not probes or not targets:
        raise ProbeError("give at least one probe and one target")
    sites: list[Site] = list_sites(ds, layers, tuple(extra_sites))
    tgts = build_targets(ds, list(targets), grid=grid, min_per_class=k)
    prompts = np.array([str(p) for p in ds["prompt"].values])
    tags = np.array([str(p) for p in ds["tag"].values])
    folds = {
        t.name: prompt_folds(prompts[t.rows], t.y if t.is_classification else None, k, seed) for t in tgts
    }
    S, P, T, M = len(sites), len(probes), len(tgts), len(METRICS)
    score = np.full((S, P, T, M, k), np.nan)
    pooled = np.full((S, P, T, M), np.nan)
    ci = np.full((2, S, P, T, M), np.nan)
    grids = (grid if any(not t.is_classification for t in tgts) else 0, attn_grid if "attn" in probes else 0)

    bar = tqdm(total=S * P * T, desc="probe sweep", disable=not progress, unit="fit")
    for s, site in enumerate(sites):
        bar.set_postfix_str(site.name)
        feats = site_features(ds, site, grids)
        for ti, t in enumerate(tgts):
            for pi, probe in enumerate(probes):
                if probe == "attn" and not t.is_classification:  # not applicable: stays NaN
                    bar.update()
                    continue
                X = feats[grid if not t.is_classification else attn_grid if probe == "attn" else "mean"][t.rows]
                pred = _oof(lambda: make_probe(probe, t.is_classification, seed), X, t, folds[t.name])  # noqa: B023 (called at once)
                score[s, pi, ti], pooled[s, pi, ti], ci[:, s, pi, ti] = _score(
                    t, pred, prompts[t.rows], folds[t.name], n_boot, seed, k
                )
                bar.update()
    bar.close()

    base = np.full((T, M, k), np.nan)
    base_pooled = np.full((T, M), np.nan)
    base_ci = np.full((2, T, M), np.nan)
    if baseline:
        for ti, t in enumerate(tgts):
            X = pd.DataFrame({"prompt": prompts[t.rows], "tag": tags[t.rows]})
            Xa = _FrameRows(X)
            pred = _oof(lambda: make_prompt_baseline(t.is_classification), Xa, t, folds[t.name])  # noqa: B023 (called at once)
            base[ti], base_pooled[ti], base_ci[:, ti] = _score(t, pred, prompts[t.rows], folds[t.name], n_boot, seed, k)

    n = ds.sizes["sample"]
    fold_rows = np.full((T, n), -1, np.int16)
    for ti, t in enumerate(tgts):
        fold_rows[ti, t.rows] = fold_of(len(t.rows), folds[t.name])
    nb = int(ds.attrs.get("num_blocks", max(int(v) for v in ds["layer"].values) + 1))
    cost = [(st.layer + 1) / nb if st.layer >= 0 else (1.0 if st.name == "ae_latent" else np.nan) for st in sites]
    dims = ("site", "probe", "target", "metric")
    out = xr.Dataset(
        {
            "score": ((*dims, "fold"), score),
            "pooled": (dims, pooled),
            "ci_low": (dims, ci[0]),
            "ci_high": (dims, ci[1]),
            "baseline": (("target", "metric", "fold"), base),
            "baseline_pooled": (("target", "metric"), base_pooled),
            "baseline_ci_low": (("target", "metric"), base_ci[0]),
            "baseline_ci_high": (("target", "metric"), base_ci[1]),
            "fold_of": (("target", "sample"), fold_rows),
            "n_samples": ("target", np.array([len(t.rows) for t in tgts], np.int64)),
        },
        coords={
            "site": [st.name for st in sites],
            "layer": ("site", np.array([st.layer for st in sites], np.int64)),
            "depth": ("site", np.array([st.depth for st in sites], float)),
            "cost": ("site", np.array(cost, float)),
            "probe": list(probes),
            "target": [t.name for t in tgts],
            "kind": ("target", [t.kind for t in tgts]),
            "metric": list(METRICS),
            "fold": np.arange(k),
            "sample_id": ("sample", np.asarray(ds["sample_id"].values if "sample_id" in ds.coords else np.arange(n))),
            "prompt": ("sample", prompts),
        },
        attrs={
            "num_blocks": nb,
            "k": k,
            "n_boot": n_boot,
            "grid": grid,
            "seed": seed,
            "pooling": "mean",
            "attn_grid": attn_grid,
            "model_id": str(ds.attrs.get("model_id", "")),
            "content_key": str(ds.attrs.get("content_key", "")),
        },
    )
    return ProbeResults(out)


class _FrameRows:
    """Row indexing (X[idx]) of a DataFrame, so the baseline shares `_oof` with the layer probes."""

    def __init__(self, frame: pd.DataFrame):
        self.frame, self.ndim, self.shape = frame, 2, frame.shape

    def __getitem__(self, idx):
        return self.frame.iloc[idx]
