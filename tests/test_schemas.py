"""Every input file has a schema: bad files are refused naming the file, the line or field and what was
expected; the files vhslab ships (and GenEval's) are accepted as they are."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers.tiny_models import tiny_llm
from safetensors.torch import save_file
from typer.testing import CliRunner

import vhslab
from vhslab import schemas
from vhslab.cli.main import app
from vhslab.search import SearchError, load_cost_model
from vhslab.shapes.prompts import PromptError, read_prompts
from vhslab.verifier.model import LatentVerifier, VerifierConfig, VerifierError, from_release
from vhslab.world.text import build_word_tokenizer

torch.set_num_threads(1)
ASSETS = Path(vhslab.__file__).parent / "assets"
GOOD_ROW = {"tag": "counting", "include": [{"class": "circle", "count": 2}], "exclude": [{"class": "circle", "count": 3}],
            "prompt": "a photo of two circles"}


def cli_error(*args) -> tuple[int, str]:
    """Exit code and the one `error:` line of a command run through the entry point."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return result.exit_code, lines[0]


# --- prompt rows ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    ({"exclude": None}, 'field exclude: expected a list, got null'),
    ({"prompt": 42}, "field prompt: expected a non-blank string, got 42"),
    ({"prompt": " "}, 'field prompt: expected a non-blank string, got " "'),
    ({"tag": "counting_objects"}, "field tag: expected one of GenEval's tags 'single_object'"),
    ({"include": [{"class": "circle", "count": "x"}]}, 'field include[0].count: expected an integer >= 1, got "x"'),
    ({"include": [{"class": "circle", "count": -2}]}, "field include[0].count: expected an integer >= 1, got -2"),
    ({"include": [{"class": "circle", "count": 2.5}]}, "field include[0].count: expected an integer >= 1, got 2.5"),
    ({"include": [{"class": "circle", "count": True}]}, "field include[0].count: expected an integer >= 1, got true"),
    ({"include": []}, "field include: expected at least 1 item(s)"),
    ({"include": [{"class": "circle", "colour": "red"}]}, "field include[0].colour: unknown field"),
    ({"include": [{"class": "circle", "position": ["near", 0]}]}, "field include[0].position[0]: expected one of 'left of'"),
])
def test_bad_prompt_rows_name_the_file_line_and_field(tmp_path, change, message):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps(GOOD_ROW) + "\n\n" + json.dumps({**GOOD_ROW, **change}) + "\n")
    with pytest.raises(PromptError) as err:
        read_prompts(path)
    assert str(err.value).startswith("prompts.jsonl:3: ") and message in str(err.value)


def test_non_finite_counts_and_torn_lines(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(GOOD_ROW).replace('"count": 2', '"count": NaN') + "\n" + json.dumps(GOOD_ROW)[:30] + "\n")
    with pytest.raises(PromptError) as err:
        read_prompts(path)
    text = str(err.value)
    assert "p.jsonl:1: field include[0].count: expected an integer >= 1, got NaN" in text
    assert "p.jsonl:2: invalid JSON (" in text and "at column" in text
    array = tmp_path / "p.json"
    array.write_text(json.dumps([GOOD_ROW, {**GOOD_ROW, "tag": "colours"}]))
    with pytest.raises(PromptError, match=r"p\.json\[1\]: field tag: expected one of"):
        read_prompts(array)


def test_the_geneval_file_loads_as_it_is(geneval_file, tmp_path):
    copy = tmp_path / "geneval.jsonl"
    shutil.copy(geneval_file, copy)
    specs = read_prompts(copy)
    assert len(specs) == 553 and {s.tag for s in specs} == set(schemas.TAGS)


def test_a_bad_prompt_file_is_one_error_line_before_any_compute(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({**GOOD_ROW, "tag": "size"}) + "\n")
    code, line = cli_error("bestofn", "--prompts", path, "--cost-model", "world", "--out", tmp_path / "t.nc")
    assert code == 2 and "p.jsonl:1: field tag: expected one of GenEval's tags" in line
    assert not (tmp_path / "t.nc").exists()


