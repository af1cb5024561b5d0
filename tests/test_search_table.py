"""The budget table: its pool prefix is what best_of_n picks, its rows and intervals, the command."""

import dataclasses
import json

import numpy as np
import pytest
from helpers.cli import vhslab as vhslab_cli

import vhslab
from vhslab.search import best_of_n, load_cost_model
from vhslab.search.table import budget_table, table_summary
from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.suites import load_suite


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    world = vhslab.load_world()
    suite = load_suite("geneval-shapes")
    prompts = [suite[0], suite[40], suite[90], suite[0]]  # the last repeats the first prompt text: fresh seeds
    verifiers = {"vhs": vhslab.load_verifier(), "vision": vhslab.load_verifier(kind="vision")}
    cost = load_cost_model("sana-sprint-1.6b")
    ds = budget_table(world, verifiers, prompts, [1, 2], [cost], methods=["vhs", "vision", "none", "oracle"], seed=5,
                      workdir=tmp_path_factory.mktemp("bon"), n_boot=50, progress=False)
    return world, verifiers, prompts, ds


def test_the_pool_prefix_is_what_best_of_n_picks(table):
    world, verifiers, prompts, ds = table
    assert int(ds.sel(budget=2, verifier="vhs")["n"].item()) == 7 and int(ds.sel(budget=2, verifier="vision")["n"].item()) == 2
    assert ds.attrs["pool_size"] == 7
    ev = ShapesEvaluator()
    assert prompts[0].prompt == prompts[1].prompt == prompts[3].prompt  # GenEval repeats prompts
    for row, first in ((0, 0), (3, 14)):  # a repeated prompt's candidates continue its seed count
        res = best_of_n(world.pipeline, verifiers["vhs"], prompts[row].prompt, 7, seed=5, first=first, batch_size=4,
                        gen=world.gen_config)
        np.testing.assert_allclose(res.scores, ds["pool_score_vhs"].values[row], atol=1e-5)
        assert ev.evaluate(res.image, prompts[row]).correct == bool(ds["pool_verdict"].values[row, res.chosen])
    assert not np.allclose(ds["pool_score_vhs"].values[0], ds["pool_score_vhs"].values[3])


def test_rows_values_and_paired_differences(table):
    _world, _v, prompts, ds = table
    verdict, scores = ds["pool_verdict"].values, ds["pool_score_vhs"].values
    tags = np.array([p.tag for p in prompts])
    cell = ds.sel(cost_model="sana-sprint-1.6b", budget=2)
    picked = verdict[np.arange(4), np.argmax(scores[:, :7], 1)]
    overall = np.mean([picked[tags == t].mean() for t in np.unique(tags)])
    assert float(cell["value"].sel(verifier="vhs")) == pytest.approx(overall)
    none = np.mean([verdict[tags == t, 0].mean() for t in np.unique(tags)])
    assert float(cell["value"].sel(verifier="none")) == pytest.approx(none)
    oracle = cell["value"].sel(verifier="oracle")
    assert all(float(oracle) >= float(cell["value"].sel(verifier=m)) for m in ("vhs", "vision", "none", "noise"))
    d = cell.sel(comparison="vhs-vision")
    assert float(d["diff"]) == pytest.approx(float(cell["value"].sel(verifier="vhs") - cell["value"].sel(verifier="vision")))
    assert float(d["diff_lo"]) <= float(d["diff"]) <= float(d["diff_hi"])
    # one plain generation buys no verifier's Best-of-1 (it costs more than a plain call) ...
    one = ds.sel(budget=1)
    assert int(one["n"].sel(verifier="noise").item()) == 0 == int(one["n"].sel(verifier="vhs").item())
    assert np.isnan(float(one["value"].sel(verifier="noise").item()))
    # ... and noise search's rounds run one after another: the same budget buys it fewer candidates than Best-of-N
    assert int(cell["n"].sel(verifier="noise").item()) == 2 < int(cell["n"].sel(verifier="vhs").item())
    summary = table_summary(ds)["sana-sprint-1.6b"]["2"]
    assert summary["vhs"]["n"] == 7 and "diff vhs-vision" in summary


