"""The selection protocol: choices never see the meanings they are reported on (issue "Fair by construction")."""

import numpy as np
import pytest

from vhslab.probes.selection import by_training_validation, crossfit, deal_meanings, naive_choice, within


def planted_runs(n_runs=30, n_meanings=80, n_cand=4, seed=0):
    """Runs with no skill overall but meaning-level luck shared by dev and test: run r orders the candidates
    of meaning m right when b[r, m] > 0 and backwards when b[r, m] < 0, on the test and on the dev (other
    seeds of the same prompts) alike. Choosing on the test's meanings finds the luckiest run."""
    rng = np.random.default_rng(seed)
    meanings = np.repeat([f"m{i}" for i in range(n_meanings)], n_cand)
    tags = np.repeat(["colors" if i % 2 else "position" for i in range(n_meanings)], n_cand)
    group = np.repeat(np.arange(n_meanings), n_cand)
    luck = rng.normal(size=(n_runs, n_meanings))

    def rows():
        y = rng.integers(0, 2, len(group))
        return {"verdict": y, "group": group, "tag": tags, "meaning": meanings}

    dev, test = rows(), rows()
    runs = {}
    for r in range(n_runs):
        b = luck[r][group]
        runs[f"run{r}"] = tuple(b * (2 * d["verdict"] - 1) + rng.normal(0, 0.5, len(group)) for d in (dev, test))
    return runs, dev, test


def test_crossfit_is_not_flattered_where_choosing_on_test_meanings_is():
    naive, fair = [], []
    for seed in range(6):  # the mean over replicates: one replicate's number is noisy either way
        runs, dev, test = planted_runs(n_runs=20, n_meanings=30, n_cand=8, seed=seed)
        naive.append(within(test, runs[naive_choice(runs, dev)][1]))
        combined, record = crossfit(runs, dev, test)
        fair.append(within(test, combined))
        assert record["rule"] == "crossfit" and len(record["per_fold"]) == 2
        assert {f["chosen"] for f in record["per_fold"]} <= set(runs)
    assert np.mean(naive) > 0.6  # the luckiest run on these meanings looks good on them
    assert abs(np.mean(fair) - 0.5) < 0.05  # chosen without a row's meaning: no skill, as planted
    assert np.mean(naive) - np.mean(fair) > 0.07


def test_crossfit_keeps_a_real_difference():
    runs, dev, test = planted_runs(n_runs=3)
    y = {k: 2 * d["verdict"] - 1 for k, d in (("dev", dev), ("test", test))}
    rng = np.random.default_rng(1)
    runs["skilled"] = (3 * y["dev"] + rng.normal(size=y["dev"].size), 3 * y["test"] + rng.normal(size=y["test"].size))
    combined, record = crossfit(runs, dev, test)
    assert all(f["chosen"] == "skilled" for f in record["per_fold"]) and within(test, combined) > 0.9


def test_folds_split_each_tag_by_meaning_and_refuse_foreign_dev_meanings():
    runs, dev, test = planted_runs(n_runs=2, n_meanings=40)
    folds = deal_meanings(test["tag"], test["meaning"])
    for tag in ("colors", "position"):
        mine = {m for m, t in zip(test["meaning"], test["tag"], strict=True) if t == tag}
        assert {folds[m] for m in mine} == {0, 1} and abs(sum(folds[m] for m in mine) - len(mine) / 2) <= 1
    dev = {**dev, "meaning": np.array(["elsewhere"] * len(dev["meaning"]))}
    with pytest.raises(ValueError, match="not among the test's"):
        crossfit(runs, dev, test)


def test_training_validation_rule_records_its_candidates():
    chosen, record = by_training_validation({"seed0": 0.70, "seed1": 0.74, "seed2": 0.74})
    assert chosen == "seed1" and record["candidates"]["seed2"] == 0.74 and record["rule"] == "by_training_validation"


def test_recipe_report_gives_mean_spread_and_the_rule_choice():
    from vhslab.verifier.evaluate import recipe_report

    runs, _, test = planted_runs(n_runs=3, n_meanings=24, n_cand=4)
    rows = {"group": test["group"], "tag": test["tag"], "meaning": test["meaning"], "prompts": test["group"].astype(str)}
    scores = {name: s for name, (_, s) in runs.items()}
    val = {"run0": 0.61, "run1": 0.66, "run2": 0.64}
    rep = recipe_report(scores, val, test["verdict"], n=4, n_boot=20, shipped="run1", **rows)
    values = [rep["runs"][k]["within_prompt_auroc"]["value"] for k in scores]
    assert rep["mean_over_runs"]["within_prompt_auroc"]["mean"] == pytest.approx(np.mean(values))
    assert rep["mean_over_runs"]["within_prompt_auroc"]["sd"] == pytest.approx(np.std(values, ddof=1))
    assert rep["selected_by"]["chosen"] == "run1" and rep["shipped_is_rule_choice"]
    assert not recipe_report(scores, val, test["verdict"], n=4, n_boot=20, shipped="run0", **rows)["shipped_is_rule_choice"]
    with pytest.raises(ValueError, match=">= 3 training seeds"):
        recipe_report({"run0": scores["run0"]}, val, test["verdict"], n=4, n_boot=20, **rows)
