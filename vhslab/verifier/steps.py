"""Verdicts by noise level: at chosen denoising steps of a multi-step store pair, the probe at the step's best
block and (optionally) a VHS latent verifier trained at that step, each with within-prompt AUROC and
Best-of-n gain on the test store, against step and sigma.

    res = verdict_by_step(open_store("train.zarr", steps=True), open_store("test.zarr", steps=True), steps=[0, 4, 7],
                          llm=world.llm, tokenizer=world.tokenizer, cfg=VerifierTrainConfig(steps=60))
    res.ds.sel(scorer="probe", metric="within_prompt_auroc"); plot_auroc_vs_sigma(res.curves())

Per step, the store is read as a one-step store (`ds.sel(step=N)`: `hidden` (sample, layer, token, channel)),
so the site `block.k` of that view is `block.k@stepN` of the store, and the verifier's own recipe
(`train_verifier`, `score_store`) runs unchanged on it. The block is chosen without test meanings
(`selection.by_training_validation`): the linear probe's within-prompt AUROC on the train store's validation
split (meaning-disjoint), block by block; the verifier is trained at the block so chosen. Best-of-n gain = the
mean evaluator verdict of the top-scored of n candidates of a prompt minus the mean over its candidates
(`evaluate.best_of_n`), with its paired interval over meanings; verifier - probe is paired too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from vhslab.probes.data import ProbeError, check_store, site_features, step_view
from vhslab.probes.metrics import auroc_within
from vhslab.probes.models import make_probe
from vhslab.probes.selection import by_training_validation
from vhslab.probes.splits import check_disjoint
from vhslab.trace.site import Site
from vhslab.verifier.data import prompt_rows, validation_split
from vhslab.verifier.evaluate import evaluate_scores
from vhslab.verifier.sweep import candidate_rows, score_store
from vhslab.verifier.train import VerifierTrainConfig, train_verifier

METRICS = ("within_prompt_auroc", "auroc", "gain")


def _best_block(train: xr.Dataset, test: xr.Dataset, layers, seed: int, val_fraction: float):
    """The block whose linear probe ranks the train store's validation candidates best (within prompt), the
    record of that choice, and that probe's test P(yes)."""
    y = train["verdict"].values.astype(int)
    fit, val = validation_split(train, val_fraction, seed)
    groups = prompt_rows(train)
    vals, test_scores = {}, {}
    for layer in layers:
        x_tr, x_te = (site_features(d, Site.block(layer))["mean"] for d in (train, test))
        model = make_probe("linear", True, seed).fit(x_tr[fit], y[fit])
        vals[str(Site.block(layer))] = auroc_within(y[val], model.predict_proba(x_tr[val])[:, 1], groups[val])
        test_scores[str(Site.block(layer))] = model.predict_proba(x_te)[:, 1]
    chosen, record = by_training_validation(vals, "training-validation within-prompt AUROC of the linear probe")
    return chosen, record, test_scores[chosen]


@dataclass
class StepVerdicts:
    """`ds`: `value`, `lo`, `hi` (scorer, step, metric) with `sigma` on step; `vs_probe*` (step, metric): verifier -
    probe, paired; `block` (step): the chosen block; `selected_by`: per step the choice's record."""

    ds: xr.Dataset
    selected_by: dict

    def curves(self, metric: str = "within_prompt_auroc") -> dict:
        """{scorer: {"sigma", "value", "ci"}} for `vhslab.figures.steps.plot_auroc_vs_sigma`."""
        out = {}
        for scorer in self.ds.scorer.values:
            one = self.ds.sel(scorer=scorer, metric=metric)
            if np.isfinite(one["value"].values).any():
                out[str(scorer)] = {"sigma": self.ds.sigma.values.tolist(), "value": one["value"].values.tolist(),
                                    "ci": np.stack([one["lo"].values, one["hi"].values], 1).tolist()}
        return out

    def to_json(self) -> dict:
        """Per step: sigma, the block, and per scorer each metric {"value", "ci"} (and verifier - probe)."""
        ds, r = self.ds, lambda v: None if not np.isfinite(v) else round(float(v), 4)
        rows = []
        for step in ds.step.values:
            one = ds.sel(step=step)
            row = {"step": int(step), "sigma": r(one.sigma), "block": int(one.block), **{
                str(s): {m: {"value": r(one["value"].sel(scorer=s, metric=m)),
                             "ci": [r(one["lo"].sel(scorer=s, metric=m)), r(one["hi"].sel(scorer=s, metric=m))]}
                         for m in METRICS} for s in ds.scorer.values}}
            if np.isfinite(one["vs_probe"].values).any():
                row["verifier_minus_probe"] = {m: {"value": r(one["vs_probe"].sel(metric=m)),
                                                   "ci": [r(one["vs_probe_lo"].sel(metric=m)),
                                                          r(one["vs_probe_hi"].sel(metric=m))]}
                                               for m in METRICS}
            rows.append(row)
        return {"steps": rows, "selected_by": self.selected_by, **ds.attrs}


