"""How well scores pick candidates: ranking metrics and GenEval-style Best-of-N, with intervals over meanings.

Input is one row per candidate: its prompt row (`group`, e.g. the store's `prompt_index`), tag,
meaning, the evaluator's verdict and a verifier's score. Best-of-N takes, per prompt row, the
candidate with the highest score among its first N; GenEval's overall score is the mean of tag
means. Intervals come from a bootstrap that resamples distinct meanings within each tag, and a
difference (Bo-N by the verifier minus Bo1) is paired: both on the same draws.
"""

from __future__ import annotations

import numpy as np

from vhslab.errors import InputError
from vhslab.probes.metrics import (
    auroc_binary,
    auroc_within,
    balanced_accuracy,
    bootstrap_ci,
    ece,
    paired_bootstrap_ci,
)
from vhslab.probes.selection import by_training_validation
from vhslab.shapes.evaluate import overall_score
from vhslab.stats import interval, meaning_draws

# ranking metric -> its key in vhslab.probes.metrics' bootstrap replicates
CI_NAMES = {"auroc": "auroc", "within_prompt_auroc": "auroc_within", "balanced_accuracy": "bal_acc", "ece": "ece"}


def _per_row(group, tag, meaning, verdict, score, n: int):
    """Per prompt row: tag, meaning, Bo1 (mean verdict of its first n), verifier's pick, oracle."""
    rows = []
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)[:n]
        if len(idx) < n:
            raise InputError(f"prompt row {g} has {len(idx)} candidates; Best-of-{n} needs {n}")
        pick = idx[int(np.argmax(score[idx]))]
        rows.append((tag[idx[0]], meaning[idx[0]], verdict[idx].mean(), verdict[pick], verdict[idx].max()))
    tags, meanings, bo1, chosen, oracle = (np.array(c) for c in zip(*rows, strict=True))
    return tags, meanings, {"bo1": bo1.astype(float), "verifier": chosen.astype(float), "oracle": oracle.astype(float)}


def best_of_n(group, tag, meaning, verdict, score, n: int = 4, n_boot: int = 1000, seed: int = 0) -> dict:
    """Bo1, Best-of-n picked by `score`, the oracle's Best-of-n, and gain = picked - Bo1, each
    {"value", "ci"} (95%, meanings resampled within tags; the gain's interval is paired)."""
    group, tag, meaning = (np.asarray(x) for x in (group, tag, meaning))
    verdict, score = np.asarray(verdict, float), np.asarray(score, float)
    return _summarise(*_per_row(group, tag, meaning, verdict, score, n), n, n_boot, seed)


def _summarise(tags, meanings, per: dict, n: int, n_boot: int, seed: int) -> dict:
    weights = meaning_draws(tags, meanings, n_boot, seed)  # the same draws for every row value: paired
    reps = {k: overall_score(tags, v, weights) for k, v in per.items()}
    reps["gain"] = reps["verifier"] - reps["bo1"]
    values = {k: overall_score(tags, v) for k, v in per.items()}
    values["gain"] = values["verifier"] - values["bo1"]
    out = {f"bo{n}_{k}" if k in ("verifier", "oracle") else k: {"value": values[k], "ci": interval(reps[k])} for k in values}
    out["n_prompt_rows"], out["n_meanings"] = len(tags), len(np.unique(meanings))
    return out


def ranking_metrics(verdict, score, prompts, meanings, n_boot: int = 1000, seed: int = 0) -> dict:
    """AUROC, within-prompt AUROC, balanced accuracy (threshold 0.5) and ECE of P(yes), each with a
    95% interval from a bootstrap over meanings."""
    y = np.asarray(verdict).astype(int)
    s = np.asarray(score, float)
    proba = np.stack([1 - s, s], 1)
    point = {"auroc": auroc_binary(y, s), "within_prompt_auroc": auroc_within(y, s, np.asarray(prompts)),
             "balanced_accuracy": balanced_accuracy(y, proba), "ece": ece(y, proba)}
    ci = bootstrap_ci("binary", y, proba, np.asarray(meanings), True, n_boot, seed=seed, pair_groups=np.asarray(prompts))
    return {k: {"value": v, "ci": list(ci.get(CI_NAMES[k], (np.nan, np.nan)))} for k, v in point.items()}


