"""Probe sweeps on planted stores: the probes find planted signals where (and only where) they are."""

import numpy as np
import pytest
import torch

from vhslab.probes import ProbeResults, open_store, run_sweep
from vhslab.testing import planted_store

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("probe") / "planted.zarr"
    planted_store(n_samples=480, n_layers=6, n_tokens=16, n_channels=32, signal_layer=3, seed=1).to_zarr(
        path, consolidated=False
    )
    return path


@pytest.fixture(scope="module")
def res(store):
    ds = open_store(store)
    return run_sweep(ds, ["verdict", "color.0", "recon"], ["linear"], n_boot=30, progress=False)


def test_linear_probe_finds_the_planted_layer(res):
    auroc = res.curve("auroc", "verdict", "linear").values
    assert auroc[3] >= 0.95
    assert np.all(np.delete(auroc, 3) <= 0.6)
    within = res.curve("auroc_within", "verdict", "linear").values
    assert within[3] >= 0.95 and np.all(np.delete(within, 3) <= 0.65)
    best = res.best_layer("auroc", "verdict")
    assert best["layer"] == 3 and best["ci"][0] <= best["value"] <= best["ci"][1]
    assert best["ci"][0] > 0.9


def test_colour_and_reconstruction_trajectory(res):
    color = res.curve("auroc", "color.0").values
    assert color[3] >= 0.95 and np.all(np.delete(color, 3) <= 0.6)
    r2 = res.curve("r2", "recon.latent").values
    assert r2[-1] >= 0.8 and np.all(r2[:-1] <= 0.05)
    assert np.isnan(res.curve("auroc", "recon.latent").values).all()  # metrics that do not apply are NaN


def test_prompt_baseline_is_chance_on_planted_verdict(res):
    base = float(res.ds.baseline_pooled.sel(probe="linear", target="verdict", metric="auroc"))
    assert 0.35 <= base <= 0.65
    assert res.ds.score.sizes["fold"] == 5
    assert set(res.ds.kind.values) == {"binary", "multiclass", "regression"}


def test_prompt_only_signal_is_caught_by_baseline_and_not_by_within_auroc():
    ds = planted_store(n_samples=240, n_layers=2, n_tokens=4, n_channels=8, signal_layer=9, seed=2)
    ds["verdict"] = ("sample", (ds["tag"].values.astype(str) == "counting").astype(np.int8))
    res = run_sweep(ds, ["verdict"], ["linear"], n_boot=0, progress=False)
    assert float(res.ds.baseline_pooled.sel(probe="linear", target="verdict", metric="auroc")) >= 0.99
    # every candidate of a prompt shares the label: no within-prompt pair exists
    assert np.isnan(float(res.ds.baseline_pooled.sel(probe="linear", target="verdict", metric="auroc_within")))


@pytest.mark.slow  # >= 15 s on 2 cores: the full suite (CI) runs it
def test_mlp_probe_and_extra_site(store):
    ds = open_store(store)
    res = run_sweep(ds, ["verdict", "recon"], ["mlp", "attn"], layers=[1, 3], extra_sites=("ae_latent",), n_boot=0,
                    baseline=False, progress=False)
    assert list(res.ds.site.values) == ["block.1", "block.3", "ae_latent"]
    for probe in ("mlp", "attn"):
        auroc = res.curve("auroc", "verdict", probe)
        assert float(auroc.sel(site="block.3")) >= 0.9 and float(auroc.sel(site="block.1")) <= 0.65
    # the output latent is its own target: never probed, never selected
    assert np.isnan(res.curve("r2", "recon.latent", "mlp").sel(site="ae_latent"))
    assert "ae_latent" not in set(res.ds.selected_site.sel(target="recon.latent", probe="mlp").values)
    assert float(res.curve("r2", "recon.latent", "mlp").sel(site="block.3")) <= 0.05
    assert np.isnan(res.curve("r2", "recon.latent", "attn").values).all()  # attn: classification only
    assert np.allclose(res.ds.cost.values, [2 / 6, 4 / 6, 1.0])
    assert np.isnan(res.ds.baseline_pooled.values).all()


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_results_round_trip(res, tmp_path, suffix):
    path = res.save(tmp_path / f"probes{suffix}")
    back = ProbeResults.load(path)
    np.testing.assert_allclose(back.ds.score.values, res.ds.score.values)
    assert list(back.ds.target.values) == list(res.ds.target.values)
    assert back.best_layer("auroc", "verdict")["site"] == "block.3"


def test_plot_has_a_panel_per_metric(res):
    fig = res.plot()
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert set(panels) == {"AUROC (pooled)", "within-prompt AUROC", "R² (held out)"}
    assert len(panels["AUROC (pooled)"].get_lines()) >= 2  # a curve per target (+ baselines)
    fig2 = res.plot(metrics=["bal_acc"], targets=["verdict"])
    assert [ax.get_title() for ax in fig2.axes if ax.get_title()] == ["bal_acc"]


