"""Fault injection: bad input and damaged stores, as a user meets them through the `vhslab` command.

Each case asserts the exit code (2: bad input, 1: a fault), a one-line message that names the
problem, and that nothing the user had was lost.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from vhslab.cli.main import app
from vhslab.data.store import open_zarr

torch.set_num_threads(1)
EXTRACT = ["extract", "--model", "world", "--prompts", "train", "--limit", "24", "--n-per-prompt", "2",
           "--batch-size", "2", "--sites", "block.2,block.5", "--no-progress"]
PROBE = ["probe", "--folds", "2", "--inner-folds", "2", "--n-boot", "0", "--no-progress"]


def cli(*args):
    """Exit code and output (usage-error boxes unwrapped into plain text)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    text = result.output
    if "╭─ Error" in text:
        text = " ".join(line.strip("│╭╮╰╯─ ") for line in text.splitlines())
    return result.exit_code, text


def last_json(*args) -> tuple[int, dict]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, json.loads(result.stdout.strip().splitlines()[-1])


def one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def tree(path: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(Path(path).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults") / "s.zarr"
    code, output = cli(*EXTRACT, "--out", out)
    assert code == 0, output
    return out


@pytest.fixture
def copy(store, tmp_path):
    def make():
        dst = tmp_path / "copy.zarr"
        subprocess.run(["cp", "-r", str(store), str(dst)], check=True)
        return dst

    return make


# --- 1. data loss -------------------------------------------------------------------------------
def test_probe_never_replaces_what_it_did_not_write(store, tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    before_store = tree(store)
    for out in (victim, store):
        for extra in ([], ["--overwrite"]):
            code, output = cli(*PROBE, "--data", store, "--out", out, *extra)
            assert code == 2, output
            assert "exists" in one_line_error(output) or "over the input --data" in one_line_error(output)
    monkeypatch.chdir(victim)
    code, output = cli(*PROBE, "--data", store, "--out", ".", "--overwrite")
    assert code == 2 and "never replaced" in one_line_error(output)
    assert (victim / "thesis.tex").read_text() == "years of work"
    assert tree(store) == before_store
    # earlier results: refused without --overwrite, replaced with it
    results = tmp_path / "r.nc"
    assert cli(*PROBE, "--data", store, "--out", results)[0] == 0
    code, output = cli(*PROBE, "--data", store, "--out", results)
    assert code == 2 and "--overwrite" in one_line_error(output)
    assert cli(*PROBE, "--data", store, "--out", results, "--overwrite")[0] == 0


# --- 2. bad prompts, found before any compute ------------------------------------------------
def test_every_bad_prompt_is_named_before_any_compute(tmp_path):
    good = {"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "red"}], "prompt": "a photo of a red circle"}
    rows = [good,
            {**good, "include": [{"class": "dog", "count": 1, "color": "red"}], "prompt": "a photo of a red dog"},
            good,
            {**good, "include": [{"class": "star", "count": 1, "color": "teal"}], "prompt": "a photo of a teal star"},
            {"tag": "counting", "include": [{"class": "star", "count": 9}], "prompt": "a photo of nine stars"}]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "s.zarr"
    code, output = cli(*EXTRACT[:3], "--prompts", prompts, "--out", out, "--no-progress")
    line = one_line_error(output)
    assert code == 2 and "3 of 5 prompts cannot be used" in line
    for where, what in (("p.jsonl:2", "unknown shape 'dog'"), ("p.jsonl:4", "unknown colour 'teal'"),
                        ("p.jsonl:5", "at most 5")):
        assert f"{where}: " in line and what in line
    assert not out.exists()


def test_malformed_and_non_utf8_prompt_files(tmp_path):
    bad_json = tmp_path / "a.jsonl"
    bad_json.write_text('{"tag": "colors"\n{"tag": 1}\n')
    binary = tmp_path / "b.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    for path, message in ((bad_json, "a.jsonl:1: invalid JSON"), (binary, "not UTF-8")):
        code, output = cli(*EXTRACT[:3], "--prompts", path, "--out", tmp_path / "x.zarr")
        assert code == 2 and message in one_line_error(output)
    assert not (tmp_path / "x.zarr").exists()


def test_text_that_contradicts_its_include_is_warned(tmp_path):
    row = {"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "red"}], "prompt": "a photo of a red square"}
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps(row) + "\n")
    code, output = cli(*EXTRACT[:3], "--prompts", prompts, "--n-per-prompt", "1", "--sites", "block.0", "--no-progress",
                       "--out", tmp_path / "w.zarr")
    assert code == 0, output
    assert "warning: p.jsonl:1: the text 'a photo of a red square' reads as '1 red square'" in output


# --- 3. garbage is never stored as valid -------------------------------------------------------
def test_nan_guidance_is_refused_before_compute(tmp_path):
    out = tmp_path / "n.zarr"
    code, output = cli(*EXTRACT, "--guidance-scale", "nan", "--out", out)
    assert code == 2 and "--guidance-scale" in output
    assert not out.exists()


def test_nan_in_a_batch_is_refused_before_it_is_written(tmp_path):
    from vhslab.data.store import StoreError, write_batch

    path = tmp_path / "s.zarr"
    assert cli(*EXTRACT, "--out", path)[0] == 0
    ds = open_zarr(path)
    batch = ds.isel(sample=slice(0, 2)).load().drop_vars(["written", "checksum"])
    batch["hidden"] = batch["hidden"].where(False)  # all NaN
    before = tree(path)
    with pytest.raises(StoreError, match="hidden holds NaN/Inf values"):
        write_batch(path, batch, 0)
    assert tree(path) == before


# --- 4. a lost or damaged chunk is found, named and repaired -------------------------------------
@pytest.mark.slow  # extraction repairs a store: about 14 s each
@pytest.mark.parametrize("damage", ["delete verdict", "garbage hidden"])
def test_damaged_chunk_is_named_refused_and_repaired(store, copy, damage):
    path = copy()
    if damage == "delete verdict":
        (path / "verdict" / "c" / "1").unlink()
        name, probe_says = "verdict chunk 1 (samples 2-3)", "have no verdict"
    else:
        (path / "hidden" / "c" / "2" / "1" / "0" / "0").write_bytes(b"\x00garbage")
        name, probe_says = "hidden chunk 2 (samples 4-5)", "cannot be read"
    code, output = cli(*PROBE, "--data", path)
    assert code == 1 and probe_says in one_line_error(output)
    code, output = cli("inspect", path, "--verify")
    assert code == 1 and f"damaged: {name}" in output
    code, report = last_json("inspect", path, "--verify", "--json")
    assert code == 1 and report["damaged"][0].startswith(name)
    code, result = last_json(*EXTRACT, "--out", path, "--json")
    assert code == 0 and result["repaired"][0].startswith(name)
    xr.testing.assert_identical(open_zarr(path).load(), open_zarr(store).load())
    assert cli("inspect", path, "--verify")[0] == 0


# --- 5. numbers are checked ---------------------------------------------------------------------
@pytest.mark.parametrize("argv, option", [
    (["extract", "--out", "x.zarr", "--batch-size", "-1"], "--batch-size"),
    (["extract", "--out", "x.zarr", "--batch-size", "0"], "--batch-size"),
    (["extract", "--out", "x.zarr", "--limit", "-1"], "--limit"),
    (["extract", "--out", "x.zarr", "--max-sequence-length", "0"], "--max-sequence-length"),
    (["extract", "--out", "x.zarr", "--steps", "0"], "--steps"),
    (["extract", "--out", "x.zarr", "--n-per-prompt", "0"], "--n-per-prompt"),
    (["probe", "--data", "x.zarr", "--grid", "0"], "--grid"),
    (["probe", "--data", "x.zarr", "--n-boot", "-1"], "--n-boot"),
    (["probe", "--data", "x.zarr", "--folds", "1"], "--folds"),
    (["world", "check", "--n", "0"], "--n"),
    (["world", "score", "--n-per-prompt", "0"], "--n-per-prompt"),
    (["world", "samples", "-o", "x.png", "--per-tag", "0"], "--per-tag"),
    (["world", "render", "a photo of a red circle", "-o", "x.png", "--resolution", "0"], "--resolution"),
])
def test_out_of_range_numbers_are_usage_errors(argv, option, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, output = cli(*argv)
    assert code == 2 and option in output
    assert list(tmp_path.iterdir()) == []


def test_device_model_folder_and_output_checked_before_compute(tmp_path):
    if not torch.cuda.is_available():
        code, output = cli(*EXTRACT, "--device", "cuda", "--out", tmp_path / "c.zarr")
        assert code == 2 and "no CUDA device" in output
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model_index.json").write_text("{}")
    code, output = cli(*EXTRACT[:1], "--model", bare, "--out", tmp_path / "b.zarr")
    assert code == 2 and "cannot load a diffusers pipeline" in output
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    code, output = cli(*EXTRACT, "--out", a_file)
    assert code == 2 and "is a file, not an activation store" in one_line_error(output)
    assert a_file.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_output_folder_is_refused_before_compute(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    code, output = cli(*EXTRACT, "--out", ro / "s.zarr")
    assert code == 2 and "permission denied" in one_line_error(output)


# --- 6. leftovers and reuse -----------------------------------------------------------------------
def test_stale_temporary_of_a_killed_run_is_removed(tmp_path):
    from vhslab.data.store import remove_stale_temporaries

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".s.zarr.tmp-{dead.pid}-abcdef"
    stale.mkdir()
    alive = tmp_path / f".s.zarr.tmp-{os.getpid()}-abcdef"
    alive.mkdir()
    remove_stale_temporaries(tmp_path / "s.zarr")
    assert not stale.exists() and alive.exists()  # a running writer's folder is left alone


def test_capture_reuse_and_nesting_are_refused():
    from vhslab.pipeline import GenConfig
    from vhslab.testing.tiny import tiny_sana_sprint_pipeline
    from vhslab.trace.capture import Capture

    pipe = tiny_sana_sprint_pipeline(num_layers=2)
    kwargs = GenConfig(max_sequence_length=8).resolve(pipe).call_kwargs(pipe)
    cap = Capture(pipe, "block.0")
    with cap:
        pipe(prompt=["a photo of a red circle"], output_type="pt", **kwargs)
    with pytest.raises(RuntimeError, match="make a new Capture"), cap:
        pass
    with pytest.raises(RuntimeError, match="do not nest"), Capture(pipe, "block.0", stop=False), Capture(pipe, "block.1"):
        pass
    with Capture(pipe, "block.1") as again:  # the failed nesting left nothing behind
        pipe(prompt=["a photo of a red circle"], output_type="pt", **kwargs)
    assert again["block.1"].shape[0] == 1


# --- errors are one line; --debug shows the traceback ------------------------------------------------
@pytest.mark.slow  # >= 15 s on 2 cores: the full suite (CI) runs it
def test_entry_point_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    exe = [sys.executable, "-c", "from vhslab.cli.main import run; run()"]
    usage = subprocess.run([*exe, "extract", "--out", "x.zarr", "--batch-size", "0"], capture_output=True, text=True,
                           cwd=tmp_path)
    assert usage.returncode == 2
    assert usage.stderr.strip().splitlines() == [
        "error: Invalid value for '--batch-size': Input should be greater than or equal to 1 (see vhslab extract --help)"]
    missing = subprocess.run([*exe, "probe", "--data", "nope.zarr"], capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.strip() == "error: no store at nope.zarr"
    debug = subprocess.run([*exe, "--debug", "probe", "--data", "nope.zarr"], capture_output=True, text=True, cwd=tmp_path)
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "no store at nope.zarr" in debug.stderr


def test_image_outputs_are_replaced_only_with_overwrite(tmp_path):
    png = tmp_path / "mine.png"
    png.write_bytes(b"my picture")
    prompt = "a photo of a red circle"
    for extra in ([], ["--overwrite"]):  # a picture vhslab did not write: never replaced
        code, output = cli("world", "render", prompt, "-o", png, *extra)
        assert code == 2 and "never replaced" in one_line_error(output)
    assert png.read_bytes() == b"my picture"
    code, output = cli("world", "render", prompt, "-o", tmp_path, "--overwrite")
    assert code == 2 and "a folder" in one_line_error(output)
    ours = tmp_path / "ours.png"
    assert cli("world", "render", prompt, "-o", ours)[0] == 0
    code, output = cli("world", "render", prompt, "-o", ours, "--seed", "1")
    assert code == 2 and "pass --overwrite" in one_line_error(output)
    assert cli("world", "render", prompt, "-o", ours, "--seed", "1", "--overwrite")[0] == 0
    assert ours.read_bytes()[:4] == b"\x89PNG"
    ours.write_bytes(b"edited by hand")  # changed since vhslab wrote it: no longer ours
    code, output = cli("world", "render", prompt, "-o", ours, "--overwrite")
    assert code == 2 and "never replaced" in one_line_error(output)


# --- 7. identity: unfinished stores, another generator --------------------------------------------
def test_an_unfinished_store_is_refused_unless_allow_incomplete(copy):
    import zarr

    s = copy()
    zarr.open_group(s, mode="r+")["written"][40:] = False  # as if the extraction was killed at 40 of 48
    code, output = cli(*PROBE, "--data", s)
    line = one_line_error(output)
    assert code == 2 and "did not finish (40 of 48 samples written)" in line and "--allow-incomplete" in line
    code, res = last_json(*PROBE, "--data", s, "--allow-incomplete", "--json")
    assert code == 0 and res["n_samples"] == 40  # the result says what it rests on


def test_a_verifier_refuses_a_store_of_another_generator(store):
    from types import SimpleNamespace

    import vhslab
    from vhslab.pipeline import generator_fingerprint
    from vhslab.probes import open_store
    from vhslab.verifier.model import VerifierError, check_generator

    ds = open_store(store)
    pipe = vhslab.load_world().pipeline
    assert ds.attrs["generator"] == generator_fingerprint(pipe)
    assert "_name_or_path" in pipe.transformer.config  # where it was loaded from: not part of its identity
    verifier = SimpleNamespace(config=SimpleNamespace(site="block.5", extra={"generator": ds.attrs["generator"]}))
    check_generator(verifier, ds)  # its own generator: fine
    verifier.config.extra["generator"] = "0000-1111"
    with pytest.raises(VerifierError, match="trained on states of generator 0000-1111"):
        check_generator(verifier, ds)
    verifier.config.site = "text"  # reads no states
    check_generator(verifier, ds)