# --- cost models ---------------------------------------------------------------------------------------
def _cost_model(tmp_path, **change) -> Path:
    raw = json.loads((ASSETS / "costs" / "world.json").read_text())
    for key, value in change.items():
        if key == "num_blocks":
            raw[key] = value
        else:
            raw["stages_ms"]["batch_4"][key] = value
    path = tmp_path / "m.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize("change, message", [
    ({"dit_block": -1.0}, "field stages_ms.batch_4.dit_block: expected a finite number of milliseconds > 0, got -1.0"),
    ({"dit_block": 0}, "field stages_ms.batch_4.dit_block: expected a finite number of milliseconds > 0, got 0"),
    ({"llm_prefill": float("nan")}, "field stages_ms.batch_4.llm_prefill: expected a finite number of milliseconds > 0, got NaN"),
    ({"decode": float("inf")}, "field stages_ms.batch_4.decode: expected a finite number of milliseconds > 0, got Infinity"),
    ({"decode": "5"}, 'field stages_ms.batch_4.decode: expected a finite number of milliseconds > 0, got "5"'),
    ({"num_blocks": 0}, "field num_blocks: expected an integer >= 1, got 0"),
    ({"num_blocks": 12.5}, "field num_blocks: expected an integer >= 1, got 12.5"),
])
def test_bad_cost_models_are_refused(tmp_path, change, message):
    path = _cost_model(tmp_path, **change)
    with pytest.raises(SearchError) as err:
        load_cost_model(str(path))
    assert str(err.value) == f"{path}: not a cost model: {message}"


def test_cost_models_shipped_load_and_bad_json_names_the_file(tmp_path):
    for path in sorted((ASSETS / "costs").glob("*.json")):
        model = load_cost_model(str(path))
        assert model.num_blocks >= 1 and min(model.batch_1.values()) > 0 and min(model.batch_4.values()) > 0
    path = tmp_path / "torn.json"
    path.write_text('{"name": "x", "card": ')
    with pytest.raises(SearchError, match=r"torn\.json: not a cost model: invalid JSON \(.* line 1 column"):
        load_cost_model(str(path))


def test_a_bad_cost_model_is_one_error_line(tmp_path):
    path = _cost_model(tmp_path, dit_block=0)
    code, line = cli_error("bestofn", "--cost-model", f"world,{path}", "--budgets", "1", "--out", tmp_path / "t.nc")
    assert code == 2 and f"{path}: not a cost model: field stages_ms.batch_4.dit_block" in line
    assert not (tmp_path / "t.nc").exists()


# --- verifier folders and the release layout ------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    v = LatentVerifier.create(tiny_llm(), build_word_tokenizer(), "block.3", 16, seed=1)
    return v.save_pretrained(tmp_path_factory.mktemp("v") / "verifier")


@pytest.mark.parametrize("change, message", [
    ({"in_channels": 0}, "field in_channels: expected an integer >= 1, got 0"),
    ({"in_channels": "16"}, 'field in_channels: expected an integer >= 1, got "16"'),
    ({"eps": float("nan")}, "field eps: expected a finite number > 0, got NaN"),
    ({"site": "block.x"}, "field site: expected 'block.<k>', 'ae_latent', 'vision' or 'text', got \"block.x\""),
    ({"answers": ["yes"]}, "field answers[1]: missing"),
    ({"token_grid": 0}, "field token_grid: expected an integer >= 1, got 0"),
    ({"question": "does it match?"}, "field question: expected a string holding {prompt}"),
    ({"sitee": "block.3"}, "field sitee: unknown field"),
])
def test_bad_verifier_configs_are_refused_before_loading(saved, tmp_path, change, message):
    folder = tmp_path / "v"
    shutil.copytree(saved, folder)
    raw = json.loads((folder / "verifier.json").read_text())
    (folder / "verifier.json").write_text(json.dumps({**raw, **change}))
    with pytest.raises(VerifierError) as err:
        LatentVerifier.from_pretrained(folder)
    assert str(err.value).startswith(f"{folder / 'verifier.json'}: ") and message in str(err.value)


