"""Resource guards and silent wrong results (issue 33): each bad number is refused through the `vhslab`
entry point before any compute, with exit code 2, one `error:` line naming the option, and nothing written."""

from __future__ import annotations

import math
import sys
import warnings

import pytest
import typer

from vhslab.cli.common import guard
from vhslab.cli.main import app, run
from vhslab.errors import InputError, MissingError

EXTRACT = ["extract", "--model", "world", "--prompts", "train", "--n-per-prompt", "2", "--sites", "block.10", "--no-progress"]
PROMPT = "a photo of two red circles"


@pytest.fixture
def vhslab(capsys, monkeypatch, tmp_path):
    """Run `vhslab ARGS` in-process through `run()` (as the console script does), in an empty folder;
    returns (exit code, stdout + stderr)."""
    monkeypatch.chdir(tmp_path)

    def call(*args):
        monkeypatch.setattr(sys, "argv", ["vhslab", *map(str, args)])
        with pytest.raises(SystemExit) as stop:
            run()
        out = capsys.readouterr()
        return stop.value.code, out.out + out.err

    return call


def refused(result, option: str, *what: str) -> str:
    """Exit 2 and exactly one `error:` line, naming the option and each of `what`."""
    code, output = result
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in output, output
    assert option in lines[0] and all(w in lines[0] for w in what), lines[0]
    return lines[0]


def commands(group=None, path=()):
    """(argv prefix, click command) of every `vhslab` command."""
    group = group or typer.main.get_command(app)
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def options(kind: type) -> list[tuple[tuple, str]]:
    """(argv prefix, option) of every option of every command whose value is a `kind` (float, int)."""
    return [(prefix, p.opts[-1]) for prefix, cmd in commands() for p in cmd.params
            if p.opts[-1].startswith("-") and getattr(getattr(p, "type_descriptor", None), "annotation", None) is kind]


# --- numbers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix, option", options(float))
@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_every_float_option_refuses_non_finite_values(vhslab, tmp_path, prefix, option, value):
    refused(vhslab(*prefix, option, value), option)
    assert list(tmp_path.iterdir()) == []


def test_there_are_float_options_to_check():
    found = {opt for _, opt in options(float)}
    assert {"--coefficient", "--llm-lr", "--lr", "--guidance-scale", "--radius", "--teacher-c"} <= found


@pytest.mark.parametrize("prefix, option", options(int))
def test_every_integer_option_has_a_lower_bound(prefix, option):
    cmd = dict(commands())[prefix]
    assert next(p for p in cmd.params if option in p.opts).min is not None, f"{' '.join(prefix)} {option}"


def test_there_are_integer_options_to_check():
    assert len(options(int)) > 40


@pytest.mark.parametrize("argv, option, what", [
    (["verifier", "train", "--out", "v", "--lr", "0"], "--lr", "> 0"),
    (["verifier", "train", "--out", "v", "--llm-lr", "-1"], "--llm-lr", ""),
    (["verifier", "train", "--out", "v", "--steps", "0"], "--steps", ""),
    (["verifier", "eval", "--n", "1"], "--n", ""),
    (["generate", PROMPT, "-o", "g.png", "--n", "0"], "--n", ""),
    (["generate", PROMPT, "-o", "g.png", "--n", "100000"], "--n", "256"),
    (["patch", "--pairs", "0"], "--pairs", ""),
    (["attribute", "--n", "0"], "--n", ""),
    (["world", "grid", "-o", "g.png", "--per-tag", "100000"], "--per-tag", "prompts of tag"),
    (["world", "render", PROMPT, "-o", "r.png", "--resolution", "100000"], "--resolution", "4096"),
    (["extract", "--out", "s.zarr", "--height", "100000"], "--height", "4096"),
])
def test_out_of_range_numbers(vhslab, tmp_path, argv, option, what):
    refused(vhslab(*argv), option, what)
    assert list(tmp_path.iterdir()) == []


