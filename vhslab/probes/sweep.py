"""The layer-wise probe sweep: every site x probe x target, meaning-grouped k-fold CV, one site in memory.

Per (site, probe, target) it reports out-of-fold scores with cluster-bootstrap CIs over prompt
meanings, and the paired CI of the gap to the prompt-only baseline (same folds, same model family).
The "best site" is chosen without peeking (`select`): in every outer fold an inner CV on the outer
training part picks the site, whose outer-fold predictions are then scored, so the selected site's
score and its gap to the baseline rest on data that did not choose it.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import xarray as xr
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from vhslab.probes.data import ProbeError, check_store, site_features
from vhslab.probes.metrics import METRICS, cluster_draws, percentile_ci, replicates, score_all
from vhslab.probes.models import PROBES, make_probe, make_prompt_baseline, prompt_structure
from vhslab.probes.results import RESULTS_MARK, ProbeResults, headline_metric
from vhslab.probes.splits import fold_of, meaning_folds
from vhslab.probes.targets import SELF_SITES, Target, build_targets, source_of
from vhslab.trace.site import Site, SiteError, store_sites


def _oof(make, X, t: Target, folds) -> np.ndarray:
    """Out-of-fold predictions: class probabilities (rows, classes) or values shaped like t.y."""
    out = np.zeros((len(t.y), len(t.classes))) if t.is_classification else np.zeros(t.y.shape, np.float32)
    for train, test in folds:
        out[test] = fit_predict(make, X[train], t.y[train], X[test], len(t.classes) if t.is_classification else 0)
    return out


def fit_predict(make, x_train, y_train: np.ndarray, x_test, n_classes: int = 0) -> np.ndarray:
    """Fit a fresh probe (`make()`) on one part and predict another: class probabilities (rows, n_classes)
    for labels 0..n_classes-1 (a part with one class predicts that class), or, with n_classes 0, values
    shaped like y (rows, ...); token features (rows, cells, channels) share one map over the cells.
    The one fit of every probe: the sweep's folds and a train store / test store pair alike."""
    n_test = x_test.shape[0]
    if n_classes:
        out = np.zeros((n_test, n_classes))
        seen = np.unique(y_train)
        if len(seen) < 2:  # a (small) training part with one class predicts that class
            out[:, seen[0]] = 1.0
            return out
        m = make().fit(x_train, y_train)
        out[:, np.asarray(m.classes_)] = m.predict_proba(x_test)
        return out
    xt = x_train.reshape(-1, x_train.shape[-1]) if x_train.ndim == 3 else x_train
    m = make().fit(xt, y_train.reshape(len(xt), -1))
    xs = x_test.reshape(-1, x_test.shape[-1]) if x_test.ndim == 3 else x_test
    return m.predict(xs).reshape((n_test, *y_train.shape[1:])).astype(np.float32)


class _Scorer:
    """Scores of one target's predictions: per fold, pooled, and bootstrap replicates over meanings
    (the same draws for every site and the baseline, so differences are paired)."""

    def __init__(self, t: Target, prompts, meanings, folds, n_boot: int, seed: int):
        self.t, self.prompts, self.meanings, self.folds = t, prompts, meanings, folds
        self.within = t.kind == "binary"
        self.draws = cluster_draws(meanings, n_boot, seed) if n_boot > 0 else None

    def all(self, pred):
        """(metrics x folds) scores, pooled (metrics,), replicates {metric: (n_boot,)}."""
        t = self.t
        fold = np.full((len(METRICS), len(self.folds)), np.nan)
        for f, (_, test) in enumerate(self.folds):
            for m, v in score_all(t.kind, t.y[test], pred[test], self.prompts[test], self.within).items():
                fold[METRICS.index(m), f] = v
        pooled = _vector(score_all(t.kind, t.y, pred, self.prompts, self.within))
        reps = {} if self.draws is None else replicates(
            t.kind, t.y, pred, self.meanings, self.within, self.draws, pair_groups=self.prompts)
        return fold, pooled, reps


def _vector(values: dict) -> np.ndarray:
    out = np.full(len(METRICS), np.nan)
    for m, v in values.items():
        out[METRICS.index(m)] = v
    return out