def verdict_by_step(train: xr.Dataset, test: xr.Dataset, steps=None, layers=None, *, llm=None, tokenizer=None,
                    cfg: VerifierTrainConfig | None = None, token_grid: int | None = 4, n: int = 4, n_boot: int = 300,
                    seed: int = 0, val_fraction: float = 0.2) -> StepVerdicts:
    """Probe (and, with `llm` and `tokenizer`, a verifier trained with `cfg`) per step (module docstring)."""
    train, test = check_store(train, steps=True), check_store(test, steps=True)
    if "step" not in train.dims or "step" not in test.dims:
        raise ProbeError("verdicts by noise level need multi-step stores (a `step` dim); extract them with --steps")
    check_disjoint(train["meaning"].values, test["meaning"].values)
    have = [int(s) for s in train.step.values if int(s) in {int(v) for v in test.step.values}]
    steps = have if steps is None else [int(s) for s in steps]
    layers = [int(v) for v in train.layer.values] if layers is None else [int(v) for v in layers]
    if [s for s in steps if s not in have] or not steps:
        raise ProbeError(f"steps {steps}: not in both stores; both hold steps {have}")
    if (llm is None) != (tokenizer is None):
        raise ProbeError("a verifier per step needs both llm and tokenizer (or neither: probes only)")
    cfg = cfg or VerifierTrainConfig(steps=60, eval_every=20, align_steps=0, seed=seed, val_fraction=val_fraction)
    scorers = ["probe"] + (["verifier"] if llm is not None else [])
    cube = np.full((len(scorers), len(steps), len(METRICS), 3), np.nan)
    diff = np.full((len(steps), len(METRICS), 3), np.nan)
    blocks, records = [], {}
    for si, step in enumerate(steps):
        tr, te = (step_view(d, step) for d in (train, test))
        site, records[str(step)], probe = _best_block(tr, te, layers, seed, val_fraction)
        blocks.append(Site.parse(site).index)
        y, rows = candidate_rows(te)
        scores = {"probe": probe}
        if llm is not None:
            verifier, _ = train_verifier(tr, site, llm, tokenizer, cfg, token_grid=token_grid, progress=False)
            scores["verifier"] = score_store(verifier, te)
        got = evaluate_scores(y, scores, n=n, n_boot=n_boot, seed=seed, reference="probe" if llm is not None else None,
                              **rows)
        for k, scorer in enumerate(scorers):
            cube[k, si] = [[got["models"][scorer][m]["value"], *got["models"][scorer][m]["ci"]] for m in METRICS]
        if llm is not None:
            diff[si] = [[got["difference"][m]["value"], *got["difference"][m]["ci"]] for m in METRICS]
    sigma = np.asarray(train["sigma"].sel(step=steps).values, float) if "sigma" in train.coords else np.full(len(steps), np.nan)
    dims = ("scorer", "step", "metric")
    ds = xr.Dataset({"value": (dims, cube[..., 0]), "lo": (dims, cube[..., 1]), "hi": (dims, cube[..., 2]),
                     "vs_probe": (dims[1:], diff[..., 0]), "vs_probe_lo": (dims[1:], diff[..., 1]),
                     "vs_probe_hi": (dims[1:], diff[..., 2]), "block": ("step", np.array(blocks, np.int64))},
                    coords={"scorer": scorers, "step": steps, "sigma": ("step", sigma), "metric": list(METRICS)},
                    attrs={"best_of": n, "n_boot": n_boot, "n_test": int(test.sizes["sample"]), "note": "value/lo/hi: test metric and 95% interval over "
                           "meanings; gain: Best-of-n minus the mean verdict of a prompt's candidates (paired); vs_probe: "
                           "verifier - probe (paired); the block per step chosen on the train store's validation split"})
    return StepVerdicts(ds, records)