def test_library_config_refuses_what_the_cli_refuses():
    from vhslab.verifier.train import VerifierTrainConfig

    for bad in ({"llm_lr": math.inf}, {"lr": 0.0}, {"teacher_weight": math.nan}, {"rank_weight": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            VerifierTrainConfig(**bad)
    assert VerifierTrainConfig(llm_lr=0.0).llm_lr == 0.0  # 0 freezes the LLM


# --- prompts and image sizes ------------------------------------------------------------------------
@pytest.mark.parametrize("prompt, what", [("", "is empty"), ("   ", "is empty"),
                                          ("xyzzy blorp", "shapes world only"), ("a photo of a purple dog", "unknown shape 'dog'")])
def test_generate_refuses_prompts_the_world_cannot_render(vhslab, tmp_path, prompt, what):
    refused(vhslab("generate", prompt, "-o", "g.png"), "PROMPT", what)
    refused(vhslab("world", "render", prompt, "-o", "r.png"), "")
    assert list(tmp_path.iterdir()) == []


def test_image_sides_are_bounded_before_compute(vhslab, tmp_path):
    refused(vhslab("generate", PROMPT, "-o", "g.png", "--upscale", "100000"), "--upscale", "4096")
    refused(vhslab("generate", PROMPT, "-o", "g.png", "--upscale", "100"), "--upscale", "6400 px", "at most 4096")
    refused(vhslab("world", "render", PROMPT, "-o", "r.png", "--upscale", "100"), "--upscale", "6400 px")
    refused(vhslab("world", "render", PROMPT, "-o", "r.png", "--upscale", "100000"), "--upscale", "4096")
    assert list(tmp_path.iterdir()) == []
    code, output = vhslab("world", "render", PROMPT, "-o", "r.png", "--upscale", "64")  # 4096 px: allowed
    assert code == 0, output
    from PIL import Image

    assert Image.open(tmp_path / "r.png").size == (4096, 4096)


# --- batch sizes --------------------------------------------------------------------------------
def test_batch_size_is_clipped_to_the_rows_there_are(vhslab, tmp_path):
    from vhslab.data.store import open_zarr

    code, output = vhslab(*EXTRACT, "--limit", "2", "--batch-size", "100000", "--out", "s.zarr")
    assert code == 0, output
    assert "note: --batch-size 100000 clipped to the 4 rows there are" in output
    assert int(open_zarr(tmp_path / "s.zarr").attrs["sample_chunk"]) == 4
    code, output = vhslab("generate", PROMPT, "-o", "g.png", "--n", "3", "--batch-size", "100000", "--json")
    assert code == 0 and "note: --batch-size 100000 clipped to the 3 rows there are" in output


def test_batch_size_above_the_memory_estimate_is_refused(vhslab, tmp_path):
    line = refused(vhslab(*EXTRACT, "--n-per-prompt", "100000", "--batch-size", "100000", "--out", "s.zarr"),
                   "--batch-size 100000", "GB", "estimated", "available")
    assert "1.77 MB a row" in line  # the world's DiT: 64 tokens x 96 channels x 12 blocks x 6 float32 states
    assert list(tmp_path.iterdir()) == []


def test_fit_batch():
    from vhslab.cli.common import fit_batch, row_bytes

    assert fit_batch(8, 100) == 8 and fit_batch(100, 8) == 8
    with pytest.raises(ValueError, match="--internal-batch-size 10"):
        fit_batch(10, 100, 10**15, "--internal-batch-size")
    assert row_bytes(64, 96, 12) == 4 * 64 * 96 * 12 * 6


# --- budgets --------------------------------------------------------------------------------------
def test_budgets_are_capped_and_refused_when_they_buy_nothing(vhslab, tmp_path):
    refused(vhslab("bestofn", "--budgets", "1e9", "--out", "t.nc"), "--budgets 1e+09", "N = ", "at most 256")
    refused(vhslab("bestofn", "--budgets", "0.1,1", "--out", "t.nc"), "--budgets 0.1", "N < 1")
    refused(vhslab("bestofn", "--budgets", "1,inf", "--out", "t.nc"), "--budgets", "'1,inf'")
    refused(vhslab("bestofn", "--noise-budgets", "0", "--out", "t.nc"), "--noise-budgets")
    assert list(tmp_path.iterdir()) == []


def test_the_n_each_budget_buys_is_printed_first(vhslab, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "red"}], '
                       '"prompt": "a photo of a red circle"}\n')
    code, output = vhslab("bestofn", "--prompts", prompts, "--verifiers", "vhs,none", "--budgets", "1,2",
                          "--cost-model", "world", "--no-noise-search", "--n-boot", "10", "--no-progress",
                          "--workdir", tmp_path / "work", "--json")
    assert code == 0, output
    plan = next(line for line in output.splitlines() if line.startswith("N per prompt row under world"))
    # a verifier's Best-of-1 costs more than one plain generation (prompt, overhead, winner finished): none at budget 1
    assert "budget 1: vhs 0, none 1; budget 2: vhs 4, none 1" in plan


