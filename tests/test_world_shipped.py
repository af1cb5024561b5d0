"""The shipped world loads and runs (its quality is measured by `vhslab world score`)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vhslab import load_world
from vhslab.cli.main import app
from vhslab.world import WORLD_DIR, WorldMissingError


def test_shipped_world_is_small_and_complete():
    size = sum(f.stat().st_size for f in WORLD_DIR.rglob("*") if f.is_file())
    assert size < 40 * 2**20
    info = json.loads((WORLD_DIR / "world.json").read_text())
    assert info["resolution"] == 64


def test_pipeline_is_a_real_one_step_sana_sprint(world):
    from diffusers import SanaSprintPipeline

    pipe = world.pipeline
    assert isinstance(pipe, SanaSprintPipeline)
    assert not (pipe.transformer.training or pipe.vae.training or pipe.text_encoder.training)
    assert not (world.clip.training or world.llm.training)
    cfg = pipe.transformer.config
    assert cfg.qk_norm == "rms_norm_across_heads" and cfg.guidance_embeds and cfg.patch_size == 1
    assert cfg.num_layers >= 12
    gen = world.gen_config.resolve(pipe)
    kwargs = gen.call_kwargs(pipe)
    a = pipe(prompt=["a photo of a red circle"], generator=torch.Generator().manual_seed(3), output_type="np", **kwargs)
    b = pipe(prompt=["a photo of a red circle"], generator=torch.Generator().manual_seed(3), output_type="np", **kwargs)
    assert a.images.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(a.images, b.images)  # seeded: reproducible candidates


def test_vision_encoder_and_llm_run(world):
    img = np.full((2, 64, 64, 3), 128, np.uint8)
    feats = world.vision(img)
    assert feats.ndim == 3 and feats.shape[0] == 2 and torch.isfinite(feats).all()
    ids = world.tokenizer(["a photo of a red circle"], return_tensors="pt").input_ids
    logits = world.llm(ids).logits
    assert logits.shape[-1] >= len(world.tokenizer)


def test_missing_world_is_a_clear_error(tmp_path):
    with pytest.raises(WorldMissingError, match=r"model_index\.json"):
        load_world(tmp_path)


def test_world_score_json_on_a_few_prompts():
    result = CliRunner().invoke(app, ["world", "score", "--n-per-prompt", "2", "--limit", "12", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["n_prompts"] == 12 and report["n_distinct_prompts"] == 4  # GenEval repeats prompts
    lo, hi = report["bo1"]["ci"]
    assert lo <= report["bo1"]["overall"] <= hi
    assert report["evaluator"]["version"] == "2"


def test_world_score_interval_resamples_meanings_not_rows():
    from vhslab.world.score import tag_score_ci

    rng = np.random.default_rng(0)
    tags = np.repeat(["colors", "position"], 50)
    meanings = np.repeat(np.arange(20), 5)  # every meaning listed 5 times (GenEval repeats prompts)
    correct = np.repeat(rng.random(20) < 0.5, 5)  # rows of a meaning share their fate
    once = np.arange(0, 100, 5)
    assert tag_score_ci(tags, meanings, correct) == tag_score_ci(tags[once], meanings[once], correct[once])


@pytest.mark.slow
def test_shipped_world_reproduces_its_documented_score():
    """docs/world_score.json (the README's table) is what the shipped world scores now."""
    from vhslab.shapes.suites import load_suite
    from vhslab.world.score import score_generator

    doc = json.loads((Path(__file__).parents[1] / "docs" / "world_score.json").read_text())
    world = load_world()
    torch.set_num_threads(2)
    got = score_generator(world.pipeline, load_suite("geneval-shapes"), doc["n_per_prompt"], world.gen_config,
                          seed=doc["seed"], progress=False)
    for key in ("bo1", "oracle_bo4"):  # a verdict or two may flip on another CPU's float rounding
        assert got[key]["overall"] == pytest.approx(doc[key]["overall"], abs=0.004), key
        for tag, value in doc[key]["per_tag"].items():
            assert got[key]["per_tag"][tag] == pytest.approx(value, abs=0.02), (key, tag)