def test_verifier_folder_without_llm_or_with_torn_json(saved, tmp_path):
    from vhslab.verifier.load import load_llm as _llm

    folder = tmp_path / "v"
    shutil.copytree(saved, folder)
    (folder / "llm" / "model.safetensors").unlink()  # read locally: a clear error, no hub id, no network
    with pytest.raises(VerifierError, match=r"is not a complete saved LatentVerifier: .*no file named model\.safetensors"):
        vhslab.load_verifier(folder)
    with pytest.raises(FileNotFoundError, match=r"--llm .*no file named model\.safetensors"):
        _llm(str(folder / "llm"))
    shutil.rmtree(folder / "llm")
    with pytest.raises(FileNotFoundError, match=r"is not a saved LatentVerifier: llm/config\.json missing"):
        vhslab.load_verifier(folder)
    (folder / "verifier.json").write_text('{"site": "block.3",')
    with pytest.raises(VerifierError, match=r"verifier\.json: invalid JSON \(.*line 1 column"):
        LatentVerifier.from_pretrained(folder, llm=tiny_llm())


def test_load_verifier_checks_the_kind(saved):
    for kind in ("vhs", "text", "vision", "ae"):  # every shipped verifier fits the schema and is of its kind
        config = schemas.read_verifier_config(ASSETS / {"vhs": "verifier"}.get(kind, f"verifier_{kind}"), VerifierConfig, kind)
        assert schemas.kind_of(config.site) == kind
    assert vhslab.load_verifier(saved, kind="vhs").config.site == "block.3"
    with pytest.raises(VerifierError, match=r"holds a vhs verifier \(site 'block\.3'\), not a text verifier"):
        vhslab.load_verifier(saved, kind="text")
    with pytest.raises(ValueError, match="unknown verifier kind 'clip'"):
        vhslab.load_verifier(saved, kind="clip")


def test_verifier_eval_refuses_a_visual_verifier_as_the_text_only_one():
    code, line = cli_error("verifier", "eval", ASSETS / "verifier", "--text-only", ASSETS / "verifier")
    assert code == 2 and "holds a vhs verifier (site 'block.10'), not a text verifier" in line


def _release(folder: Path) -> Path:
    """A verifier in the public release's layout (as tests/test_verifier.py builds it)."""
    llm = tiny_llm(seed=3)
    folder.mkdir()
    raw = {**llm.config.to_dict(), "model_type": "llava_qwen", "mm_hidden_size": 16, "mm_projector_type": "mlp2x_gelu"}
    (folder / "config.json").write_text(json.dumps(raw))
    state = {k: v.contiguous() for k, v in llm.state_dict().items() if k != "lm_head.weight"}
    for i in (0, 2):
        state[f"model.mm_projector.{i}.weight"] = torch.randn(32, 16 if i == 0 else 32)
        state[f"model.mm_projector.{i}.bias"] = torch.zeros(32)
    save_file(state, folder / "model.safetensors")
    build_word_tokenizer().save_pretrained(folder)
    torch.save(torch.zeros(1, 16).bfloat16(), folder / "block_7_mean_bf16.pt")
    torch.save(torch.ones(1, 16).bfloat16(), folder / "block_7_variance_bf16.pt")
    return folder


