"""`vhslab demo` (the whole study, small) and how results are printed: stdout for results (a table of rounded
numbers, or one JSON object last), stderr for progress and logs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vhslab.cli.common import emit, flat_rows
from vhslab.cli.main import app
from vhslab.demo import STAGES, run_demo
from vhslab.errors import InputError
from vhslab.outputs import OutputError


def test_results_go_to_stdout_rounded(capsys):
    emit({"auroc": {"value": 0.123456789, "ci": [0.1, 0.2]}, "n": 3, "nested": {"x": 1.0 / 3}}, False, "t")
    out, err = capsys.readouterr()
    assert "0.123 [0.100, 0.200]" in out and "nested.x" in out and "0.333" in out and "0.3333" not in out
    assert err == ""
    emit({"a": 1.0 / 3}, True)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["a"] == pytest.approx(1 / 3)


def test_flat_rows_keep_intervals_whole():
    assert flat_rows({"m": {"value": 0.5, "ci": [0.4, 0.6]}}) == [("m", "0.500 [0.400, 0.600]")]


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="did not write"):
        run_demo(tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="--prompts"):
        run_demo(tmp_path / "new", n_prompts=1, progress=False)
    assert not (tmp_path / "new").exists()


def test_demo_cli_refusal_is_one_line(tmp_path):
    (tmp_path / "x").write_text("a file")
    r = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2


@pytest.mark.slow
def test_demo_runs_small_and_writes_only_into_out(tmp_path):
    out = tmp_path / "demo"
    res = run_demo(out, n_prompts=4, n_per_prompt=2, n_boot=20, progress=False)
    assert list(res.seconds) == list(STAGES)
    assert {p.name for p in tmp_path.iterdir()} == {"demo"}
    for name in ("probes.png", "bestofn.png", "attribution.png", "probes.nc", "bestofn.nc", "attribution.nc"):
        assert (out / name).stat().st_size > 0
    j = res.to_json()
    assert any(k.startswith("budget 2 generations: vhs") for k in j["findings"])
    assert any(k.startswith("budget 2 generations: vision") for k in j["findings"])
    assert "verifier within-prompt AUROC" in j["findings"]
    with pytest.raises(OutputError, match="--overwrite"):
        run_demo(out, n_prompts=4, n_per_prompt=2, n_boot=20, progress=False)
