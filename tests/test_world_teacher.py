"""The world's multi-step teacher: an exact conversion of the student's DiT, a real diffusers SanaPipeline
with a flow-matching Euler scheduler, trained by a seeded, resumable recipe."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vhslab.cli.main import app
from vhslab.errors import InputError
from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.phrasing import parse_prompt
from vhslab.world.generator import GUIDANCE_EMBEDS_SCALE, velocity
from vhslab.world.teacher import TeacherConfig, load_teacher, teacher_transformer_from, train_teacher


@pytest.mark.parametrize("guidance", [1.0, 2.5])
def test_converted_dit_has_the_students_velocity_at_its_guidance(world, guidance):
    student = world.pipeline.transformer
    teacher = teacher_transformer_from(student, guidance)
    assert not teacher.config.guidance_embeds and teacher.config.timestep_scale == pytest.approx(0.001)
    g = torch.Generator().manual_seed(0)
    c, s = student.config.in_channels, student.config.sample_size
    x = torch.randn(3, c, s, s, generator=g)
    tau = torch.tensor([0.1, 0.5, 0.9])
    embeds = torch.randn(3, 5, student.config.caption_channels, generator=g)
    mask = torch.ones(3, 5, dtype=torch.long)
    with torch.no_grad():
        want = velocity(student, x, tau, embeds, mask, torch.full((3,), guidance * GUIDANCE_EMBEDS_SCALE))
        got = teacher(x, encoder_hidden_states=embeds, encoder_attention_mask=mask, timestep=tau, return_dict=False)[0]
        other = velocity(student, x, tau, embeds, mask, torch.full((3,), (guidance + 1) * GUIDANCE_EMBEDS_SCALE))
    assert (got - want).abs().max() < 1e-4
    assert (other - want).abs().max() > 1e-3  # the guidance matters: the check can fail


def test_shipped_teacher_is_a_multistep_flow_matching_sana_pipeline(world):
    from diffusers import FlowMatchEulerDiscreteScheduler, SanaPipeline

    pipe, gen = world.teacher, world.teacher_gen_config
    assert isinstance(pipe, SanaPipeline) and isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler)
    assert gen.steps == 8 and gen.guidance_scale == world.gen_config.guidance_scale
    for a, b in ((pipe.vae, world.pipeline.vae), (pipe.text_encoder, world.pipeline.text_encoder)):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(p, q), name  # the student's frozen autoencoder and text encoder
    kwargs = gen.resolve(pipe).call_kwargs(pipe)
    prompts = ["a photo of a red circle"] * 4
    out = [pipe(prompt=prompts, generator=[torch.Generator().manual_seed(i) for i in range(4)], output_type="np",
                **kwargs).images for _ in range(2)]
    np.testing.assert_array_equal(out[0], out[1])  # seeded
    assert out[0].shape == (4, 64, 64, 3)
    ev = ShapesEvaluator()
    right = [ev.evaluate((img * 255).round().astype(np.uint8), parse_prompt(prompts[0])).correct for img in out[0]]
    assert sum(right) >= 3, right  # trained: it draws what it is asked (an untrained DiT draws noise)


@pytest.mark.slow
def test_teacher_recipe_trains_saves_resumes_and_refuses_other_settings(world, tmp_path):
    out = tmp_path / "teacher"
    first = train_teacher(out, world, TeacherConfig.tiny(), seed=0, progress=False)
    assert first["steps"] == TeacherConfig.tiny().steps and np.isfinite(first["loss_last"])
    pipe = load_teacher(out / "pipeline")
    before = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    assert train_teacher(out, world, TeacherConfig.tiny(), seed=0, progress=False) == first  # finished: not rerun
    assert all(torch.equal(v, load_teacher(out / "pipeline").transformer.state_dict()[k]) for k, v in before.items())
    with pytest.raises(InputError, match="another seed or config"):
        train_teacher(out, world, TeacherConfig.tiny(), seed=1, progress=False)
    with pytest.raises(InputError, match=r"expected model_index\.json"):
        load_teacher(tmp_path / "nothing")


def test_world_score_runs_the_teacher_and_refuses_steps_for_the_student():
    runner = CliRunner()
    bad = runner.invoke(app, ["world", "score", "--steps", "3", "--limit", "2", "--json"])
    assert bad.exit_code == 2 and "one-step" in bad.output
    ok = runner.invoke(app, ["world", "score", "--generator", "teacher", "--steps", "2", "--limit", "2",
                             "--n-per-prompt", "1", "--json"])
    assert ok.exit_code == 0, ok.output
    res = json.loads(ok.stdout.strip().splitlines()[-1])
    assert res["generator"] == "teacher" and res["steps"] == 2 and res["n_prompts"] == 2