def evaluate_scores(verdict, scores: dict[str, np.ndarray], group, tag, meaning, prompts, n: int = 4,
                    n_boot: int = 300, reference: str | None = None, seed: int = 0) -> dict:
    """Every metric of every scorer (`{"auroc": {"value", "ci"}, ..., "bo1", f"bo{n}", f"bo{n}_oracle",
    "gain"}`) and, with `reference`, the paired difference of the other scorer minus it on the same
    meaning draws."""
    y = np.asarray(verdict).astype(int)
    if y.size == 0:
        raise InputError("no rows to evaluate: the store holds no candidate")
    group, tag, meaning = (np.asarray(x) for x in (group, tag, meaning))
    models, per_row = {}, {}
    for name, s in scores.items():
        per_row[name] = _per_row(group, tag, meaning, y.astype(float), np.asarray(s, float), n)
        bon = _summarise(*per_row[name], n, n_boot, seed)
        models[name] = {**ranking_metrics(y, s, prompts, meaning, n_boot, seed), "bo1": bon["bo1"],
                        f"bo{n}": bon[f"bo{n}_verifier"], f"bo{n}_oracle": bon[f"bo{n}_oracle"], "gain": bon["gain"]}
    out = {"models": models, "n_prompt_rows": bon["n_prompt_rows"], "n_meanings": bon["n_meanings"]}
    if reference is not None:
        (name, s), ref = next((k, v) for k, v in scores.items() if k != reference), scores[reference]
        proba = lambda p: np.stack([1 - np.asarray(p, float), np.asarray(p, float)], 1)  # noqa: E731
        ci = paired_bootstrap_ci("binary", y, proba(s), proba(ref), np.asarray(meaning), True, n_boot, seed=seed,
                                 pair_groups=np.asarray(prompts))
        diff = {k: {"value": models[name][k]["value"] - models[reference][k]["value"], "ci": list(ci.get(v, (np.nan, np.nan)))}
                for k, v in CI_NAMES.items()}
        (tags, meanings, a), (_, _, b) = per_row[name], per_row[reference]
        weights = meaning_draws(tags, meanings, n_boot, seed)
        for key, va, vb in (("bo1", a["bo1"], b["bo1"]), (f"bo{n}", a["verifier"], b["verifier"]),
                            (f"bo{n}_oracle", a["oracle"], b["oracle"]),
                            ("gain", a["verifier"] - a["bo1"], b["verifier"] - b["bo1"])):
            reps = overall_score(tags, va - vb, weights)
            diff[key] = {"value": overall_score(tags, va - vb), "ci": interval(reps)}
        out["difference"] = diff
    return out


def recipe_report(runs: dict[str, np.ndarray], val_within: dict[str, float], verdict, group, tag, meaning, prompts,
                  n: int = 4, n_boot: int = 300, shipped: str | None = None) -> dict:
    """A recipe is the unit of a claim: each training run's test within-prompt AUROC and Best-of-n gain (with
    intervals over meanings), their mean and spread over runs, and the run the fixed rule ships
    (`vhslab.probes.selection.by_training_validation`: best training-validation within-prompt AUROC, on
    meanings no evaluation store holds). `runs`: name -> test scores; `shipped`: the run actually shipped,
    checked against the rule's choice."""
    if len(runs) < 3:
        raise InputError(f"a recipe's claim rests on >= 3 training seeds; got {len(runs)} run(s)")
    per = {}
    for name, score in runs.items():
        m = evaluate_scores(verdict, {name: score}, group, tag, meaning, prompts, n=n, n_boot=n_boot)["models"][name]
        per[name] = {"within_prompt_auroc": m["within_prompt_auroc"], "gain": m["gain"], f"bo{n}": m[f"bo{n}"],
                     "auroc": m["auroc"], "val_within": val_within[name]}
    summary = {}
    for key in ("within_prompt_auroc", "gain", f"bo{n}", "auroc"):
        values = np.array([p[key]["value"] for p in per.values()])
        summary[key] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)), "min": float(values.min()),
                        "max": float(values.max())}
    chosen, record = by_training_validation(val_within)
    return {"runs": per, "n_runs": len(per), "mean_over_runs": summary, "selected_by": record,
            "shipped_run": shipped, "shipped_is_rule_choice": shipped is None or shipped == chosen}
