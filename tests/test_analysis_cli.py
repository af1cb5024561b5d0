"""`vhslab attribute | patch | geometry` end to end on a small store of the world, and their errors."""

import json

import pytest
from helpers.cli import vhslab as vhslab_cli

import vhslab
from vhslab.data.extract import extract
from vhslab.shapes.suites import load_suite


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    world = vhslab.load_world()
    suite = load_suite("geneval-shapes")
    prompts = [s for s in suite if s.tag in ("two_object", "counting")][:6]
    path = tmp_path_factory.mktemp("cli") / "small.zarr"
    extract(world.pipeline, prompts, path, n_per_prompt=4, sites="block.0,block.10,ae_latent", seed=1,
            gen=world.gen_config, vision=world.vision, model_id="world", progress=False)
    return path


def _run(*args):
    r = vhslab_cli(*args)
    return r, (json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None)


@pytest.mark.slow  # two CLI runs of the studies: about 16 s
def test_attribute_and_geometry_commands(store, tmp_path):
    r, res = _run("attribute", "--data", str(store), "--n", "4", "--n-steps", "4", "--plot", str(tmp_path / "a.png"),
                  "--out", str(tmp_path / "a.nc"), "--json")
    assert r.returncode == 0, r.stderr[-1500:]
    assert res["n"] == 4 and set(res["deletion"]) == {"0.1", "0.2", "0.3", "0.5"} and "randomisation_rank_corr" in res
    checks = {"deletion", "deletion_road", "insertion", "insertion_road", "pointing", "randomisation"}
    assert set(res["checks"]) == checks
    for check in checks:
        maps = res["checks"][check]["maps"]
        assert set(maps) == {"ig", "ablation", "token_norm", "random", "randomised_ig"}
        assert maps["ig"]["label"] in ("passed", "failed", "uninformative") and "vs_token_norm" in maps["ig"]
    assert (tmp_path / "a.png").stat().st_size > 5000 and (tmp_path / "a.nc").is_file()
    r, res = _run("geometry", "--data", str(store), "--n", "20", "--no-umap", "--plot", str(tmp_path / "g.png"), "--json")
    assert r.returncode == 0, r.stderr[-1500:]
    assert res["sites"] == ["block.0", "block.10", "ae_latent"] and res["cka"]["block.0"]["block.0"] == 1.0
    lo, hi = res["cka_ci"]["block.0"]["block.10"]
    assert lo <= res["cka"]["block.0"]["block.10"] <= hi
    rnd = res["random_dit"]
    assert rnd["n"] == 20 and set(rnd["cka_random_dit"]) == {"block.0", "block.10"}
    assert "cka_minus_random_ci" in rnd and "block.0" in rnd["cka_minus_random"]


def test_patch_command(store, tmp_path):
    r, res = _run("patch", "--data", str(store), "--pairs", "2", "--blocks", "0,10", "--no-steer",
                  "--plot", str(tmp_path / "p.png"), "--json")
    assert r.returncode == 0, r.stderr[-1500:]
    assert set(res["flip"]) == {"0", "10"} and set(res["flip"]["0"]) == {"all", "q00", "q01", "q10", "q11"}
    assert set(res["flip_control"]) == {"0", "10"} and set(res["quadrant_flip_minus_control"]) == {"0", "10"}


def test_analysis_commands_refuse_bad_input(store, tmp_path):
    (tmp_path / "x.png").write_bytes(b"x")
    cases = [(["attribute", "--data", str(store), "--n", "999"], "n must be in 1-24"),
             (["attribute", "--data", str(store), "--plot", str(tmp_path / "x.png")], "--overwrite"),
             (["patch", "--data", str(store), "--blocks", "0,12", "--no-steer"], "blocks 0-11"),
             (["patch", "--data", str(store), "--blocks", "a", "--no-steer"], "comma list"),
             (["geometry", "--data", str(store), "--sites", "block.3"], "not in the store"),
             (["geometry", "--data", str(store), "--label", "mood"], "unknown label")]
    for args, match in cases:
        r = vhslab_cli(*args)
        assert r.returncode == 2 and match in r.stderr and "Traceback" not in r.stderr, (args, r.stderr[-800:])