def test_bestofn_command_errors_before_compute(tmp_path):
    cases = [(["--verifiers", "vhs,clip"], "unknown verifiers"), (["--budgets", "0,2"], "positive"),
             (["--budgets", "a"], "comma list of numbers"), (["--cost-model", "pixart"], "no cost model"),
             (["--cost-model", "sana-sprint-1.6b", "--card", "A100"], "not A100")]
    for args, match in cases:
        r = vhslab_cli("bestofn", "--workdir", str(tmp_path), *args)
        assert r.returncode == 2 and match in r.stderr and "Traceback" not in r.stderr, (args, r.stderr[-800:])
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_bestofn_command_writes_table_and_figure(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps(r) for r in [
        {"tag": "single_object", "include": [{"class": "circle", "count": 1}], "prompt": "a photo of a circle"},
        {"tag": "colors", "include": [{"class": "square", "count": 1, "color": "red"}], "prompt": "a photo of a red square"}]))
    out, plot = tmp_path / "t.nc", tmp_path / "t.png"
    r = vhslab_cli("bestofn", "--prompts", str(prompts), "--budgets", "1,2", "--n-boot", "20",
                   "--workdir", str(tmp_path / "w"), "--out", str(out), "--plot", str(plot), "--no-progress", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(res["table"]) == {"world", "sana-sprint-1.6b"} and res["n_prompt_rows"] == 2
    cell = res["table"]["sana-sprint-1.6b"]["2"]
    assert {"vhs", "vision", "ae", "none", "oracle", "noise"} <= set(cell) and cell["vhs"]["n"] == 7
    assert out.is_file() and plot.stat().st_size > 10_000


def test_noise_search_results_are_reused_only_for_the_same_verifier(tmp_path):
    import torch

    from vhslab.search.table import run_noise_search

    world, prompts, partial = vhslab.load_world(), load_suite("geneval-shapes")[:1], tmp_path / "noise.jsonl"
    v = vhslab.load_verifier()
    args = (world, v, prompts, {2}, 4, 3, 2, 0.5, partial, False)
    first = run_noise_search(*args)
    lines = partial.read_text().splitlines()
    assert run_noise_search(*args) == first and partial.read_text().splitlines() == lines  # resumed: nothing new
    other = vhslab.load_verifier()
    with torch.no_grad():
        other.connector[2].bias.add_(1e-3)
    assert other.fingerprint() != v.fingerprint() and vhslab.load_verifier().fingerprint() == v.fingerprint()
    run_noise_search(world, other, *args[2:])
    assert len(partial.read_text().splitlines()) == len(lines) + 1  # another verifier: searched again


def test_the_default_pool_folder_is_keyed_by_content_and_another_pool_names_workdir(tmp_path, monkeypatch):
    from vhslab.data.store import StoreInputError
    from vhslab.search.table import default_workdir, pool_store

    monkeypatch.setenv("VHSLAB_CACHE", str(tmp_path / "cache"))
    world = vhslab.load_world()
    first = default_workdir(world)
    assert first.parent == tmp_path / "cache" / "bestofn" and first == default_workdir(world)
    other = dataclasses.replace(world, gen_config=dataclasses.replace(world.gen_config, guidance_scale=7.0))
    assert default_workdir(other).parent == first.parent and default_workdir(other) != first  # other settings, other folder
    prompts = load_suite("geneval-shapes")[:1]
    out = tmp_path / "pool.zarr"
    pool_store(world, prompts, 1, 0, ["block.10"], out, progress=False)
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(StoreInputError, match="--workdir"):
        pool_store(world, prompts, 1, 1, ["block.10"], out, progress=False)  # another seed: other data
    assert sorted(p.name for p in out.rglob("*")) == before