def test_release_layout_is_checked(tmp_path):
    folder = _release(tmp_path / "release")
    assert from_release(folder).config.site == "block.7"
    raw = json.loads((folder / "config.json").read_text())
    for change, message in (({"mm_projector_type": "linear"}, "field mm_projector_type: expected 'mlp2x_gelu'"),
                            ({"mm_hidden_size": 0}, "field mm_hidden_size: expected an integer >= 1, got 0"),
                            ({"num_hidden_layers": None}, "field num_hidden_layers: expected an integer >= 1, got null")):
        (folder / "config.json").write_text(json.dumps({**raw, **change}))
        with pytest.raises(VerifierError) as err:
            from_release(folder)
        assert str(err.value).startswith(f"{folder / 'config.json'}: not a release config: ") and message in str(err.value)
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(FileNotFoundError, match=r"statistics of site block\.5 are missing \(block_5_mean_bf16\.pt"):
        from_release(folder, site="block.5")
    with pytest.raises(VerifierError, match=r"site: expected 'block\.<k>'"):
        from_release(folder, site="hidden_7")
    (folder / "block_7_variance_bf16.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"block_7_variance_bf16\.pt"):
        from_release(folder)


# --- world folders, stage records and gold files ----------------------------------------------------------
def test_the_shipped_world_configs_fit_their_schemas():
    from vhslab.world.llm_train import LLMTrainConfig
    from vhslab.world.vision_train import VisionTrainConfig

    world = ASSETS / "world"
    info = schemas.load(world / "world.json", schemas.WorldInfo)
    assert info.max_sequence_length >= 1 and info.default_guidance > 0
    for name, config_class in (("llm", LLMTrainConfig), ("vision", VisionTrainConfig)):
        record = schemas.read_run_record(world / name / "train_config.json", config_class, "config")
        assert record == json.loads((world / name / "train_config.json").read_text())


def test_a_bad_world_json_is_named(tmp_path):
    from vhslab.world import load_world

    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "model_index.json").write_text("{}")
    (tmp_path / "world.json").write_text(json.dumps({"default_guidance": "2.5", "max_sequence_length": 0}))
    with pytest.raises(ValueError) as err:
        load_world(tmp_path)
    text = str(err.value)
    assert text.startswith(f"{tmp_path / 'world.json'}: not a world's info: ")
    assert 'field default_guidance: expected a finite number >= 0, got "2.5"' in text
    assert "field max_sequence_length: expected an integer >= 1, got 0" in text


def test_stage_records_and_metrics_are_checked(tmp_path):
    from vhslab.world import stage
    from vhslab.world.llm_train import LLMTrainConfig

    stage.check_config(tmp_path, LLMTrainConfig.tiny(), seed=0)
    path = tmp_path / stage.CONFIG
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "config": {**saved["config"], "steps": "8"}}))
    with pytest.raises(ValueError, match=r"train_config\.json: not a training record of this stage: field config\.steps: "
                                         r"expected an integer, got \"8\""):
        stage.check_config(tmp_path, LLMTrainConfig.tiny(), seed=0)
    path.write_text(json.dumps({**saved, "config": {**saved["config"], "lr": float("nan")}}))
    with pytest.raises(ValueError, match=r"field config\.lr: expected a finite number, got NaN"):
        stage.check_config(tmp_path, LLMTrainConfig.tiny(), seed=0)
    (tmp_path / stage.METRICS).write_text('{"loss": 0.5')
    with pytest.raises(ValueError, match=r"metrics\.json: invalid JSON"):
        stage.finished_metrics(tmp_path)


def test_gold_records_are_checked(tmp_path):
    from vhslab.shapes.gold import GOLD_FILE, read_gold

    assert len(read_gold(GOLD_FILE)) > 0  # the shipped gold file fits
    lines = GOLD_FILE.read_text().splitlines()[:2]
    bad = json.loads(lines[1]) | {"split": "test", "seed": -1}
    path = tmp_path / "gold.jsonl"
    path.write_text(lines[0] + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError) as err:
        read_gold(path)
    text = str(err.value)
    assert text.startswith(f"{path}:2: not a gold record: ")
    assert "field split: expected 'dev' or 'holdout', got \"test\"" in text and "field seed: expected an integer >= 0" in text
