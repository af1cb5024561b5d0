"""vhslab.outputs: ownership, atomic saves, locks, torn logs, incomplete inputs (issue "Safe by construction")."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

from vhslab import outputs
from vhslab.outputs import IncompleteError, Output, OutputError, claim, owned, state


def _save(path, data=b"result", kind="cmd --out"):
    out = Output(path, kind)
    with owned([out], overwrite=True):
        outputs.save_bytes(out, data)
    return out


def test_claim_refuses_what_it_did_not_write_and_replaces_its_own_only_with_overwrite(tmp_path):
    user = tmp_path / "notes.txt"
    user.write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="never replaced"):
            claim([Output(user, "cmd --out")], overwrite)
    assert user.read_text() == "mine"
    ours = tmp_path / "r.json"
    _save(ours)
    assert state(ours, "cmd --out") == "complete"
    with pytest.raises(OutputError, match="pass --overwrite"):
        claim([Output(ours, "cmd --out")], overwrite=False)
    with pytest.raises(OutputError, match="did not write"):  # another command's output is not ours to replace
        claim([Output(ours, "other --out")], overwrite=True)
    _save(ours, b"again")
    assert ours.read_bytes() == b"again"
    ours.write_bytes(b"edited by hand")
    assert state(ours, "cmd --out") == "foreign"
    outputs.release()


def test_outputs_are_checked_against_each_other_and_the_inputs(tmp_path):
    a = tmp_path / "a.nc"
    with pytest.raises(OutputError, match="same path"):
        claim([Output(a, "x --out", "--out"), Output(a, "x --plot", "--plot")])
    store = tmp_path / "s.zarr"
    store.mkdir()
    with pytest.raises(OutputError, match="over the input --data"):
        claim([Output(store / "v", "x --out")], inputs={"--data": store})
    with pytest.raises(OutputError, match="over the input --cost-model"):
        claim([Output(a, "x --out")], True, inputs={"--cost-model": a})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        claim([Output(tmp_path / "no" / "a.nc", "x --out")])
    assert not outputs._LOCKS  # nothing was locked by a refused claim


def test_a_second_writer_of_one_output_is_refused(tmp_path):
    target = tmp_path / "r.nc"
    code = textwrap.dedent(f"""
        import sys, time
        from vhslab.outputs import Output, claim
        claim([Output({str(target)!r}, "x --out")])
        print("locked", flush=True)
        time.sleep(30)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match="another vhslab run"):
            claim([Output(target, "x --out")])
    finally:
        holder.kill()
        holder.wait()
    claim([Output(target, "x --out")])  # the OS dropped the dead holder's lock: no stale lock
    outputs.release()


def test_a_disk_full_save_keeps_the_previous_result_and_says_incomplete(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    _save(target, b"first")
    monkeypatch.setenv("VHSLAB_FAULT", "enospc:1")
    monkeypatch.setitem(outputs._FAULT, "count", 0)
    with pytest.raises(OSError, match="No space left"):
        _save(target, b"second")
    assert target.read_bytes() == b"first"  # the previous state stays readable
    assert state(target, "cmd --out") == "incomplete"
    with pytest.raises(IncompleteError, match="rerun that command to finish it, or remove it"):
        outputs.check_complete(target)
    assert not list(tmp_path.glob(".r.json.*.tmp*"))  # no temporary left behind
    monkeypatch.delenv("VHSLAB_FAULT")
    out = Output(target, "cmd --out")
    claim([out])  # incomplete and ours: a rerun replaces it without --overwrite
    outputs.save_bytes(out, b"second")
    outputs.release()
    assert target.read_bytes() == b"second" and state(target, "cmd --out") == "complete"


def test_a_killed_save_leaves_the_previous_file_and_its_temporary_is_swept(tmp_path):
    target = tmp_path / "r.json"
    code = textwrap.dedent(f"""
        from vhslab.outputs import Output, claim, save_bytes
        out = Output({str(target)!r}, "cmd --out")
        claim([out], overwrite=True)
        save_bytes(out, b"second")
    """)
    _save(target, b"first")
    env = {"VHSLAB_FAULT": "kill:1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    assert r.returncode == -9
    assert target.read_bytes() == b"first" and state(target, "cmd --out") == "incomplete"
    assert list(tmp_path.glob(".r.json.*.tmp*"))  # the killed writer's temporary ...
    claim([Output(target, "cmd --out")])
    assert not list(tmp_path.glob(".r.json.*.tmp*"))  # ... is removed by the next writer
    outputs.release()


def test_folder_outputs_replace_whole(tmp_path):
    out = Output(tmp_path / "res.zarr", "probe --out", folder=True)
    for value in (1, 2):
        with owned([out], overwrite=True), outputs.atomic_folder(out) as tmp:
            xr.Dataset({"a": ("x", np.full(3, value))}).to_zarr(tmp, mode="w")
        assert int(xr.open_zarr(out.path)["a"][0]) == value
    assert state(out.path, "probe --out") == "complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.zarr"]  # no temporary, no lock beside it


def test_torn_log_lines_are_dropped_with_a_warning_naming_file_and_line(tmp_path):
    log = tmp_path / "noise_search.jsonl"
    log.write_text('{"row": 0}\n{"row": 1}\n{"row": 2, "n"')
    said = []
    assert outputs.read_jsonl(log, said.append) == [{"row": 0}, {"row": 1}]
    assert str(log) in said[0] and "line(s) 3" in said[0]
    assert log.read_text() == '{"row": 0}\n{"row": 1}\n'  # a later append starts on a line of its own
    outputs.append_line(log, json.dumps({"row": 2}))
    assert outputs.read_jsonl(log) == [{"row": 0}, {"row": 1}, {"row": 2}]
    broken = tmp_path / "site.json"
    broken.write_text('{"key": ')
    assert outputs.read_resumable_json(broken, said.append) is None and str(broken) in said[-1]
