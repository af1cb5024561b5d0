"""The cost bench: stage timings and FLOPs, the cost model they make, the CLI."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vhslab.search.bench import cost_model_json, count_flops, measure
from vhslab.search.costs import load_cost_model
from vhslab.search.real_size import real_size_stages

EXE = shutil.which("vhslab", path=str(Path(sys.executable).parent)) or "vhslab"


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


def test_bench_command_on_toy_sizes_and_its_errors(tmp_path):
    out = tmp_path / "cm.json"
    r = subprocess.run([EXE, "bench", "--arch", "tiny", "--device", "cpu", "--repeats", "1", "--warmup", "0",
                        "--save-cost-model", str(out), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1500:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    model = load_cost_model(str(out))
    assert res["ratio_vhs_to_vision"] == pytest.approx(model.split_ms("vhs", 1)[1] / model.split_ms("vision")[1])
    real = res["shipped"]["sana-sprint-1.6b"]
    assert real["ratio_vhs_to_vision"] == pytest.approx((8 * 0.675 + 3.7) / (20 * 0.675 + 49.9 + 1.6 + 3.7))
    assert real["bo4_vhs_over_vision"] == pytest.approx((12 * 1.43 + 62.3 + 4 * 9.1) / (4 * 68.7), rel=1e-3)
    again = subprocess.run([EXE, "bench", "--arch", "tiny", "--device", "cpu", "--save-cost-model", str(out)],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    if not torch.cuda.is_available():
        gpu = subprocess.run([EXE, "bench", "--arch", "sana-sprint-1.6b"], capture_output=True, text=True)
        assert gpu.returncode == 2 and "no CUDA device" in gpu.stderr
    bad = subprocess.run([EXE, "bench", "--arch", "sdxl"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--arch" in bad.stderr


@pytest.mark.slow
def test_world_bench_reports_stage_costs_and_end_to_end():
    r = subprocess.run([EXE, "bench", "--repeats", "2", "--warmup", "1", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1500:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["num_blocks"] == 12 and res["verifier_block"] == 10
    assert set(res["end_to_end_ms"]) == {"vhs", "vision", "ae", "none"}
    assert all(set(v) == {"1", "4", "16"} for v in res["end_to_end_ms"].values())
    assert 0 < res["ratio_vhs_to_vision"] < 1.5
