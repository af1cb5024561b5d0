"""Kill -9 and disk-full at random save points of the long commands (issue "Safe by construction").

Each command runs once whole (counting its save points, `VHSLAB_FAULT=count`), then, into a fresh
output, is killed (SIGKILL) at a random save point, rerun with a disk-full error at another random
save point, and rerun plainly: that last run must finish with a result equal to the uninterrupted
run's. A half-result is never read as whole: the disk-full run exits 1 with one error line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from safetensors.numpy import load_file

EXE = shutil.which("vhslab", path=str(Path(sys.executable).parent)) or "vhslab"
pytestmark = pytest.mark.slow


def run(args, cwd, fault=None):
    env = {k: v for k, v in os.environ.items() if k != "VHSLAB_FAULT"}
    env["OMP_NUM_THREADS"] = "1"
    if fault:
        env["VHSLAB_FAULT"] = fault
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env)


def whole_and_faulted(name, args, result, cwd):
    """`args(out)` is the command line writing `out`; `result(out)` what must come out the same. Runs it
    whole, then killed, disk-full and plainly into a fresh output; returns (whole result, final result,
    (kill point, disk-full point, save points))."""
    whole = run(args(cwd / "whole"), cwd, "count")
    assert whole.returncode == 0, whole.stderr[-2000:]
    points = int(re.search(r"vhslab save points: (\d+)", whole.stderr).group(1))
    assert points >= 1
    rng = np.random.default_rng(sum(map(ord, name)))
    kill_at, full_at = (int(rng.integers(1, points + 1)) for _ in range(2))
    out = cwd / "cut"
    killed = run(args(out), cwd, f"kill:{kill_at}")
    assert killed.returncode == -9, (kill_at, killed.stderr[-2000:])
    full = run(args(out), cwd, f"enospc:{full_at}")
    if full.returncode != 0:  # the resumed run may pass fewer save points than full_at
        errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
        assert full.returncode == 1 and len(errors) == 1 and "No space left" in errors[0], full.stderr[-2000:]
        assert "Traceback" not in full.stderr
    final = run(args(out), cwd)
    assert final.returncode == 0, (kill_at, full_at, final.stderr[-2000:])
    return result(cwd / "whole"), result(out), (kill_at, full_at, points)


def _netcdf(var):
    def read(out):
        with xr.open_dataset(out) as ds:
            return json.dumps(np.asarray(ds[var].values).round(10).tolist())
    return read


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from vhslab.testing import planted_store

    root = tmp_path_factory.mktemp("planted")
    ds = planted_store(n_samples=256, n_layers=2, n_tokens=4, n_channels=16, signal_layer=1, strength=1.5,
                       chunk_samples=32, seed=3).load()
    ds.isel(sample=slice(0, 160)).to_zarr(root / "train.zarr", consolidated=False)
    ds.isel(sample=slice(160, None)).to_zarr(root / "test.zarr", consolidated=False)
    return root


# The five commands' chains are independent (each in its own folder, each process on one thread): they run two
# at a time, all submitted by one fixture, and each test asserts on its own chain's result.
@pytest.fixture(scope="module")
def chains(planted, tmp_path_factory):
    """Every command's chain, submitted at once (two run at a time); {name: future of (whole, cut, where)}."""
    root = tmp_path_factory.mktemp("chains")
    prompts = root / "p.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in [
        {"tag": "single_object", "include": [{"class": "circle", "count": 1}], "prompt": "a photo of a circle"},
        {"tag": "colors", "include": [{"class": "square", "count": 1, "color": "red"}], "prompt": "a photo of a red square"}]))

    def weights(out):
        return {k: v.tolist() for k, v in load_file(out / "verifier.safetensors").items()}

    def world_weights(out):
        return {f"{stage}/{p.name}": {k: v.tolist() for k, v in load_file(p).items()}
                for stage in ("autoencoder", "teacher") for p in sorted((out / stage).rglob("*.safetensors"))}

    specs = {  # the longest first
        "verifier sweep": (lambda out: ["verifier", "sweep", "--data", planted / "train.zarr", "--test",
                                        planted / "test.zarr", "--sites", "block.0,block.1", "--steps", "8",
                                        "--align-steps", "2", "--n-boot", "20", "--no-progress", "--out", f"{out}.nc"],
                           lambda out: _netcdf("value")(f"{out}.nc")),
        "world train": (lambda out: ["world", "train", "--out", out, "--profile", "tiny", "--stages",
                                     "autoencoder,teacher", "--threads", "1"], world_weights),
        "bestofn": (lambda out: ["bestofn", "--prompts", prompts, "--budgets", "1,2", "--n-boot", "20",
                                 "--workdir", f"{out}.work", "--out", f"{out}.nc", "--no-progress"],
                    lambda out: _netcdf("value")(f"{out}.nc")),
        "verifier train": (lambda out: ["verifier", "train", "--data", planted / "train.zarr", "--site", "block.1",
                                        "--steps", "16", "--align-steps", "4", "--grid", "0", "--no-progress",
                                        "--out", out], weights),
        "probe": (lambda out: ["probe", "--data", planted / "train.zarr", "--folds", "2", "--inner-folds", "2",
                               "--n-boot", "20", "--no-progress", "--out", f"{out}.nc"],
                  lambda out: _netcdf("score")(f"{out}.nc")),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {}
        for name, (args, result) in specs.items():
            cwd = root / name.replace(" ", "_")
            cwd.mkdir()
            futures[name] = pool.submit(whole_and_faulted, name, args, result, cwd)
        yield futures


@pytest.mark.parametrize("name", ["probe", "verifier train", "verifier sweep", "bestofn", "world train"])
def test_interrupted_run_ends_where_an_uninterrupted_one_does(chains, name):
    whole, cut, where = chains[name].result()
    assert cut == whole, where  # the interrupted run, rerun, ends where an uninterrupted one does
