"""(step x block) probe maps of a multi-step store pair: fit on a train store, score on a test store.

    res = probe_grid(open_store("teacher-train.zarr", steps=True), open_store("teacher-test.zarr", steps=True))
    res.ds          # (target, step, layer) value / gap to the prompt-only baseline, intervals, significance
    res.earliest    # per target: the earliest decodable (step, block)

Protocol. Every stored (step, block) cell gets one probe per target (`fit_predict`, the sweep's fit), fitted
on the train store's mean-pooled block output at that step and scored on the test store, whose prompt
meanings are disjoint from the train store's (checked; refused otherwise). Metrics: verdict, within-prompt
AUROC; colour / shape / count (per item), macro AUROC; recon, R^2 of a ridge map from the cell's pooled
token grid to the final latent (`ae_latent`, else x0_hat at the last stored step). The baseline is the
sweep's prompt-only probe (same model family on the one-hot prompt structure), fitted on the train store.
Intervals: the cluster bootstrap over the test store's prompt meanings (`vhslab.stats.cluster_draws`), the
same draws for every cell and the baseline, so each cell's gap to the baseline has a paired interval.

Earliest decodable (the rule, fixed before any run): a cell is *decodable* when the lower end of its paired
gap interval is above 0 and the lower end of its value's interval is above chance (AUROC 0.5, R^2 0: the
train mean; a prompt-only ridge can fall below it on unseen meanings), both at the Bonferroni level
1 - alpha / (number of cells) (alpha = 0.05: the grid is scanned, so the family of cells, not each cell,
has a 5% false-positive rate). Those two intervals are the estimate -+ z * the bootstrap standard error
of the same replicates (z the normal quantile of that level): a percentile tail at 1 - 0.025 / cells would
need tens of thousands of replicates. The reported `gap_ci` is the plain 95% percentile interval. The earliest decodable cell
is the smallest step holding a decodable cell and, at that step, the lowest such block.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.stats import norm
from tqdm.auto import tqdm

from vhslab.figures.steps import plot_step_maps
from vhslab.probes.data import ProbeError, check_store, site_features
from vhslab.probes.metrics import replicates, score_all
from vhslab.probes.models import make_probe, make_prompt_baseline, prompt_structure
from vhslab.probes.splits import check_disjoint
from vhslab.probes.sweep import fit_predict, probe_threads
from vhslab.probes.targets import Target, build_targets, canonical
from vhslab.stats import cluster_draws, interval
from vhslab.trace.site import Site

TARGETS = ("verdict", "colour", "shape", "count", "recon")
ALPHA = 0.05
RULE = ("earliest decodable: the smallest step, then the lowest block, whose paired gap to the prompt-only baseline "
        "has its interval's lower end above 0 and whose value's lower end is above chance (AUROC 0.5, R^2 0), both at the "
        "Bonferroni level 1 - 0.05 / cells (estimate -+ z x bootstrap SE over test meanings)")


def _se(reps: np.ndarray) -> float:
    """The bootstrap standard error (finite replicates; inf when fewer than two, so nothing is decodable)."""
    reps = np.asarray(reps, float)
    reps = reps[np.isfinite(reps)]
    return float(reps.std(ddof=1)) if reps.size > 1 else float("inf")


def metric_of(t: Target) -> str:
    """The metric a grid target is scored on: within-prompt AUROC (verdict), AUROC, or R^2 (recon)."""
    return "r2" if t.kind == "regression" else "auroc_within" if t.name == "verdict" else "auroc"


def with_final_latent(ds: xr.Dataset) -> xr.Dataset:
    """The store with an `ae_latent` to reconstruct: its own, else x0_hat at its last stored step."""
    if "ae_latent" in ds or "x0_hat" not in ds:
        return ds
    last = ds["x0_hat"].isel(step=-1, drop=True).rename(latent_token="ae_token", latent_channel="ae_channel")
    return ds.assign(ae_latent=last)


def aligned_targets(train: xr.Dataset, test: xr.Dataset, names, grid: int, min_per_class: int):
    """(train target, test target) pairs of the same name; the test's classes mapped to the train's
    (test rows of a class the train store lacks are dropped; a target the test store lacks is skipped)."""
    tr = build_targets(train, list(names), grid=grid, min_per_class=min_per_class)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        te = {t.name: t for t in build_targets(test, list(names), grid=grid, min_per_class=1)}
    pairs = []
    for t in tr:
        if t.name not in te:
            warnings.warn(f"target {t.name!r} has no usable test samples; skipped", stacklevel=2)
            continue
        u = te[t.name]
        if t.is_classification:
            index = {c: i for i, c in enumerate(t.classes)}
            labels = np.array([u.classes[k] for k in u.y])
            keep = np.array([c in index for c in labels])
            u = Target(u.name, t.kind, u.rows[keep], np.array([index[c] for c in labels[keep]], int), t.classes)
            if len(np.unique(u.y)) < 2:
                warnings.warn(f"target {t.name!r}: fewer than 2 of its train classes in the test store; skipped",
                              stacklevel=2)
                continue
        pairs.append((t, u))
    if not pairs:
        raise ProbeError(f"no target of {list(names)} is usable in both stores")
    return pairs


@dataclass
class GridResult:
    """The (step x block) maps: `ds` (target, step, layer) with `value`, `gap` (minus the baseline),
    their intervals and `decodable`; per target `baseline*` and the metric; `earliest` per target."""

    ds: xr.Dataset
    earliest: dict

    def to_json(self) -> dict:
        """Plain JSON: the rule, per target the metric, baseline, earliest decodable cell and the maps."""
        ds, r = self.ds, lambda v: None if not np.isfinite(v) else round(float(v), 4)
        out = {"rule": RULE, "steps": [int(s) for s in ds.step.values], "sigma": [r(s) for s in ds.sigma.values],
               "layers": [int(v) for v in ds.layer.values], "targets": {}, **ds.attrs}
        for t in ds.target.values:
            one = ds.sel(target=t)
            out["targets"][str(t)] = {
                "metric": str(one.metric.values), "n_test": int(one.n_test),
                "baseline": {"value": r(one.baseline), "ci": [r(one.baseline_ci_low), r(one.baseline_ci_high)]},
                "earliest_decodable": self.earliest[str(t)],
                "value": [[r(v) for v in row] for row in one.value.values],
                "gap": [[r(v) for v in row] for row in one.gap.values],
                "gap_ci": [[[r(a), r(b)] for a, b in zip(lo, hi, strict=True)]
                           for lo, hi in zip(one.gap_ci_low.values, one.gap_ci_high.values, strict=True)],
                "decodable": one.decodable.values.astype(bool).tolist(),
            }
        return out

    def plot(self, targets=None):
        """The (step x block) heatmaps of the gap to the baseline (`vhslab.figures.steps.plot_step_maps`)."""
        return plot_step_maps(self.ds, targets)

    def table(self) -> list[dict]:
        """One row per target: metric, baseline, best cell, earliest decodable cell (what the CLI prints)."""
        rows = []
        for t in self.ds.target.values:
            one = self.ds.sel(target=t)
            best = np.unravel_index(int(np.nanargmax(one.gap.values)), one.gap.shape)
            rows.append({"target": str(t), "metric": str(one.metric.values), "baseline": float(one.baseline),
                         "best": str(Site.block(int(one.layer[best[1]]), int(one.step[best[0]]))),
                         "best_gap": float(one.gap.values[best]), "earliest": self.earliest[str(t)]})
        return rows


def _checked(train: xr.Dataset, test: xr.Dataset, steps, layers) -> tuple[xr.Dataset, xr.Dataset, list, list]:
    train, test = check_store(train, steps=True), check_store(test, steps=True)
    for name, ds in (("train", train), ("test", test)):
        if "step" not in ds.dims or "hidden" not in ds:
            raise ProbeError(f"the {name} store is not a multi-step store (no `step` dim on `hidden`); extract it with "
                             "--steps")
        if "meaning" not in ds.coords:
            raise ProbeError(f"the {name} store lacks the coord 'meaning'; extract it again")
    check_disjoint(train["meaning"].values, test["meaning"].values)
    common = lambda dim: [int(v) for v in train[dim].values if int(v) in set(int(w) for w in test[dim].values)]  # noqa: E731
    out = []
    for dim, asked in (("step", steps), ("layer", layers)):
        have = common(dim)
        want = have if asked is None else [int(v) for v in asked]
        missing = [v for v in want if v not in have]
        if missing or not want:
            raise ProbeError(f"--{dim}s {missing or want}: not in both stores; both hold {dim}s {have}")
        out.append(want)
    return with_final_latent(train), with_final_latent(test), *out


def probe_grid(train: xr.Dataset, test: xr.Dataset, targets=TARGETS, *, probe: str = "linear", steps=None,
               layers=None, grid: int = 4, n_boot: int = 1000, level: float = 0.95, min_per_class: int = 5,
               seed: int = 0, progress: bool = False, threads: int | None = 1) -> GridResult:
    """The (step x block) probe maps of `targets` (module docstring), trained on `train`, scored on `test`."""
    if probe not in ("linear", "mlp"):
        raise ProbeError(f"probe {probe!r}: the grid fits linear or mlp probes")
    if n_boot < 100:
        raise ProbeError(f"n_boot must be >= 100 for the grid's Bonferroni intervals, got {n_boot}")
    train, test, steps, layers = _checked(train, test, steps, layers)
    pairs = aligned_targets(train, test, [canonical(t) for t in targets], grid, min_per_class)
    prompts, meanings = (np.array([str(v) for v in test[c].values]) for c in ("prompt", "meaning"))
    sig_level = 1 - ALPHA / (len(steps) * len(layers))
    z = float(norm.ppf(1 - (1 - sig_level) / 2))  # the Bonferroni interval's half-width in bootstrap SEs
    T, S, L = len(pairs), len(steps), len(layers)
    arr = {k: np.full((T, S, L), np.nan) for k in ("value", "ci_low", "ci_high", "gap", "gap_ci_low", "gap_ci_high",
                                                   "sig_low")}
    base = np.full((3, T), np.nan)
    draws = [cluster_draws(meanings[u.rows], n_boot, seed) for _, u in pairs]

    def score(i, pred):
        t, u = pairs[i]
        m = metric_of(t)
        value = score_all(t.kind, u.y, pred, prompts[u.rows], m == "auroc_within")[m]
        with warnings.catch_warnings():  # a replicate may lack a class: its per-class AUROC is NaN, then dropped
            warnings.simplefilter("ignore", RuntimeWarning)
            reps = replicates(t.kind, u.y, pred, meanings[u.rows], m == "auroc_within", draws[i],
                              pair_groups=prompts[u.rows])[m]
        return value, reps

    with probe_threads(threads):
        x_tr, x_te = prompt_structure(train), prompt_structure(test)
        base_reps = []
        for i, (t, u) in enumerate(pairs):
            make = lambda t=t: make_prompt_baseline(probe, t.is_classification, seed)  # noqa: E731
            pred = fit_predict(make, x_tr.iloc[t.rows], t.y, x_te.iloc[u.rows], len(t.classes))
            value, reps = score(i, pred)
            base[:, i] = value, *interval(reps, level)
            base_reps.append(reps)
        bar = tqdm(total=S * L, desc="probe grid", disable=not progress, unit="cell")
        for si, step in enumerate(steps):
            for li, layer in enumerate(layers):
                bar.update()
                site = Site.block(layer, step)  # block.k@stepN: that step's slice of `hidden`
                f_tr, f_te = (site_features(ds, site, (grid,)) for ds in (train, test))
                for i, (t, u) in enumerate(pairs):
                    key = "mean" if t.is_classification else grid
                    make = lambda t=t: make_probe(probe, t.is_classification, seed)  # noqa: E731
                    pred = fit_predict(make, f_tr[key][t.rows], t.y, f_te[key][u.rows], len(t.classes))
                    value, reps = score(i, pred)
                    gap = reps - base_reps[i]
                    cell = (i, si, li)
                    arr["value"][cell], (arr["ci_low"][cell], arr["ci_high"][cell]) = value, interval(reps, level)
                    arr["gap"][cell] = value - base[0, i]
                    arr["gap_ci_low"][cell], arr["gap_ci_high"][cell] = interval(gap, level)
                    chance = 0.0 if t.kind == "regression" else 0.5  # R^2 of the train mean; AUROC of a coin
                    arr["sig_low"][cell] = min(arr["gap"][cell] - z * _se(gap), value - chance - z * _se(reps))
        bar.close()
    return _result(train, test, pairs, steps, layers, arr, base, dict(
        probe=probe, grid=grid, n_boot=n_boot, level=level, significance_level=sig_level, seed=seed,
        resampled="test prompt meanings (cluster bootstrap); within-prompt AUROC pairs candidates of one prompt",
        train_key=str(train.attrs.get("content_key", "")), test_key=str(test.attrs.get("content_key", ""))))


def _result(train, test, pairs, steps, layers, arr, base, attrs) -> GridResult:
    sigma = (np.asarray(train["sigma"].sel(step=steps).values, float) if "sigma" in train.coords
             else np.full(len(steps), np.nan))
    dims = ("target", "step", "layer")
    decodable = arr.pop("sig_low") > 0
    ds = xr.Dataset(
        {**{k: (dims, v) for k, v in arr.items()}, "decodable": (dims, decodable),
         "baseline": ("target", base[0]), "baseline_ci_low": ("target", base[1]), "baseline_ci_high": ("target", base[2]),
         "n_train": ("target", [len(t.rows) for t, _ in pairs]), "n_test": ("target", [len(u.rows) for _, u in pairs])},
        coords={"target": [t.name for t, _ in pairs], "metric": ("target", [metric_of(t) for t, _ in pairs]),
                "step": steps, "sigma": ("step", sigma), "layer": layers},
        attrs={**attrs, "rule": RULE},
    )
    if "timestep" in train.coords:
        ds = ds.assign_coords(timestep=("step", np.asarray(train["timestep"].sel(step=steps).values, float)))
    earliest = {}
    for ti, (t, _) in enumerate(pairs):
        hit = np.argwhere(decodable[ti])  # row-major: steps ascending, then blocks
        if not len(hit):
            earliest[t.name] = None
            continue
        si, li = (int(v) for v in hit[0])
        earliest[t.name] = {"step": steps[si], "layer": layers[li], "site": str(Site.block(layers[li], steps[si])),
                            "sigma": None if not np.isfinite(sigma[si]) else float(sigma[si]),
                            "gap": float(arr["gap"][ti, si, li]),
                            "gap_ci": [float(arr["gap_ci_low"][ti, si, li]), float(arr["gap_ci_high"][ti, si, li])]}
    return GridResult(ds, earliest)
