"""Probe sweeps on planted stores: the probes find planted signals where (and only where) they are."""

import numpy as np
import pytest
import torch

from vhslab.probes import ProbeResults, open_store, planted_store, run_sweep

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
    base = float(res.ds.baseline_pooled.sel(target="verdict", metric="auroc"))
    assert 0.35 <= base <= 0.65
    assert res.ds.score.sizes["fold"] == 5
    assert set(res.ds.kind.values) == {"binary", "multiclass", "regression"}


def test_prompt_only_signal_is_caught_by_baseline_and_not_by_within_auroc():
    ds = planted_store(n_samples=240, n_layers=2, n_tokens=4, n_channels=8, signal_layer=9, seed=2)
    ds["verdict"] = ("sample", (ds["tag"].values.astype(str) == "counting").astype(np.int8))
    res = run_sweep(ds, ["verdict"], ["linear"], n_boot=0, progress=False)
    assert float(res.ds.baseline_pooled.sel(target="verdict", metric="auroc")) >= 0.99
    # every candidate of a prompt shares the label: no within-prompt pair exists
    assert np.isnan(float(res.ds.baseline_pooled.sel(target="verdict", metric="auroc_within")))


def test_mlp_probe_and_extra_site(store):
    ds = open_store(store)
    res = run_sweep(ds, ["verdict", "recon"], ["mlp", "attn"], layers=[1, 3], extra_sites=("ae_latent",), n_boot=0,
                    baseline=False, progress=False)
    assert list(res.ds.site.values) == ["block.1", "block.3", "ae_latent"]
    for probe in ("mlp", "attn"):
        auroc = res.curve("auroc", "verdict", probe)
        assert float(auroc.sel(site="block.3")) >= 0.9 and float(auroc.sel(site="block.1")) <= 0.65
    assert float(res.curve("r2", "recon.latent", "mlp").sel(site="ae_latent")) >= 0.9
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
    g = res.plot()
    assert set(g.axes_dict) == {"auroc", "auroc_within", "r2"}
    lines = g.axes_dict["auroc"].get_lines()
    assert len(lines) >= 2  # a curve per target + dashed baselines
    g2 = res.plot(metrics=["bal_acc"], targets=["verdict"])
    assert set(g2.axes_dict) == {"bal_acc"}