def test_budget_plan_refuses_before_compute():
    import vhslab
    from vhslab.cli.common import MAX_N as CLI_MAX_N
    from vhslab.search import load_cost_model
    from vhslab.search.generation import SearchError
    from vhslab.search.table import MAX_N, budget_plan

    assert MAX_N == CLI_MAX_N
    world, cost = vhslab.load_world(), [load_cost_model("world")]
    assert budget_plan(world, {}, [2.0], cost, ["none", "oracle"]) == {("world", 2.0, "none"): 1, ("world", 2.0, "oracle"): 4}
    with pytest.raises(SearchError, match="buys N = "):
        budget_plan(world, {}, [1000.0], cost, ["oracle"])
    with pytest.raises(SearchError, match="N < 1"):
        budget_plan(world, {}, [0.5], cost, ["oracle"])


# --- empty stores and stores without the asked rows ----------------------------------------------------
@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A store with 1 prompt row of 2 candidates at block.10, one without block.10, one with no rows."""
    from typer.testing import CliRunner

    from vhslab.data.store import open_zarr

    root = tmp_path_factory.mktemp("guards")
    for name, sites in (("one", "block.10"), ("other", "block.2")):
        argv = [*EXTRACT[:-3], "--sites", sites, "--no-progress", "--limit", "1", "--batch-size", "2", "--out", root / f"{name}.zarr"]
        result = CliRunner().invoke(app, [str(a) for a in argv])
        assert result.exit_code == 0, result.output
    zero = open_zarr(root / "one.zarr").isel(sample=slice(0, 0)).load()
    for v in zero.variables.values():
        v.encoding = {}
    with warnings.catch_warnings():  # zarr 3 on consolidated metadata
        warnings.simplefilter("ignore")
        zero.to_zarr(root / "zero.zarr", mode="w")
    return root


@pytest.mark.parametrize("argv, option, what", [
    (["--test", "zero.zarr", "--data", "one.zarr"], "--test", "zero.zarr"),
    (["--test", "one.zarr", "--data", "zero.zarr"], "--data", "zero.zarr"),
    (["--test", "other.zarr", "--data", "one.zarr"], "--test", "other.zarr: no rows of the verifier's site"),
    (["--test", "one.zarr", "--data", "other.zarr"], "--data", "other.zarr: no rows of the verifier's site"),
    (["--test", "one.zarr", "--data", "one.zarr"], "--n 4", "holds only 2 candidates"),
])
def test_verifier_eval_names_the_store_without_rows(vhslab, stores, argv, option, what):
    argv = [a if not a.endswith(".zarr") else stores / a for a in argv]
    line = refused(vhslab("verifier", "eval", *argv, "--text-only", "none", "--no-progress"), option, what)
    assert "store" in line or "candidates" in line, line  # it says which store, and what it lacks


def test_scoring_and_evaluating_no_rows():
    import numpy as np

    import vhslab
    from vhslab.verifier.evaluate import evaluate_scores

    assert vhslab.load_verifier().score(np.zeros((0, 64, 96), np.float32), []).shape == (0,)
    with pytest.raises(ValueError, match="no rows to evaluate"):
        evaluate_scores([], {"v": []}, group=[], tag=[], meaning=[], prompts=[])


def test_an_empty_prompt_is_refused_by_the_search_itself():
    import vhslab
    from vhslab.search import best_of_n
    from vhslab.search.generation import SearchError

    world = vhslab.load_world()
    with pytest.raises(SearchError, match="prompt is empty"):
        best_of_n(world.pipeline, "none", " ", 2, gen=world.gen_config)


@pytest.mark.parametrize("error, code", [
    (InputError("--n must be positive"), 2),              # bad input: the project's own type
    (MissingError("no file x.zarr"), 2),
    (ValueError("operands could not be broadcast"), 1),   # numpy's or sklearn's ValueError is a fault
    (FileNotFoundError("libfoo.so"), 1),
    (RuntimeError("boom"), 1),
])
def test_guard_exits_2_only_for_vhslab_errors(error, code, capsys):
    def command():
        raise error

    with pytest.raises(typer.Exit) as caught:
        guard(command)(threads=None)
    assert caught.value.exit_code == code
    line = capsys.readouterr().err.strip()
    assert line.startswith("error: ") and "\n" not in line and str(error) in line
    assert (type(error).__name__ in line) == (code == 1)  # a fault names its type