def _ci(reps: dict) -> np.ndarray:
    out = np.full((2, len(METRICS)), np.nan)
    for m, (lo, hi) in percentile_ci(reps).items():
        out[:, METRICS.index(m)] = lo, hi
    return out


def _gap_ci(reps: dict, base: dict) -> np.ndarray:
    return _ci({m: reps[m] - base[m] for m in reps if m in base})


def run_sweep(
    ds: xr.Dataset,
    targets: list[str] | tuple[str, ...] = ("verdict",),
    probes: list[str] | tuple[str, ...] = ("linear",),
    *,
    layers: list[int] | None = None,
    extra_sites: tuple[str, ...] = (),
    k: int = 5,
    inner_k: int = 3,
    select: bool = True,
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
    `attn_grid` x `attn_grid` grid. Folds are meaning-disjoint (k-fold, stratified for
    classification). `baseline` adds the prompt-only probe on the ordered prompt structure;
    `select` picks a site per outer fold by an `inner_k`-fold CV inside its training part (about
    `inner_k` + 1 times the fits). `threads` caps BLAS/torch threads (None: leave as is): probe fits
    are small, and extra threads made them ~20x slower on a shared 2-core machine.
    """
    with probe_threads(threads):
        return _run(ds, list(targets), list(probes), layers, extra_sites, k, inner_k, select, grid, attn_grid,
                    n_boot, baseline, seed, progress)


@contextmanager
def probe_threads(n: int | None):
    """Cap BLAS and torch threads at `n` for the block (None: leave them as they are)."""
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


def _check_args(ds, targets, probes, k, inner_k, n_boot) -> None:
    bad = [p for p in probes if p not in PROBES]
    if bad:
        raise ProbeError(f"unknown probe(s) {bad}; known probes: {', '.join(PROBES)}")
    if not probes or not targets:
        raise ProbeError("give at least one probe and one target")
    if inner_k < 2:
        raise ProbeError(f"inner_k must be >= 2, got {inner_k}")
    if n_boot < 0:
        raise ProbeError(f"n_boot must be >= 0, got {n_boot}")
    if "meaning" not in ds.coords:
        raise ProbeError("the store lacks the coord 'meaning' (needed to split by prompt meaning); extract it again")


def _run(ds, targets, probes, layers, extra_sites, k, inner_k, select, grid, attn_grid, n_boot, baseline, seed,
         progress):
    ds = check_store(ds)
    _check_args(ds, targets, probes, k, inner_k, n_boot)
    try:
        sites: list[Site] = store_sites(ds, layers, tuple(extra_sites))
    except SiteError as err:
        raise ProbeError(str(err)) from None
    tgts = build_targets(ds, targets, grid=grid, min_per_class=k)
    prompts = np.array([str(p) for p in ds["prompt"].values])
    meanings = np.array([str(p) for p in ds["meaning"].values])
    folds = {t.name: meaning_folds(meanings[t.rows], t.y if t.is_classification else None, k, seed) for t in tgts}
    inner = {t.name: [meaning_folds(meanings[t.rows][tr], t.y[tr] if t.is_classification else None, inner_k, seed)
                      for tr, _ in folds[t.name]] for t in tgts} if select else {}
    scorers = {t.name: _Scorer(t, prompts[t.rows], meanings[t.rows], folds[t.name], n_boot, seed) for t in tgts}
    S, P, T, M = len(sites), len(probes), len(tgts), len(METRICS)
    nan = lambda *shape: np.full(shape, np.nan)  # noqa: E731
    out = {
        "score": nan(S, P, T, M, k), "pooled": nan(S, P, T, M), "ci": nan(2, S, P, T, M),
        "gap_ci": nan(2, S, P, T, M), "inner_score": nan(S, P, T, k),
        "baseline": nan(P, T, M, k), "baseline_pooled": nan(P, T, M), "baseline_ci": nan(2, P, T, M),
        "selected": nan(P, T, M), "selected_ci": nan(2, P, T, M), "selected_gap_ci": nan(2, P, T, M),
    }
    selected_site = np.full((P, T, k), "", dtype=object)
    applies = lambda probe, t: probe != "attn" or t.is_classification  # noqa: E731

    base_reps: dict = {}
    if baseline:
        structure = prompt_structure(ds)
        for ti, t in enumerate(tgts):
            for pi, probe in enumerate(probes):
                if not applies(probe, t):
                    continue
                X = _FrameRows(structure.iloc[t.rows].reset_index(drop=True))
                pred = _oof(lambda: make_prompt_baseline(probe, t.is_classification, seed), X, t, folds[t.name])  # noqa: B023
                out["baseline"][pi, ti], out["baseline_pooled"][pi, ti], base_reps[pi, ti] = scorers[t.name].all(pred)
                out["baseline_ci"][:, pi, ti] = _ci(base_reps[pi, ti])

    preds: dict = {}  # (site, probe, target) -> out-of-fold predictions, for the selected-site score
    reps_of: dict = {}
    bar = tqdm(total=S * P * T, desc="probe sweep", disable=not progress, unit="fit")
    for s, site in enumerate(sites):
        bar.set_postfix_str(site.name)
        feats = site_features(ds, site, (grid if any(not t.is_classification for t in tgts) else 0,
                                         attn_grid if "attn" in probes else 0))
        for ti, t in enumerate(tgts):
            for pi, probe in enumerate(probes):
                bar.update()
                if not applies(probe, t) or SELF_SITES.get(t.name) == site.name:  # not applicable: stays NaN
                    continue
                X = feats[grid if not t.is_classification else attn_grid if probe == "attn" else "mean"][t.rows]
                make = lambda: make_probe(probe, t.is_classification, seed)  # noqa: E731, B023
                pred = preds[s, pi, ti] = _oof(make, X, t, folds[t.name])
                out["score"][s, pi, ti], out["pooled"][s, pi, ti], reps_of[s, pi, ti] = scorers[t.name].all(pred)
                out["ci"][:, s, pi, ti] = _ci(reps_of[s, pi, ti])
                if (pi, ti) in base_reps:
                    out["gap_ci"][:, s, pi, ti] = _gap_ci(reps_of[s, pi, ti], base_reps[pi, ti])
                if select:
                    out["inner_score"][s, pi, ti] = _inner_scores(make, X, t, folds[t.name], inner[t.name], prompts[t.rows])
    bar.close()

    if select:
        _fill_selected(out, selected_site, preds, sites, tgts, folds, scorers, base_reps, P)
    return _results(ds, sites, probes, tgts, folds, out, selected_site, prompts, meanings,
                    dict(k=k, inner_k=inner_k if select else 0, n_boot=n_boot, grid=grid, seed=seed,
                         attn_grid=attn_grid))


def _fill_selected(out, selected_site, preds, sites, tgts, folds, scorers, base_reps, P) -> None:
    """The selected-site score: each outer fold's predictions from the site its inner CV chose."""
    for ti, t in enumerate(tgts):
        for pi in range(P):
            chosen = _select(out["inner_score"][:, pi, ti])
            if chosen is None:
                continue
            pred = np.zeros_like(preds[chosen[0], pi, ti])
            for f, (_, test) in enumerate(folds[t.name]):
                pred[test] = preds[chosen[f], pi, ti][test]
                selected_site[pi, ti, f] = sites[chosen[f]].name
            _, out["selected"][pi, ti], reps = scorers[t.name].all(pred)
            out["selected_ci"][:, pi, ti] = _ci(reps)
            if (pi, ti) in base_reps:
                out["selected_gap_ci"][:, pi, ti] = _gap_ci(reps, base_reps[pi, ti])


def _inner_scores(make, X, t: Target, folds, inner_folds, prompts) -> np.ndarray:
    """Per outer fold: the headline metric of an inner CV on that fold's training part."""
    metric = headline_metric(t.kind)
    scores = np.full(len(folds), np.nan)
    for f, (train, _) in enumerate(folds):
        sub = Target(t.name, t.kind, t.rows[train], t.y[train], t.classes)
        pred = _oof(make, X[train], sub, inner_folds[f])
        scores[f] = score_all(t.kind, sub.y, pred, prompts[train], False)[metric]
    return scores


def _select(inner: np.ndarray) -> list[int] | None:
    """Per outer fold, the site with the best inner score (None if no site applies)."""
    if np.isnan(inner).all():
        return None
    return [int(np.nanargmax(inner[:, f])) for f in range(inner.shape[1])]


def _results(ds, sites, probes, tgts, folds, out, selected_site, prompts, meanings, attrs) -> ProbeResults:
    n, T = ds.sizes["sample"], len(tgts)
    fold_rows = np.full((T, n), -1, np.int16)
    for ti, t in enumerate(tgts):
        fold_rows[ti, t.rows] = fold_of(len(t.rows), folds[t.name])
    nb = int(ds.attrs.get("num_blocks", max(int(v) for v in ds["layer"].values) + 1))
    cost = [(st.index + 1) / nb if st.is_block else st.depth(nb) for st in sites]
    dims = ("site", "probe", "target", "metric")
    sel = ("probe", "target", "metric")
    gap = out["pooled"] - out["baseline_pooled"][None]
    result = xr.Dataset(
        {
            "score": ((*dims, "fold"), out["score"]),
            "pooled": (dims, out["pooled"]),
            "ci_low": (dims, out["ci"][0]),
            "ci_high": (dims, out["ci"][1]),
            "gap": (dims, gap),
            "gap_ci_low": (dims, out["gap_ci"][0]),
            "gap_ci_high": (dims, out["gap_ci"][1]),
            "baseline": (("probe", "target", "metric", "fold"), out["baseline"]),
            "baseline_pooled": (sel, out["baseline_pooled"]),
            "baseline_ci_low": (sel, out["baseline_ci"][0]),
            "baseline_ci_high": (sel, out["baseline_ci"][1]),
            "inner_score": (("site", "probe", "target", "fold"), out["inner_score"]),
            "selected_site": (("probe", "target", "fold"), selected_site.astype(str)),
            "selected": (sel, out["selected"]),
            "selected_ci_low": (sel, out["selected_ci"][0]),
            "selected_ci_high": (sel, out["selected_ci"][1]),
            "selected_gap": (sel, out["selected"] - out["baseline_pooled"]),
            "selected_gap_ci_low": (sel, out["selected_gap_ci"][0]),
            "selected_gap_ci_high": (sel, out["selected_gap_ci"][1]),
            "fold_of": (("target", "sample"), fold_rows),
            "n_samples": ("target", np.array([len(t.rows) for t in tgts], np.int64)),
            "n_prompts": ("target", np.array([len(np.unique(prompts[t.rows])) for t in tgts], np.int64)),
            "n_meanings": ("target", np.array([len(np.unique(meanings[t.rows])) for t in tgts], np.int64)),
        },
        coords={
            "site": [st.name for st in sites],
            "layer": ("site", np.array([st.index if st.is_block else -1 for st in sites], np.int64)),
            "depth": ("site", np.array([st.depth(nb) for st in sites], float)),
            "cost": ("site", np.array(cost, float)),
            "probe": list(probes),
            "target": [t.name for t in tgts],
            "kind": ("target", [t.kind for t in tgts]),
            "source": ("target", [source_of(t.name) for t in tgts]),
            "metric": list(METRICS),
            "fold": np.arange(attrs["k"]),
            "sample_id": ("sample", np.asarray(ds["sample_id"].values if "sample_id" in ds.coords else np.arange(n))),
            "prompt": ("sample", prompts),
            "meaning": ("sample", meanings),
        },
        attrs={
            **attrs,
            "num_blocks": nb,
            "pooling": "mean",
            "resampled": "prompt meanings (cluster bootstrap); within-prompt AUROC pairs candidates of one prompt",
            "model_id": str(ds.attrs.get("model_id", "")),
            "content_key": str(ds.attrs.get("content_key", "")),
            "evaluator": str(ds.attrs.get("evaluator", "")),
            RESULTS_MARK: 1,
        },
    )
    return ProbeResults(result)


class _FrameRows:
    """Row indexing (X[idx]) of a DataFrame, so the baseline shares `_oof` with the layer probes."""

    def __init__(self, frame):
        self.frame, self.ndim, self.shape = frame, 2, frame.shape

    def __getitem__(self, idx):
        return self.frame.iloc[idx]
