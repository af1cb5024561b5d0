"""vhslab.stats: the one bootstrap every interval of the package comes from."""

from __future__ import annotations

import numpy as np

from vhslab.stats import cluster_draws, interval, mean_ci, meaning_draws, paired_interval, row_draws, row_weights


def test_interval_is_the_percentile_interval_of_the_finite_replicates():
    assert np.allclose(interval(np.arange(101)), [2.5, 97.5])
    assert interval(np.r_[np.arange(101), np.nan, np.inf]) == interval(np.arange(101))  # non-finite replicates dropped
    assert interval(np.arange(101), level=0.5) == [25.0, 75.0]
    assert np.isnan(interval([np.nan, np.nan])).all()


def test_cluster_draws_resample_clusters_not_rows():
    clusters = np.array(["b", "a", "c", "a", "b", "b", "d"])
    mult, g = cluster_draws(clusters, 50, seed=1)
    assert mult.shape == (50, 4) and (mult.sum(1) == 4).all()  # 4 distinct clusters drawn 4 times each
    w = row_weights((mult, g))
    for c in np.unique(clusters):  # every row of a cluster carries its cluster's multiplicity
        rows = clusters == c
        assert (w[:, rows] == w[:, rows][:, :1]).all()
    assert w.sum(1).std() > 0  # rows are not resampled one by one: the number of rows drawn varies
    again, _ = cluster_draws(clusters, 50, seed=1)
    assert (again == mult).all() and not (cluster_draws(clusters, 50, seed=2)[0] == mult).all()


def test_meaning_draws_keep_each_tags_number_of_meanings():
    tags = np.array(["x"] * 6 + ["y"] * 3)
    meanings = np.array(["m1", "m1", "m2", "m3", "m3", "m3", "n1", "n2", "n2"])
    w = meaning_draws(tags, meanings, 200, seed=0)
    first = {m: list(meanings).index(m) for m in meanings}
    per_meaning = np.stack([w[:, first[m]] for m in ["m1", "m2", "m3"]], 1)
    assert (per_meaning.sum(1) == 3).all()  # tag x: 3 meanings drawn 3 times
    assert (w[:, first["n1"]] + w[:, first["n2"]] == 2).all()
    for m in first:
        assert (w[:, meanings == m] == w[:, [first[m]]]).all()  # rows of one meaning share their fate


def test_mean_ci_resamples_rows_with_the_seeded_draws():
    x = np.random.default_rng(3).normal(size=40)
    idx = np.random.default_rng(9).integers(0, 40, (300, 40))
    assert mean_ci(x, 300, seed=9) == interval(x[idx].mean(1))
    assert (row_draws(40, 300, seed=9) == idx).all()
    lo, hi = mean_ci(x, 2000)
    assert lo < x.mean() < hi


def test_paired_differences_cancel_what_both_share():
    rng = np.random.default_rng(0)
    clusters = np.repeat(np.arange(30), 4)
    shared = rng.normal(size=30)[clusters] * 5  # a cluster effect both statistics carry
    a, b = shared + 1 + rng.normal(size=120) * 0.1, shared + rng.normal(size=120) * 0.1
    w = row_weights(cluster_draws(clusters, 500, seed=0))
    reps_a, reps_b = (w @ a) / w.sum(1), (w @ b) / w.sum(1)
    lo, hi = paired_interval(reps_a, reps_b)
    assert lo == interval(reps_a - reps_b)[0] and 0.9 < lo < 1 < hi < 1.1  # the shared effect cancels
    a_lo, a_hi = interval(reps_a)
    b_lo, b_hi = interval(reps_b)
    assert a_lo - b_hi < 0 < a_hi - b_lo  # unpaired intervals overlap: the difference looks uncertain
