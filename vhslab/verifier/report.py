"""`vhslab verifier eval` as a function: a verifier scored on a test store beside the best probe of its site,
the text-only verifier, its recipe's other runs and the linear ranker it was distilled from."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vhslab.errors import InputError
from vhslab.verifier.evaluate import evaluate_scores, recipe_report
from vhslab.verifier.load import RECIPE_RUNS, load_verifier, named_verifier, store_or_default
from vhslab.verifier.model import check_generator
from vhslab.verifier.sweep import best_probe_scores, candidate_rows, mean_states, score_store, teacher_scores
from vhslab.verifier.train import find_site


@dataclass
class VerifierEvaluation:
    """What `evaluate_verifier` found: one flat report (`to_json()`, the JSON `vhslab verifier eval --json` prints)."""

    report: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The report as plain JSON values (numbers, strings, lists, dicts)."""
        return self.report


def check_site(ds, site: str, where: str) -> None:
    """The store holds rows at `site` ('text' needs none), or an error naming the store (`where`)."""
    if site != "text":
        try:
            find_site(ds, site)
        except ValueError as err:
            raise InputError(f"{where}: no rows of the verifier's site: {err}") from None


def check_eval_stores(site: str, n: int, stores: dict) -> None:
    """Before compute: each store (keyed by `--option path`) holds rows at the verifier's site, and the
    test store's prompt rows hold at least n candidates each."""
    for where, ds in stores.items():
        if ds.sizes["sample"] == 0:
            raise InputError(f"{where}: the store holds no rows")
        check_site(ds, site, where)
    where, test = next(iter(stores.items()))
    fewest = int(np.unique(test["prompt_index"].values, return_counts=True)[1].min())
    if fewest < n:
        raise InputError(f"--n {n}: a prompt row of {where} holds only {fewest} candidates; Best-of-{n} needs {n} (lower --n)")


def recipe_runs(runs: str, verifier: str) -> list[Path]:
    """The recipe's run folders: a comma list, or (`default`) the shipped recipe's for the shipped verifier."""
    if runs == "none" or (runs == "default" and verifier != "default"):
        return []
    if runs == "default":
        return sorted(p for p in RECIPE_RUNS.iterdir() if p.is_dir()) if RECIPE_RUNS.is_dir() else []
    return [Path(p.strip()) for p in runs.split(",") if p.strip()]


def recipe(v, score, run_dirs: list[Path], test_ds, y, rows, n: int, n_boot: int) -> dict:
    """Every run of the verifier's recipe scored on the test store (the evaluated verifier's own run reuses
    its `score`): mean and spread, the rule's choice."""
    loaded = {p.name: load_verifier(p) for p in run_dirs}
    for name, run in loaded.items():
        if run.config.site != v.config.site:
            raise InputError(f"--runs {name}: a verifier of site {run.config.site}, not the evaluated one's ({v.config.site})")
    val = {name: float(run.config.extra.get("best_val_within", float("nan"))) for name, run in loaded.items()}
    shipped = next((name for name, run in loaded.items() if run.fingerprint() == v.fingerprint()), None)
    scores = {name: score if name == shipped else score_store(run, test_ds) for name, run in loaded.items()}
    report = recipe_report(scores, val, y, n=n, n_boot=n_boot, shipped=shipped, **rows)
    report["runs_dirs"] = [str(p) for p in run_dirs]
    return report


def evaluate_verifier(verifier: str = "default", test: Path | None = None, data: Path | None = None,
                      text_only: str = "default", runs: str = "default", n: int = 4, n_boot: int = 300,
                      allow_incomplete: bool = False, progress: bool = True) -> VerifierEvaluation:
    """Score a test store (default: the world's `verifier-test`): AUROC, within-prompt AUROC, balanced
    accuracy, ECE, Bo1 / Bo-n picked / oracle, each with an interval over meanings; the best probe of the
    verifier's site (fit on `data`, default `verifier-train`) beside it with the paired difference; the
    text-only verifier, the recipe's runs and the distilled linear ranker when there are. Every input is
    checked before any compute."""
    v = named_verifier(verifier)
    text = None if text_only == "none" else named_verifier(text_only, kind="text")
    test_ds = store_or_default(test, "verifier-test", progress, "--test", allow_incomplete)
    train_ds = store_or_default(data, "verifier-train", progress, allow_incomplete=allow_incomplete)
    for ds in (test_ds, train_ds):  # before any compute: states of another generator mean nothing to it
        check_generator(v, ds)
    site = v.config.site
    check_eval_stores(site, n, {f"--test {test or 'verifier-test'}": test_ds, f"--data {data or 'verifier-train'}": train_ds})
    cfg = v.config.extra.get("train", {})
    feats = None if site == "text" else mean_states(train_ds, test_ds, site)  # read once: the probe and the teacher
    probe, kind = best_probe_scores(train_ds, test_ds, site, cfg.get("seed", 0), cfg.get("val_fraction", 0.2),
                                    cfg.get("select", "within"), feats=feats)
    y, rows = candidate_rows(test_ds)
    t0 = time.perf_counter()
    score = score_store(v, test_ds)
    speed = len(y) / (time.perf_counter() - t0)
    res = evaluate_scores(y, {"verifier": score, "probe": probe}, n=n, n_boot=n_boot, reference="probe", **rows)
    ver = res["models"]["verifier"]
    out = {"verifier": verifier, "site": site, "test": str(test or "verifier-test"), "n_candidates": len(y),
           "n_prompt_rows": res["n_prompt_rows"], "n_meanings": res["n_meanings"],
           **{k: ver[k] for k in ("auroc", "within_prompt_auroc", "balanced_accuracy", "ece", "bo1")},
           f"bo{n}_verifier": ver[f"bo{n}"], f"bo{n}_oracle": ver[f"bo{n}_oracle"], "gain": ver["gain"]}
    if text is not None:
        t = evaluate_scores(y, {"text": score_store(text, test_ds)}, n=n, n_boot=n_boot, **rows)["models"]["text"]
        out.update({"text_only_auroc": t["auroc"], "text_only_within_prompt_auroc": t["within_prompt_auroc"],
                    f"text_only_bo{n}": t[f"bo{n}"]})
    out.update({"probe": {"kind": kind, **res["models"]["probe"]}, "verifier_minus_probe": res["difference"],
                "candidates_per_s": round(speed, 1)})
    run_dirs = recipe_runs(runs, verifier)
    if run_dirs:
        out["recipe"] = recipe(v, score, run_dirs, test_ds, y, rows, n, n_boot)
    if cfg.get("teacher_weight"):  # what the LLM adds to the linear ranker it was distilled from
        pair = evaluate_scores(y, {"verifier": score, "teacher": teacher_scores(train_ds, test_ds, site, cfg, feats)}, n=n,
                               n_boot=n_boot, reference="teacher", **rows)
        out.update({"teacher": {"kind": f"within-linear-C{cfg.get('teacher_c', 0.01):g}", **pair["models"]["teacher"]},
                    "verifier_minus_teacher": pair["difference"]})
    return VerifierEvaluation(out)


__all__ = ["VerifierEvaluation", "check_eval_stores", "check_site", "evaluate_verifier", "recipe", "recipe_runs"]
