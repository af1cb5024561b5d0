"""Metrics against sklearn / brute force, prompt-disjoint splits, layer selection."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, r2_score, roc_auc_score

from vhslab.probes import ProbeResults, auroc, auroc_within, balanced_accuracy, bootstrap_ci, ece, meaning_folds, r2
from vhslab.probes.metrics import METRICS
from vhslab.probes.splits import fold_of

rng = np.random.default_rng(0)


def test_auroc_matches_sklearn_with_ties():
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) + 0.3 * y, 1)  # many ties
    proba = np.stack([1 - s, s], 1)
    assert auroc(y, proba) == pytest.approx(roc_auc_score(y, s))


def test_multiclass_auroc_and_balanced_accuracy_match_sklearn():
    y = rng.integers(0, 4, 400)
    logits = rng.standard_normal((400, 4)) + 1.5 * np.eye(4)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert auroc(y, p) == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert balanced_accuracy(y, p) == pytest.approx(balanced_accuracy_score(y, p.argmax(1)))


def test_within_prompt_auroc_counts_only_same_prompt_pairs():
    y = rng.integers(0, 2, 120)
    s = rng.random(120)
    g = np.repeat(np.arange(30), 4)
    pairs = [(s[i] > s[j]) + 0.5 * (s[i] == s[j]) for i in range(120) for j in range(120)
             if g[i] == g[j] and y[i] == 1 and y[j] == 0]
    assert auroc_within(y, s, g) == pytest.approx(np.mean(pairs))
    # a per-prompt offset does not change it (it would change the global AUROC)
    assert auroc_within(y, s + 10 * g, g) == pytest.approx(np.mean(pairs))


def test_ece_and_r2():
    y = np.array([1, 1, 0, 0])
    p1 = np.array([0.95, 0.95, 0.05, 0.05])
    assert ece(y, np.stack([1 - p1, p1], 1)) == pytest.approx(0.05)
    p2 = np.full(4, 0.5)
    assert ece(y, np.stack([1 - p2, p2], 1)) == pytest.approx(0.0)  # 50% confident, 50% right
    yt = rng.standard_normal((50, 3)) * [1, 2, 3]
    yp = yt + rng.standard_normal((50, 3))
    assert r2(yt, yp) == pytest.approx(r2_score(yt, yp, multioutput="variance_weighted"))


def test_bootstrap_ci_brackets_the_estimate_and_narrows_with_data():
    def width(n):
        y = rng.integers(0, 2, n)
        s = rng.random(n) + 0.5 * y
        p = np.stack([1 - s, s], 1)
        g = np.arange(n) // 4
        ci = bootstrap_ci("binary", y, p, g, within=True, n_boot=200)
        assert ci["auroc"][0] <= auroc(y, p) <= ci["auroc"][1]
        assert ci["auroc_within"][0] <= auroc_within(y, s, g) <= ci["auroc_within"][1]
        return ci["auroc"][1] - ci["auroc"][0]

    assert width(2000) < width(200)


def test_folds_never_leak_a_prompt():
    prompts = np.repeat([f"prompt {i}" for i in range(37)], rng.integers(1, 9, 37))  # uneven repeats
    y = rng.integers(0, 2, len(prompts))
    for labels in (y, None):
        folds = meaning_folds(prompts, labels, k=5, seed=3)
        assert len(folds) == 5
        seen = np.concatenate([test for _, test in folds])
        assert sorted(seen) == list(range(len(prompts)))  # every row tested exactly once
        for train, test in folds:
            assert not set(prompts[train]) & set(prompts[test])
        f = fold_of(len(prompts), folds)
        for p in set(prompts):
            assert len(set(f[prompts == p])) == 1


def test_sweep_folds_are_prompt_disjoint_for_every_target():
    from vhslab.probes import run_sweep
    from vhslab.testing import planted_store

    ds = planted_store(n_samples=200, n_layers=1, n_tokens=4, n_channels=8, per_prompt=5, seed=4)
    res = run_sweep(ds, ["verdict", "count"], ["linear"], n_boot=0, progress=False)
    prompts = res.ds.prompt.values
    for t in res.ds.target.values:
        f = res.ds.fold_of.sel(target=t).values
        assert (f >= 0).sum() == int(res.ds.n_samples.sel(target=t))
        for p in set(prompts):
            assert len(set(f[(prompts == p) & (f >= 0)])) <= 1


def _fake_results(values, layers=(0, 1, 2, 3), num_blocks=4):
    import xarray as xr

    from vhslab.probes.metrics import METRICS

    pooled = np.full((len(layers), 1, 1, len(METRICS)), np.nan)
    pooled[:, 0, 0, 0] = values
    dims = ("site", "probe", "target", "metric")
    ds = xr.Dataset(
        {"pooled": (dims, pooled), "ci_low": (dims, pooled - 0.01), "ci_high": (dims, pooled + 0.01)},
        coords={"site": [f"block.{layer}" for layer in layers], "layer": ("site", list(layers)),
                "depth": ("site", np.array(layers) / num_blocks),
                "cost": ("site", (np.array(layers) + 1) / num_blocks),
                "probe": ["linear"], "target": ["verdict"], "metric": list(METRICS)},
    )
    return ProbeResults(ds)


def test_best_and_cost_aware_layer_choice():
    res = _fake_results([0.60, 0.795, 0.80, 0.70])
    assert res.best_layer("auroc")["layer"] == 2
    assert res.choose_layer("auroc", tolerance=0.01)["layer"] == 1  # cheaper, within 0.01 of the best
    assert res.choose_layer("auroc", tolerance=0.0)["layer"] == 2
    assert res.choose_layer("auroc", cost_weight=0.2)["layer"] == 1  # 0.795 - 0.1 beats 0.80 - 0.15
    assert res.choose_layer("auroc", cost_weight=1.0)["layer"] == 0  # cost dominates
    # measured costs: block.2 is cheap now
    pick = res.choose_layer("auroc", tolerance=0.01, costs={"block.2": 0.1})
    assert pick["layer"] == 2 and pick["cost"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown site"):
        res.choose_layer("auroc", costs={"block.9": 1.0})
    with pytest.raises(ValueError, match="unknown metric"):
        res.best_layer("accuracy")


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_weighted_bootstrap_equals_explicit_resampling(kind):
    from vhslab.probes.metrics import _weighted_scores, score_all

    n = 90
    groups = np.arange(n) // 3
    if kind == "regression":
        y = rng.standard_normal((n, 4, 2))
        pred = y + rng.standard_normal((n, 4, 2))
    else:
        c = 2 if kind == "binary" else 4
        y = rng.integers(0, c, n)
        logits = np.round(rng.standard_normal((n, c)) + np.eye(c)[y], 1)  # ties too
        pred = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for _ in range(5):
        draw = rng.integers(0, 30, 30)
        idx = np.concatenate([np.flatnonzero(groups == d) for d in draw])
        w = np.bincount(draw, minlength=30)[groups].astype(float)[None]
        fast = _weighted_scores(kind, y, pred, w)
        slow = score_all(kind, y[idx], pred[idx], groups[idx], within=False)
        for m, v in slow.items():
            assert fast[m][0] == pytest.approx(v, abs=1e-9), m


def test_targets_use_found_labels_and_skip_absent_items():
    from vhslab.probes import build_targets
    from vhslab.testing import planted_store

    ds = planted_store(n_samples=240, n_layers=1, n_tokens=4, n_channels=4, seed=6)
    tg = {t.name: t for t in build_targets(ds, ["shape", "colour", "count", "position", "present", "recon"])}
    assert {"found_class.0", "found_class.1", "found_color.0", "found_color.1", "found_count.0",
            "found_relation.1", "present.0", "recon.latent"} <= set(tg)
    assert "found_relation.0" not in tg  # item 0 never has a position
    fc = ds["found_color"].values.astype(str)
    c1 = tg["found_color.1"]
    assert (fc[c1.rows, 1] != "").all() and len(c1.rows) < 240
    assert [c1.classes[i] for i in c1.y] == list(fc[c1.rows, 1])
    # found_class is what was drawn (not the prompted class); prompt_class is the text's
    drawn = ds["found_class"].values.astype(str)
    assert [tg["found_class.0"].classes[i] for i in tg["found_class.0"].y] == list(drawn[tg["found_class.0"].rows, 0])
    pc = build_targets(ds, ["class.0"])[0]
    assert pc.name == "prompt_class.0"
    assert [pc.classes[i] for i in pc.y] == list(ds["prompt_class"].values.astype(str)[pc.rows, 0])
    assert (drawn[:, 0] != ds["prompt_class"].values.astype(str)[:, 0]).any()
    assert tg["present.0"].kind == "binary" and tg["present.0"].classes == ["no", "yes"]
    assert tg["recon.latent"].y.shape == (240, 4, 8)  # 2x2 token grid (4 tokens), 8 latent channels


def test_paired_bootstrap_resamples_meanings_and_pairs_within_prompts():
    from vhslab.probes import paired_bootstrap_ci
    from vhslab.probes.metrics import cluster_draws, replicates

    n = 160
    prompts = np.arange(n) // 4  # 40 prompts of 4 candidates
    meanings = prompts // 2  # two wordings per meaning
    y = rng.integers(0, 2, n)
    a = rng.random(n) + 0.6 * y
    b = a + 0.3 * rng.standard_normal(n)  # correlated with a: pairing narrows the interval
    pa, pb = np.stack([1 - a, a], 1), np.stack([1 - b, b], 1)
    draws = cluster_draws(meanings, 4, seed=1)
    reps = replicates("binary", y, pa, meanings, True, draws, pair_groups=prompts)
    for r, mult in enumerate(draws[0]):  # explicit resampling of whole meanings
        idx = np.concatenate([np.flatnonzero(meanings == m) for m in np.repeat(np.arange(20), mult)])
        copy = np.repeat(np.arange(20), mult)  # a meaning drawn twice gives two distinct copies of its prompts
        groups = np.concatenate([prompts[meanings == m] * 100 + c for c, m in enumerate(copy)])
        assert reps["auroc"][r] == pytest.approx(auroc(y[idx], pa[idx]))
        assert reps["auroc_within"][r] == pytest.approx(auroc_within(y[idx], a[idx], groups))
    paired = paired_bootstrap_ci("binary", y, pa, pb, meanings, True, n_boot=300, pair_groups=prompts)
    same = cluster_draws(meanings, 300)  # paired: A and B on the very same draws
    ra, rb = (replicates("binary", y, p, meanings, True, same, pair_groups=prompts) for p in (pa, pb))
    for m in ("auroc", "auroc_within"):
        d = ra[m] - rb[m]
        assert paired[m] == pytest.approx((np.percentile(d, 2.5), np.percentile(d, 97.5)))
    diff = auroc(y, pa) - auroc(y, pb)
    assert paired["auroc"][0] <= diff <= paired["auroc"][1]
    ia, ib = (bootstrap_ci("binary", y, p, meanings, True, n_boot=300) for p in (pa, pb))
    assert paired["auroc"][1] - paired["auroc"][0] < (ia["auroc"][1] - ia["auroc"][0]) + (ib["auroc"][1] - ib["auroc"][0])


def test_sweep_bootstrap_pairs_candidates_within_a_prompt_not_a_meaning():
    from vhslab.probes.sweep import _Scorer
    from vhslab.probes.targets import Target

    prompts = np.arange(200) // 5
    meanings = prompts // 2  # two wordings per meaning
    y = np.tile([0, 1, 0, 1, 1], 40)
    s = 0.2 * y + rng.random(200) + 5.0 * (prompts % 2)  # the second wording scores far higher
    t = Target("verdict", "binary", np.arange(200), y, ["0", "1"])
    scorer = _Scorer(t, prompts, meanings, [(np.arange(100), np.arange(100, 200))], n_boot=200, seed=0)
    _, pooled, reps = scorer.all(np.stack([1 - s, s], 1))
    point = pooled[list(METRICS).index("auroc_within")]
    assert point == pytest.approx(auroc_within(y, s, prompts))
    assert abs(np.mean(reps["auroc_within"]) - point) < 0.03  # pairs across wordings would drag it to ~0.5


def test_within_prompt_linear_learns_the_order_inside_a_prompt_not_the_prompt_prior():
    from vhslab.probes.metrics import auroc_within
    from vhslab.probes.models import WithinPromptLinear, make_probe

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(120), 8)
    rate = rng.uniform(0.1, 0.9, 120)[groups]  # the prompt's prior: channel 0 says how hard the prompt is
    y = (rng.uniform(size=len(groups)) < rate).astype(int)
    X = rng.normal(size=(len(groups), 6))
    X[:, 0] += 4 * rate  # strong, shared by every candidate of a prompt
    X[:, 1] += 0.8 * y  # weak, what separates candidates of one prompt
    X[:, 2] += 4 * rate * (2 * y - 1) * 0.3  # helps across prompts only through the prior's scale
    fitted = WithinPromptLinear(C=1.0).fit(X, y, groups=groups)
    plain = make_probe("linear", True).fit(X, y)
    coef = fitted.head_.coef_[0]
    assert abs(coef[1]) > 2 * abs(coef[0])  # the prior's channel carries nothing within a prompt
    test_groups = groups + 1000
    shifted = X + rng.normal(size=(120, 6))[groups]  # a constant per prompt moves no order inside it
    s = fitted.predict_proba(X)[:, 1]
    assert np.allclose(np.argsort(s[:8]), np.argsort(fitted.predict_proba(shifted)[:8, 1]))
    assert auroc_within(y, s, test_groups) >= auroc_within(y, plain.predict_proba(X)[:, 1], test_groups) - 0.01
