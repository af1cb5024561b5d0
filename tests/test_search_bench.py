"""The cost bench: stage timings and FLOPs, the cost model they make, the CLI."""

import json

import pytest
import torch
from helpers.cli import vhslab as vhslab_cli

from vhslab.search.bench import cost_model_json, count_flops, measure
from vhslab.search.costs import load_cost_model
from vhslab.search.real_size import real_size_stages


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_real_size_code_path_at_toy_sizes_measures_every_stage(dtype, tmp_path):
    stages = real_size_stages("tiny", "cpu", dtype)
    got = measure(stages, repeats=1, warmup=0)
    for b in (1, 4):
        assert set(got[b]) == {"dit", "decode", "vision_encode", "connector", "llm_prefill"}
        assert all(r["ms"] > 0 and r["gflop_per_candidate"] > 0 for r in got[b].values())
    # FLOPs grow with the batch: per candidate they do not change
    for name in got[1]:
        assert got[4][name]["gflop_per_candidate"] == pytest.approx(got[1][name]["gflop_per_candidate"], rel=0.02)
    # the prefill holds the connector, and the DiT's FLOPs match a direct count
    assert got[1]["llm_prefill"]["gflop_per_candidate"] > got[1]["connector"]["gflop_per_candidate"]
    assert got[1]["dit"]["gflop_per_candidate"] == pytest.approx(count_flops(stages.run["dit"](1)) / 1e9)
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cost_model_json(stages, got, "test")))
    model = load_cost_model(str(path))
    assert model.num_blocks == 4 and model.batch_4["decode"] == pytest.approx(got[4]["decode"]["ms_per_candidate"])
    assert model.n_for_budget(10 * model.plain_ms(), "vhs", stages.block) >= 1
    # no pipeline at real sizes: the per-call stages are written as 0 and the note says they were not measured
    assert model.per_call == {"prompt_encode": 0.0, "call_overhead": 0.0} and model.note == ""
    assert "not measured" in json.loads(path.read_text())["note"] and stages.params > 0


