"""The shipped world loads and runs (its quality is measured by `vhslab world score`)."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vhslab import load_world
from vhslab.cli.main import app
from vhslab.world import WORLD_DIR, WorldMissingError


@pytest.fixture(scope="module")
def world():
    return load_world()


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
    assert 0 <= report["bo1"]["overall"] <= report["oracle_bo2"]["overall"] <= 1
    assert report["images_per_s"] > 0
