"""Extraction into zarr stores on real tiny pipelines: spec, resume, kill -9, shards, errors."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from vhslab.data.extract import extract
from vhslab.data.spec import SpecError, validate
from vhslab.data.store import StoreError, open_zarr
from vhslab.pipeline import GenConfig, make_samples, sample_seed
from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.suites import load_suite
from vhslab.testing.tiny import tiny_pixart_pipeline, tiny_sana_sprint_pipeline, tiny_vision_encoder
from vhslab.trace import Capture

torch.set_num_threads(1)
GEN = GenConfig(max_sequence_length=16)


@pytest.fixture(scope="module")
def sana():
    return tiny_sana_sprint_pipeline(num_layers=4)


@pytest.fixture(scope="module")
def prompts():
    suite = load_suite("geneval-shapes")
    return [suite[i] for i in (0, 150, 300, 450, 500)]  # several tags, one and two items


def files(path):
    return {p: p.stat().st_mtime_ns for p in Path(path).rglob("*") if p.is_file()}


def test_store_follows_spec_and_matches_capture(sana, prompts, tmp_path):
    out = tmp_path / "a.zarr"
    res = extract(sana, prompts, out, n_per_prompt=2, sites="block.1,block.3,ae_latent,image", batch_size=4,
                  gen=GEN, progress=False)
    assert res["samples_written"] == res["samples_this_run"] == 10
    ds = open_zarr(out)
    validate(ds)
    assert isinstance(ds["hidden"].data, type(ds["verdict"].data))  # dask-backed, lazy
    assert ds.sizes == {"sample": 10, "layer": 2, "token": 64, "channel": 16, "item": 2, "checked": 13,
                        "ae_token": 64, "ae_channel": 4, "pix_y": 32, "pix_x": 32, "rgb": 3}
    assert list(ds.layer.values) == [1, 3] and list(ds.depth.values) == [0.25, 0.75]
    seeds = [sample_seed(0, prompts[i // 2].prompt, i % 2) for i in range(10)]
    assert list(ds.seed.values) == seeds and list(ds.prompt_index.values) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert list(ds.meaning.values) == [prompts[i // 2].meaning for i in range(10)]
    assert json.loads(ds.attrs["evaluator"]) == ShapesEvaluator().describe()
    assert ds.token_row.values[9] == 1 and ds.token_col.values[9] == 1
    from vhslab.shapes.phrasing import caption_detections

    for i in (0, 9):  # the stored caption is the evaluator's re-caption of the stored image
        found = ShapesEvaluator().evaluate(ds["image"].values[i], prompts[i // 2]).detections
        assert str(ds["caption"].values[i]) == caption_detections(found)
    assert ds.hidden.dtype == np.float16 and ds.written.values.all()
    # samples 4..7 were one batch: regenerate it directly and compare bit for bit
    batch = [prompts[2].prompt] * 2 + [prompts[3].prompt] * 2
    with Capture(sana, "block.3,image", stop=False) as cap:
        sana(prompt=batch, generator=[torch.Generator().manual_seed(s) for s in seeds[4:8]], output_type="pt",
             **GEN.resolve(sana).call_kwargs(sana))
    np.testing.assert_array_equal(ds.hidden.sel(layer=3).values[4:8], cap.last("block.3").numpy())
    np.testing.assert_array_equal(ds.image.values[4:8], cap.last("image"))
    ev = ShapesEvaluator()
    for i in range(10):
        spec = prompts[i // 2]
        verdict = ev.evaluate(ds.image.values[i], spec)
        assert ds.verdict.values[i] == int(verdict.correct)
        assert ds.prompt_class.values[i, 0] == spec.include[0].cls
        assert ds.found_count.values[i, 0] == verdict.items[0].found_count
        drawn = sorted((d for d in verdict.detections if d.accepted and d.cls), key=lambda d: -d.area)
        assert list(ds.found_class.values[i]) == [d.cls for d in drawn[:2]] + [""] * (2 - len(drawn[:2]))
        assert ds.prompt_count.values[i, 1] == (spec.include[1].count if len(spec.include) > 1 else -1)


def test_rerun_skips_and_mismatch_is_refused(sana, prompts, tmp_path):
    out = tmp_path / "b.zarr"
    kw = dict(n_per_prompt=2, sites="all", batch_size=4, gen=GEN, progress=False)
    extract(sana, prompts, out, **kw)
    before = files(out)
    again = extract(sana, prompts, out, **kw)
    assert again["samples_this_run"] == 0 and again["skipped"] == 10
    assert files(out) == before
    for change in ({"sites": "block.0"}, {"dtype": "float32"}, {"seed": 1}):
        with pytest.raises(StoreError, match="holds different data"):
            extract(sana, prompts, out, **{**kw, **change})
    with pytest.raises(StoreError, match="holds different data"):
        extract(tiny_sana_sprint_pipeline(seed=1), prompts, out, **kw)  # same config, other weights
    with pytest.raises(StoreError, match="evaluator differ"):  # other labels: never mixed into the store
        extract(sana, prompts, out, **kw, evaluator=ShapesEvaluator(threshold=0.6))
    assert files(out) == before


def test_seed_streams_are_independent_per_seed_and_prompt(prompts):
    a = make_samples(prompts, 3, seed=0)
    b = make_samples(prompts, 3, seed=1)
    assert len({s.seed for s in a}) == len(a)
    assert not {s.seed for s in a} & {s.seed for s in b}  # seed + i would share all but one
    other_order = make_samples(prompts[::-1], 3, seed=0)  # a candidate's noise follows its prompt, not its row
    assert {(s.spec.prompt, s.seed) for s in a} == {(s.spec.prompt, s.seed) for s in other_order}
    repeated = make_samples([prompts[0]] * 3, 2, seed=0)  # GenEval lists prompts more than once
    assert len({s.seed for s in repeated}) == 6
    with pytest.raises(ValueError, match="non-negative"):
        make_samples(prompts, 1, seed=-1)


def test_store_opens_without_warnings(sana, prompts, tmp_path):
    out = tmp_path / "w.zarr"
    extract(sana, prompts[:2], out, n_per_prompt=1, sites="block.0", batch_size=2, gen=GEN, progress=False)
    assert (out / "zarr.json").read_text().count("consolidated_metadata") == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(out)  # plain xarray, consolidated metadata
    assert ds.written.values.all()


def test_multistep_pipeline_default_steps_and_one_step_refused(prompts, tmp_path):
    pipe = tiny_pixart_pipeline(num_layers=2)
    assert GenConfig().resolve(pipe).steps == 20  # PixArt's own default; SANA-Sprint's is 1
    assert GenConfig().resolve(tiny_sana_sprint_pipeline(num_layers=2)).steps == 1
    out = tmp_path / "one.zarr"
    with pytest.raises(ValueError, match="cannot generate in one step; use --steps 20"):
        extract(pipe, prompts[:1], out, sites="block.0", gen=GenConfig(steps=1), progress=False)
    assert not out.exists()


def test_corrupt_or_partial_store_errors_and_keeps_data(sana, prompts, tmp_path):
    out = tmp_path / "c.zarr"
    kw = dict(n_per_prompt=1, sites="block.0", batch_size=2, gen=GEN, progress=False)
    extract(sana, prompts, out, **kw)
    clean = open_zarr(out).load()
    # a damaged `written` chunk: its rows count as unwritten and are generated again
    (out / "written" / "c" / "1").write_bytes(b"garbage")
    again = extract(sana, prompts, out, **kw)
    assert again["samples_this_run"] == 2
    xr.testing.assert_identical(open_zarr(out).load(), clean)
    # a variable's metadata gone
    (out / "hidden" / "zarr.json").unlink()
    with pytest.raises(StoreError, match="hidden"):
        open_zarr(out)
    # a foreign / partial directory
    (tmp_path / "d.zarr").mkdir()
    (tmp_path / "d.zarr" / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match=r"is not an activation store \(no zarr\.json\)"):
        extract(sana, prompts, tmp_path / "d.zarr", **kw)
    assert (tmp_path / "d.zarr" / "notes.txt").read_text() == "x"


def test_validate_names_problems(sana, prompts, tmp_path):
    out = tmp_path / "e.zarr"
    extract(sana, prompts[:2], out, n_per_prompt=1, sites="block.0,block.2", batch_size=2, gen=GEN, progress=False)
    ds = open_zarr(out)
    with pytest.raises(SpecError, match="'written'"):
        validate(ds.drop_vars("written"))
    with pytest.raises(SpecError, match="layer"):
        validate(ds.assign_coords(layer=[0, 1]))
    with pytest.raises(SpecError, match="not a vhslab"):
        validate(xr.Dataset())


def test_pixart_steps_and_vision(prompts, tmp_path):
    pipe = tiny_pixart_pipeline(num_layers=3)
    out = tmp_path / "p.zarr"
    gen = GenConfig(steps=2, guidance_scale=4.5, max_sequence_length=16)
    extract(pipe, prompts[:2], out, n_per_prompt=2, sites="all,vision", batch_size=2, gen=gen,
            vision=tiny_vision_encoder(), progress=False)
    ds = open_zarr(out)
    assert ds.hidden.dims == ("sample", "step", "layer", "token", "channel")
    assert ds.hidden.shape == (4, 2, 3, 64, 16) and list(ds.step.values) == [0, 1]
    assert ds.vision.shape == (4, 16, 16)
    # the stored rows are the conditional half of the guidance batch
    with Capture(pipe, "block.2", calls=2, stop=False, branch="both") as cap:
        pipe(prompt=[prompts[0].prompt] * 2, generator=[torch.Generator().manual_seed(int(s)) for s in ds.seed.values[:2]],
             output_type="latent", **gen.resolve(pipe).call_kwargs(pipe))
    np.testing.assert_array_equal(ds.hidden.values[:2, :, 2], cap["block.2"][:, 2:].transpose(0, 1).numpy())


# -- subprocess tests: the CLI on a saved pipeline ------------------------------------------
def cli(*args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "vhslab.cli.extract", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="module")
def saved(sana, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny-sana"
    sana.save_pretrained(path)
    return path


def args_for(saved, out, *extra):
    return ["extract", "--model", str(saved), "--prompts", "train", "--limit", "40", "--n-per-prompt", "2",
            "--batch-size", "2", "--max-sequence-length", "16", "--sites", "all", "--out", str(out),
            "--no-progress", "--json", *extra]


def reference(saved, out):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(saved)
    extract(pipe, load_suite("train")[:40], out, n_per_prompt=2, sites="all", batch_size=2, gen=GEN, progress=False)
    return open_zarr(out)


def n_written(out):
    try:
        return int(xr.open_zarr(out, consolidated=False)["written"].values.sum())
    except Exception:
        return 0


@pytest.mark.slow
def test_kill_9_then_resume_equals_uninterrupted(saved, tmp_path):
    out = tmp_path / "k.zarr"
    proc = cli(*args_for(saved, out))
    deadline = time.time() + 120
    while n_written(out) < 6 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = n_written(out)
    assert 6 <= partial < 80, f"the kill landed at {partial} written samples"
    done = cli(*args_for(saved, out))
    stdout, stderr = done.communicate(timeout=120)
    assert done.returncode == 0, stderr
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["samples_written"] == 80 and result["skipped"] >= partial
    ds, ref = open_zarr(out), reference(saved, tmp_path / "ref.zarr")
    assert ds.written.values.all() and ds.sizes == ref.sizes
    np.testing.assert_array_equal(ds.hidden.values, ref.hidden.values)
    np.testing.assert_array_equal(ds.verdict.values, ref.verdict.values)
    assert not list(tmp_path.glob(".k.zarr.tmp-*"))


@pytest.mark.slow
def test_two_shards_write_one_store(saved, tmp_path):
    out = tmp_path / "s.zarr"
    procs = [cli(*args_for(saved, out, "--shard", f"{i}/2")) for i in range(2)]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=150)
        assert proc.returncode == 0, stderr
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    assert sorted(r["shard"] for r in results) == ["0/2", "1/2"]
    assert sum(r["samples_this_run"] for r in results) == 80
    ds, ref = open_zarr(out), reference(saved, tmp_path / "ref.zarr")
    assert ds.written.values.all()
    np.testing.assert_array_equal(ds.hidden.values, ref.hidden.values)
    inspect = cli("inspect", str(out), "--json")
    summary = json.loads(inspect.communicate(timeout=60)[0].strip().splitlines()[-1])
    assert summary["written"] == 80 and summary["dims"]["layer"] == 4


@pytest.mark.slow
def test_accelerate_launch_two_cpu_ranks_write_one_store(saved, tmp_path):
    out = tmp_path / "acc.zarr"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "-m", "vhslab.cli.extract"]
    proc = subprocess.run([*launcher, *args_for(saved, out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shards = sorted(json.loads(line)["shard"] for line in proc.stdout.splitlines() if line.startswith("{"))
    assert shards == ["0/2", "1/2"]
    ds, ref = open_zarr(out), reference(saved, tmp_path / "ref.zarr")
    assert ds.written.values.all()
    np.testing.assert_array_equal(ds.hidden.values, ref.hidden.values)
