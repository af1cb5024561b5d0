"""(step x block) probe maps on planted multi-step stores: a signal planted at one (step, block) cell is
found there and nowhere else, and it is the earliest decodable cell; store pairs sharing a meaning are refused."""

import json

import numpy as np
import pytest
import torch
import xarray as xr
from helpers.cli import vhslab
from helpers.tiny_models import tiny_llm

from vhslab.figures import plot_auroc_vs_sigma
from vhslab.probes import ProbeError, probe_grid
from vhslab.testing import planted_steps_store
from vhslab.verifier import VerifierTrainConfig, verdict_by_step
from vhslab.world.text import build_word_tokenizer

torch.set_num_threads(1)
CELL = dict(step=4, layer=2)  # planted: step 4 (sigma 0.5), block 2


@pytest.fixture(scope="module")
def pair():
    train = planted_steps_store(signal_step=CELL["step"], signal_layer=CELL["layer"], seed=0)
    test = planted_steps_store(signal_step=CELL["step"], signal_layer=CELL["layer"], seed=1,
                               exclude_meanings=train["meaning"].values)
    return train, test


@pytest.fixture(scope="module")
def res(pair):
    return probe_grid(*pair, targets=("verdict", "colour", "count", "recon"), n_boot=300)


def test_planted_cell_is_found_there_and_only_there(res):
    for target in ("verdict", "found_color.0", "recon.latent"):
        one = res.ds.sel(target=target)
        dec = one["decodable"]
        assert bool(dec.sel(**CELL)), target
        assert int(dec.sum()) == 1, (target, dec.values)
        assert res.earliest[target]["step"] == CELL["step"] and res.earliest[target]["layer"] == CELL["layer"]
        assert res.earliest[target]["site"] == "block.2@step4" and res.earliest[target]["sigma"] == 0.5
        gap = one["gap"].sel(**CELL)
        assert one["gap_ci_low"].sel(**CELL) > 0 and gap == np.nanmax(one["gap"].values)
    # the verdict does not depend on the prompt: the prompt-only baseline ranks the candidates of a prompt at chance
    assert res.ds["baseline"].sel(target="verdict") == 0.5
    # counts carry no planted signal: nowhere decodable above the prompt-only baseline
    assert res.earliest["found_count.0"] is None and not res.ds["decodable"].sel(target="found_count.0").any()


def test_result_shapes_and_json(res):
    ds = res.ds
    assert ds["gap"].dims == ("target", "step", "layer")
    assert list(ds.step.values) == [0, 2, 4, 6] and np.allclose(ds.sigma.values, [1.0, 0.75, 0.5, 0.25])
    assert set(ds.metric.values) == {"auroc_within", "auroc", "r2"}
    out = json.loads(json.dumps(res.to_json()))
    v = out["targets"]["verdict"]
    assert v["metric"] == "auroc_within" and v["earliest_decodable"]["site"] == "block.2@step4"
    assert len(v["gap"]) == 4 and len(v["gap"][0]) == 4 and v["decodable"][2][2] is True


def test_stores_sharing_a_meaning_are_refused(pair):
    train, _ = pair
    again = planted_steps_store(signal_step=4, signal_layer=2, seed=0)  # same prompts: same meanings
    with pytest.raises(ProbeError, match=r"share \d+ prompt meaning"):
        probe_grid(train, again, targets=("verdict",), n_boot=100)


def test_bad_steps_and_one_step_stores_are_refused(pair):
    with pytest.raises(ProbeError, match="--steps"):
        probe_grid(*pair, targets=("verdict",), steps=[1], n_boot=100)
    with pytest.raises(ProbeError, match="multi-step"):
        probe_grid(pair[0].isel(step=0, drop=True), pair[1], targets=("verdict",), n_boot=100)


def test_figures_write_files(res, tmp_path):
    fig = res.plot()
    for ext in ("png", "pdf"):
        fig.savefig(tmp_path / f"maps.{ext}")
        assert (tmp_path / f"maps.{ext}").stat().st_size > 1000
    curve = {"sigma": [1.0, 0.5, 0.25], "value": [0.5, 0.8, 0.9], "ci": [[0.4, 0.6], [0.7, 0.9], [0.85, 0.95]]}
    fig = plot_auroc_vs_sigma({"probe": curve, "verifier": curve})
    fig.savefig(tmp_path / "sigma.png")
    assert (tmp_path / "sigma.png").stat().st_size > 1000


def test_cli_probe_grid(pair, tmp_path):
    paths = [tmp_path / "train.zarr", tmp_path / "test.zarr"]
    for ds, path in zip(pair, paths, strict=True):
        ds.to_zarr(path, consolidated=False)
    done = vhslab("probe-grid", "--train", paths[0], "--test", paths[1], "--targets", "verdict", "--layers", "1,2",
                  "--n-boot", "200", "--plot", tmp_path / "maps", "--verdict-steps", "2,4", "--out", tmp_path / "grid.nc",
                  "--no-progress", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["targets"]["verdict"]["earliest_decodable"]["site"] == "block.2@step4" and out["layers"] == [1, 2]
    assert (tmp_path / "maps.png").is_file() and (tmp_path / "maps.pdf").is_file()
    assert (tmp_path / "maps_sigma.png").is_file() and (tmp_path / "maps_sigma.pdf").is_file()
    with xr.open_dataset(tmp_path / "grid.nc") as saved:  # the maps, saved for figures without recomputing
        gap = saved["gap"].sel(target="verdict", step=4, layer=2).item()
        assert gap == pytest.approx(out["targets"]["verdict"]["gap"][2][1], abs=1e-4)
    with xr.open_dataset(tmp_path / "grid_sigma.nc") as sigma:
        assert list(sigma.step.values) == [2, 4]
    by_step = out["verdict_by_step"]["steps"]
    assert [r["step"] for r in by_step] == [2, 4] and by_step[1]["probe"]["within_prompt_auroc"]["ci"][0] > 0.8
    shared = vhslab("probe-grid", "--train", paths[0], "--test", paths[0], "--no-progress")
    assert shared.returncode == 2 and "share" in shared.stderr


def test_verdicts_by_noise_level(pair, tmp_path):
    """The probe's block is chosen on the train store; at the planted step the probe and a verifier (tiny LLM,
    few steps) rank candidates and Best-of-4 gains; at a step without signal, neither does."""
    cfg = VerifierTrainConfig(steps=40, eval_every=20, align_steps=0)
    res = verdict_by_step(*pair, steps=[2, 4], llm=tiny_llm(), tokenizer=build_word_tokenizer(), cfg=cfg,
                          token_grid=None, n_boot=200)
    ds = res.ds
    assert int(ds["block"].sel(step=4)) == 2 and res.selected_by["4"]["chosen"] == "block.2"
    for scorer in ("probe", "verifier"):
        at = ds.sel(scorer=scorer)
        assert float(at["lo"].sel(step=4, metric="within_prompt_auroc")) > 0.8, scorer
        assert float(at["lo"].sel(step=4, metric="gain")) > 0.1, scorer  # Bo4 - mean verdict, paired interval
        assert float(at["lo"].sel(step=2, metric="within_prompt_auroc")) < 0.5 < float(at["hi"].sel(step=2, metric="within_prompt_auroc"))
    assert list(ds.sigma.values) == [0.75, 0.5]
    row = json.loads(json.dumps(res.to_json()))["steps"][1]
    assert row["step"] == 4 and "verifier_minus_probe" in row
    fig = plot_auroc_vs_sigma(res.curves())
    fig.savefig(tmp_path / "sigma.pdf")
    assert (tmp_path / "sigma.pdf").stat().st_size > 1000