def test_bench_command_on_toy_sizes_and_its_errors(tmp_path):
    out = tmp_path / "cm.json"
    r = vhslab_cli("bench", "--arch", "tiny", "--device", "cpu", "--repeats", "1", "--warmup", "0",
                   "--save-cost-model", str(out), "--json")
    assert r.returncode == 0, r.stderr[-1500:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["threads"] == 1 and res["threads_from"].startswith("default")  # toy sizes: one thread
    model = load_cost_model(str(out))
    assert res["ratio_vhs_to_vision"] == pytest.approx(model.split_ms("vhs", 1)[1] / model.split_ms("vision")[1])
    real = res["shipped"]["sana-sprint-1.6b"]
    # per candidate at batch 4; a batch of 4 costs no less than one candidate alone (CLIP 6.7, LLM 15.2 ms at batch 1)
    vision = 20 * 0.675 + 49.9 + 6.7 / 4 + 15.2 / 4
    assert real["ratio_vhs_to_vision"] == pytest.approx((8 * 0.675 + 15.2 / 4) / vision)
    assert real["bo4_vhs_over_vision"] == pytest.approx((12 * 1.43 + 62.3 + 4 * 9.2) / (4 * vision), rel=1e-3)
    again = vhslab_cli("bench", "--arch", "tiny", "--device", "cpu", "--save-cost-model", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    if not torch.cuda.is_available():
        gpu = vhslab_cli("bench", "--arch", "sana-sprint-1.6b")
        assert gpu.returncode == 2 and "no CUDA device" in gpu.stderr
    bad = vhslab_cli("bench", "--arch", "sdxl")
    assert bad.returncode == 2 and "--arch" in bad.stderr


def test_the_threads_option_is_on_every_command_sets_torch_and_is_recorded(tmp_path):
    import typer

    from vhslab.cli.main import app

    def commands(group, prefix=()):
        for name, cmd in group.commands.items():
            yield from commands(cmd, (*prefix, name)) if hasattr(cmd, "commands") else [((*prefix, name), cmd)]

    found = dict(commands(typer.main.get_command(app)))
    assert len(found) >= 20 and ("world", "score") in found and ("bench",) in found
    for name, cmd in found.items():
        assert any("--threads" in p.opts for p in cmd.params), name
    out = tmp_path / "cm.json"
    r = vhslab_cli("bench", "--arch", "tiny", "--device", "cpu", "--repeats", "1", "--warmup", "0", "--threads", "2",
                   "--save-cost-model", str(out), "--json")
    assert r.returncode == 0, r.stderr[-1500:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["threads"] == 2 and res["threads_from"] == "--threads" and "2 threads" in res["card"]
    saved = json.loads(out.read_text())
    assert saved["threads"] == 2 and "2 thread(s)" in saved["source"]
    bad = vhslab_cli("world", "score", "--threads", "0")
    assert bad.returncode == 2 and "--threads" in bad.stderr


def test_use_threads_decides_by_model_size_and_keeps_a_given_count():
    from vhslab.threads import SMALL_PARAMS, fit, info, use_threads

    before = torch.get_num_threads()
    try:
        assert use_threads(None) == 1 == torch.get_num_threads() and info()["threads"] == 1
        assert fit(SMALL_PARAMS) >= 1 and "parameters" in info()["threads_from"]
        assert fit(torch.nn.Linear(4, 4)) == 1
        assert use_threads(2) == 2 and fit(torch.nn.Linear(4, 4)) == 2  # --threads is kept
        assert info() == {"threads": 2, "threads_from": "--threads"}
        with pytest.raises(ValueError, match="--threads"):
            use_threads(0)
    finally:
        torch.set_num_threads(before)


def test_end_to_end_calls_are_held_against_the_cost_models_prediction():
    import vhslab
    from vhslab.search.bench import end_to_end, predicted, prediction_error

    world = vhslab.load_world()
    paths = {"vhs": vhslab.load_verifier(), "ae": vhslab.load_verifier(kind="ae"), "none": "none"}
    measured = end_to_end(world, paths, ns=(1, 2), repeats=1, batch_size=4, rounds=2, statistic="min")
    assert set(measured) == {"vhs", "ae", "none", "noise"} and all(set(v) == {1, 2} for v in measured.values())
    model = load_cost_model("world")
    guess = predicted(model, 10, measured, ns=(1, 2), batch_size=4, rounds=2)
    assert guess["noise"][2] == pytest.approx(model.call_ms("vhs", 2, 10, 4, rounds=2))  # two rounds of one
    assert guess["noise"][2] == pytest.approx(model.call_ms("vhs", 1, 10) + model.batch_ms("vhs", 1, 10))
    assert guess["none"][1] == pytest.approx(model.plain_ms())
    error = prediction_error(guess, measured)
    assert error["ae"][2] == pytest.approx(guess["ae"][2] / measured["ae"][2] - 1)


@pytest.mark.slow
def test_world_bench_reports_stage_costs_and_end_to_end():
    r = vhslab_cli("bench", "--repeats", "2", "--warmup", "1", "--e2e-repeats", "1", "--json")
    assert r.returncode == 0, r.stderr[-1500:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["num_blocks"] == 12 and res["verifier_block"] == 10 and res["threads"] == 1
    assert set(res["end_to_end_ms"]) == set(res["prediction_error"]) == {"vhs", "vision", "ae", "none", "noise"}
    assert all(set(v) == {"1", "4", "16"} for v in res["prediction_error"].values())
    assert res["cost_model"]["stages_ms"]["per_call"]["prompt_encode"] > 0
    assert {"before", "after"} == set(res["load_average_1min"]) and isinstance(res["prediction_within_15pct"], bool)
    assert 0 < res["ratio_vhs_to_vision"] < 1.5
