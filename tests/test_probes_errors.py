"""Bad input gets clear errors; the `vhslab probe` command."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vhslab.probes import ProbeError, open_store, run_sweep
from vhslab.probes.data import StoreDamaged
from vhslab.testing import planted_store

torch.set_num_threads(1)


@pytest.fixture
def ds():
    return planted_store(n_samples=120, n_layers=3, n_tokens=4, n_channels=8, signal_layer=1, seed=5).compute()


def sweep(ds, **kw):
    kw.setdefault("targets", ["verdict"])
    return run_sweep(ds, probes=kw.pop("probes", ["linear"]), n_boot=0, progress=False, **kw)


def test_unknown_target_and_probe(ds):
    with pytest.raises(ProbeError, match=r"unknown target 'colr'.*known targets: verdict"):
        sweep(ds, targets=["colr"])
    with pytest.raises(ProbeError, match=r"unknown probe\(s\) \['svm'\]"):
        sweep(ds, probes=["svm"])
    with pytest.raises(ProbeError, match=r"items 0..1"):
        sweep(ds, targets=["color.2"])


def test_missing_layer_and_site(ds):
    with pytest.raises(ProbeError, match=r"layer\(s\) \[7\] not in the store; it has layers \[0, 1, 2\]"):
        sweep(ds, layers=[0, 7])
    with pytest.raises(ProbeError, match="site 'vision' not in the store"):
        sweep(ds, extra_sites=("vision",))


def test_nan_features_name_the_site(ds):
    hidden = ds["hidden"].values.copy()
    hidden[5, 2, :, 0] = np.nan
    ds["hidden"] = (ds["hidden"].dims, hidden)
    with pytest.raises(StoreDamaged, match=r"1 sample\(s\) have NaN/inf features at site block.2 \(sample_id e.g. \[5\]"):
        sweep(ds)


def test_store_missing_a_variable(ds):
    with pytest.raises(ProbeError, match="found_color"):
        sweep(ds.drop_vars("found_color"), targets=["color"])
    # a store made without the ae_latent site is valid, but cannot give a recon target
    no_ae = ds.drop_vars("ae_latent").assign_attrs(sites=",".join(f"block.{i}" for i in range(3)))
    with pytest.raises(ProbeError, match="target 'recon' needs variable 'ae_latent' or 'image'"):
        sweep(no_ae, targets=["recon"])
    with pytest.raises(ProbeError, match=r"'recon.image' needs variable\(s\) \['image'\]"):
        sweep(ds, targets=["recon.image"])


def test_too_few_prompts_or_no_usable_labels(ds):
    with pytest.raises(ProbeError, match=r"only \d+ distinct prompt meanings; cannot make 40 meaning-disjoint folds"):
        sweep(ds, k=40)
    one_class = ds.assign(verdict=("sample", np.ones(ds.sizes["sample"], np.int8)))
    with pytest.raises(ProbeError, match="single class"):
        sweep(one_class)
    no_rel = ds.assign(found_relation=(ds["found_relation"].dims, np.full(ds["found_relation"].shape, "", object)))
    with pytest.raises(ProbeError, match="target 'position' has no usable samples"):
        sweep(no_rel, targets=["position"])
    with pytest.warns(UserWarning, match=r"target .position. has no usable samples .*; skipped"):
        res = sweep(no_rel, targets=["verdict", "position"])
    assert [str(t) for t in res.ds.target.values] == ["verdict"]


def test_open_store_errors(tmp_path):
    with pytest.raises(ProbeError, match="no store at"):
        open_store(tmp_path / "missing.zarr")


@pytest.mark.slow  # >= 15 s on 2 cores: the full suite (CI) runs it
def test_probe_command(tmp_path, ds):
    from vhslab.cli.main import app

    store = tmp_path / "ds.zarr"
    ds.to_zarr(store, consolidated=False)
    out = tmp_path / "probes.nc"
    r = CliRunner().invoke(app, ["probe", "--data", str(store), "--targets", "verdict,color,recon",
                                 "--probes", "linear,mlp", "--out", str(out), "--n-boot", "10",
                                 "--folds", "3", "--no-progress", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output.strip().splitlines()[-1])
    assert out.exists() and result["out"] == str(out)
    assert result["n_samples"] == 120 and len(result["sites"]) == 3
    rows = [r for r in result["per_site"] if r["target"] == "verdict" and r["probe"] == "linear" and r["metric"] == "auroc"]
    assert [r["site"] for r in rows] == result["sites"]  # every site, not just the best
    assert all(r["ci"][0] <= r["value"] <= r["ci"][1] for r in rows)
    verdict = result["selected"]["verdict/linear"]
    assert verdict["selected_site"] == "block.1" and verdict["selected_per_fold"] == ["block.1"] * 3
    auc = verdict["auroc"]
    assert auc["selected"]["ci"][0] <= auc["selected"]["value"] <= auc["selected"]["ci"][1]
    assert auc["gap_to_baseline"]["ci"][0] > 0  # the planted signal beats the prompt, with a paired interval
    assert verdict["source"] == "evaluator" and verdict["n_meanings"] <= verdict["n_prompts"]
    assert result["cost_aware"]["site"] == "block.1"
    assert "recon.latent" in result["targets"]

    bad = CliRunner().invoke(app, ["probe", "--data", str(store), "--targets", "nope", "--json"])
    assert bad.exit_code == 2
    assert "unknown target 'nope'" in bad.output