def test_folds_and_bootstrap_keep_each_meaning_together():
    from vhslab.shapes.prompts import Item, PromptSpec

    ds = planted_store(n_samples=360, n_layers=2, n_tokens=4, n_channels=8, per_prompt=3, signal_layer=1, seed=3)
    # make every other prompt a rewording of the one before: same meaning, other text
    texts, means = [], []
    for p in range(ds.sizes["sample"] // 3):
        a, b = ("cube", f"shape{p // 2}") if p % 2 == 0 else (f"shape{p // 2}", "cube")
        s = PromptSpec("two_object", f"a {a} and a {b}", (Item(a), Item(b)))
        texts += [s.prompt] * 3
        means += [s.meaning] * 3
    ds = ds.assign_coords(prompt=("sample", np.array(texts, object)), meaning=("sample", np.array(means, object)))
    assert len(set(texts)) == 2 * len(set(means))
    res = run_sweep(ds, ["verdict", "found_count"], ["linear"], n_boot=20, progress=False)
    for t in res.ds.target.values:
        fold = res.ds.fold_of.sel(target=t).values
        for m in set(means):
            rows = (np.array(means) == m) & (fold >= 0)
            assert len(set(fold[rows])) <= 1, m  # both wordings in the same fold
    assert int(res.ds.n_meanings.sel(target="verdict")) == len(set(means))


def test_ordered_baseline_tells_colour_attribution_apart():
    """Verdict = "the first object is red": a bag of words cannot tell "a red cube and a blue cone"
    from "a blue cube and a red cone"; the baseline on the ordered structure can."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    ds = planted_store(n_samples=6000, n_layers=1, n_tokens=4, n_channels=8, per_prompt=2, signal_layer=9, seed=5)
    colors = ds["prompt_color"].values.astype(str)
    red = (colors[:, 0] == "red") != (colors[:, 1] == "red")  # red in exactly one slot
    keep = np.flatnonzero((ds["tag"].values.astype(str) == "color_attr") & red)
    ds = ds.isel(sample=keep)
    y = (ds["prompt_color"].values.astype(str)[:, 0] == "red").astype(np.int8)
    ds["verdict"] = ("sample", y)
    # the mirrored prompt (same words, colours swapped) exists for a bag of words to confuse
    res = run_sweep(ds, ["verdict"], ["linear", "mlp"], k=3, n_boot=0, progress=False, select=False)
    for probe in ("linear", "mlp"):
        assert float(res.ds.baseline_pooled.sel(probe=probe, target="verdict", metric="auroc")) >= 0.97
    words = CountVectorizer(binary=True).fit_transform(ds["prompt"].values.astype(str))
    bag = cross_val_predict(LogisticRegression(), words, y, cv=3, method="predict_proba")[:, 1]
    from vhslab.probes import auroc

    assert auroc(y, np.stack([1 - bag, bag], 1)) < 0.75  # the word-order information the old baseline lacked


def test_selected_site_is_not_optimistic_on_noise():
    """No signal anywhere: the maximum over sites flatters, the site chosen by inner CV does not."""
    ds = planted_store(n_samples=400, n_layers=8, n_tokens=4, n_channels=16, per_prompt=4, signal_layer=99, seed=8)
    res = run_sweep(ds, ["verdict"], ["linear"], k=5, n_boot=200, progress=False)
    pooled = res.curve("auroc", "verdict").values
    sel = res.ds.sel(probe="linear", target="verdict", metric="auroc")
    assert pooled.max() > float(sel.selected)  # the optimistic pick is higher than the honest one
    assert float(sel.selected_ci_low) < 0.5 < float(sel.selected_ci_high)
    assert float(sel.selected_gap_ci_low) < 0 < float(sel.selected_gap_ci_high)
    assert set(res.ds.selected_site.sel(probe="linear", target="verdict").values) <= set(res.ds.site.values)


def test_selection_finds_the_planted_block_and_scores_it_out_of_sample(res):
    sel = res.ds.sel(probe="linear", target="verdict")
    assert list(sel.selected_site.values) == ["block.3"] * 5
    # with the same site in every fold, the selected predictions are block 3's own
    assert float(sel.selected.sel(metric="auroc")) == pytest.approx(float(res.curve("auroc", "verdict").sel(site="block.3")))
    lo, hi = float(sel.gap_ci_low.sel(site="block.3", metric="auroc")), float(sel.gap_ci_high.sel(site="block.3", metric="auroc"))
    assert 0.3 < lo <= hi  # paired interval of probe minus baseline at the planted block
    lo1 = float(sel.gap_ci_low.sel(site="block.1", metric="auroc"))
    assert lo1 < 0.1  # nothing planted at block 1: no clear gap


def test_summary_names_the_most_chosen_site_and_breaks_ties_by_fold_order(res):
    ds = res.ds.copy(deep=True)
    key = dict(probe="linear", target="verdict")
    for folds, expected in ((["block.4", "block.2", "block.2", "block.4", "block.1"], "block.4"),
                            (["block.5", "block.1", "block.4", "block.2", "block.3"], "block.5"),
                            (["block.1", "block.3", "block.3", "block.0", "block.3"], "block.3")):
        ds["selected_site"].loc[key] = np.array(folds, dtype=object)
        row = type(res)(ds).summary()["verdict/linear"]
        assert row["selected_site"] == expected and row["selected_per_fold"] == folds
