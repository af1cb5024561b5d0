"""Smoke test of every generator training stage on tiny configs (the real world is not retrained)."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from vhslab import statefile
from vhslab.world.generator import GeneratorConfig, encode_text, one_step
from vhslab.world.scenes import training_pool
from vhslab.world.stage import CHECKPOINT
from vhslab.world.train import WorldTrainer, train_world

STAGES = ("autoencoder", "decoder", "teacher", "refine", "distill", "assemble")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    cfg = replace(GeneratorConfig.tiny(), ae_steps=40, decoder_steps=40, teacher_steps=40, refine_steps=40,
                  distill_steps=40, distill_pairs=32)
    metrics = train_world(out, seed=0, cfg=cfg, stages=STAGES, progress=False, log=lambda *a: None, threads=1)
    return out, cfg, metrics


def test_each_stage_loss_falls_and_is_recorded(tiny_run):
    out, cfg, metrics = tiny_run
    for stage in ("autoencoder", "decoder", "teacher", "refine", "distill"):
        assert metrics[stage]["loss_last"] < metrics[stage]["loss_first"], (stage, metrics[stage])
        assert json.loads((out / stage / "metrics.json").read_text())["loss_last"] == metrics[stage]["loss_last"]
    # the recorded agreement is the saved autoencoder's, recomputed from the checkpoint
    from diffusers import AutoencoderDC

    vae = AutoencoderDC.from_pretrained(out / "autoencoder" / "model").eval()
    trainer = WorldTrainer(out, cfg, seed=0, progress=False)
    assert trainer.reconstruction_agreement(vae) == metrics["autoencoder"]["verdict_agreement"]
    assert metrics["autoencoder"]["scaling_factor"] > 0


def test_rerun_skips_finished_stages_and_refuses_other_configs(tiny_run):
    out, cfg, metrics = tiny_run
    again = train_world(out, seed=0, cfg=cfg, stages=STAGES, progress=False, log=lambda *a: None, threads=1)
    assert again == metrics
    fresh = WorldTrainer(out, cfg, seed=0, progress=False)
    assert fresh.captions() == training_pool(cfg.pool_size, 0, cfg.resolution)[1]
    assert fresh._pool is None  # read from the run folder, not rendered again
    with pytest.raises(ValueError, match="another seed or config"):
        WorldTrainer(out, cfg, seed=1, progress=False)
    with pytest.raises(ValueError, match="unknown stage"):
        WorldTrainer(out, cfg, seed=0, progress=False).run(("nope",))


def test_assembled_world_is_a_real_one_step_pipeline(tiny_run):
    from diffusers import SanaSprintPipeline

    from vhslab.world import load_world

    out, cfg, _ = tiny_run
    pipe = SanaSprintPipeline.from_pretrained(out / "assemble" / "pipeline")
    assert pipe.transformer.config.qk_norm == "rms_norm_across_heads"
    assert pipe.transformer.config.guidance_embeds and pipe.transformer.config.patch_size == 1
    world = load_world(out)
    gen = world.gen_config.resolve(world.pipeline)
    prompts = ["a photo of a red circle", "a photo of two stars"]
    noise = torch.randn(2, cfg.latent_channels, gen.height // world.pipeline.vae_scale_factor,
                        gen.width // world.pipeline.vae_scale_factor, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        latents = world.pipeline(prompt=prompts, latents=noise.clone(), output_type="latent",
                                 **gen.call_kwargs(world.pipeline)).images
        embeds, mask = encode_text(world.tokenizer, world.pipeline.text_encoder, prompts,
                                   gen.max_sequence_length, "cpu")
        mine = one_step(world.pipeline.transformer, noise, embeds, mask, gen.guidance_scale)
    # the training arithmetic is the pipeline's, to the last bit
    assert torch.equal(latents, mine)
    images = world.pipeline(prompt=prompts, output_type="np", **gen.call_kwargs(world.pipeline)).images
    assert images.shape == (2, cfg.resolution, cfg.resolution, 3) and np.isfinite(images).all()


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(next(folder.glob("*.safetensors")))


def test_same_seed_same_weights(tmp_path):
    cfg = replace(GeneratorConfig.tiny(), pool_size=64)
    a = train_world(tmp_path / "a", cfg=cfg, stages=("autoencoder",), progress=False, log=lambda *a: None, threads=1)
    b = train_world(tmp_path / "b", cfg=cfg, stages=("autoencoder",), progress=False, log=lambda *a: None, threads=1)
    a["autoencoder"].pop("seconds")
    b["autoencoder"].pop("seconds")
    assert a == b


# teacher: its EMA and batch generator resume too; "teacher, noise apart": with the noise generator
# the flow stages use on a GPU (here a CPU one in its place)
@pytest.mark.parametrize("stage", ["autoencoder", pytest.param("teacher", marks=pytest.mark.slow),
                                   pytest.param("teacher, noise apart", marks=pytest.mark.slow)])
def test_interrupted_stage_resumes_to_the_same_result(tmp_path, monkeypatch, stage):
    import vhslab.world.train as train_mod
    import vhslab.world.train_flow as train_flow

    apart = stage.endswith("noise apart")
    if apart:
        stage = "teacher"
        monkeypatch.setattr(train_flow, "noise_generator", lambda device, seed: torch.Generator().manual_seed(seed))
    monkeypatch.setattr(train_mod, "CHECKPOINT_EVERY", 10)
    cfg = replace(GeneratorConfig.tiny(), pool_size=64, ae_steps=30, teacher_steps=30)
    quiet = dict(progress=False, log=lambda *a: None, threads=1)
    before = ("autoencoder",) if stage == "teacher" else ()
    for run in ("whole", "cut"):
        train_world(tmp_path / run, cfg=cfg, stages=before, **quiet)
    whole = train_world(tmp_path / "whole", cfg=cfg, stages=(stage,), **quiet)[stage]

    calls = {"n": 0}
    real_fit = train_mod.WorldTrainer._fit

    def crashing_fit(self, d, desc, steps, base_lr, warmup, model, opt, loss_fn, *rest, **kw):
        def loss_then_crash():
            calls["n"] += 1
            if calls["n"] == 25:
                raise KeyboardInterrupt  # killed mid-stage, after the checkpoint at step 20
            return loss_fn()

        return real_fit(self, d, desc, steps, base_lr, warmup, model, opt, loss_then_crash, *rest, **kw)

    monkeypatch.setattr(train_mod.WorldTrainer, "_fit", crashing_fit)
    with pytest.raises(KeyboardInterrupt):
        train_world(tmp_path / "cut", cfg=cfg, stages=(stage,), **quiet)
    extra = statefile.load(tmp_path / "cut" / stage / CHECKPOINT)["extra"]  # safetensors + JSON, no pickle
    assert ("noise_gen" in extra) == apart  # its state is kept where it exists
    monkeypatch.setattr(train_mod.WorldTrainer, "_fit", real_fit)
    resumed = train_world(tmp_path / "cut", cfg=cfg, stages=(stage,), **quiet)[stage]
    for metrics in (whole, resumed):
        metrics.pop("seconds")
    nested = [{k: m.pop(k) for k in list(m) if isinstance(m[k], dict)} for m in (whole, resumed)]
    assert nested[0] == nested[1]  # quick scores
    assert resumed == pytest.approx(whole, rel=1e-5)
    if stage == "teacher":
        a, b = (_weights(tmp_path / run / stage / "transformer") for run in ("whole", "cut"))
        assert all(torch.equal(a[k], b[k]) for k in a)  # EMA weights: the EMA state resumed exactly


def test_cli_prints_each_stage_line_with_its_name(tmp_path):
    from typer.testing import CliRunner

    from vhslab.cli.main import app

    result = CliRunner().invoke(app, ["world", "train", "--out", str(tmp_path / "run"), "--profile", "tiny",
                                      "--stages", "autoencoder", "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("[autoencoder] "))
    assert json.loads(line.removeprefix("[autoencoder] "))["scaling_factor"] > 0  # one line, no markup eaten
    last = json.loads(result.output.strip().splitlines()[-1])
    assert last["autoencoder"]["verdict_agreement"] >= 0
    assert last["wall_seconds"] >= last["autoencoder"]["seconds"] > 0 and last["already_finished"] == []
    again = CliRunner().invoke(app, ["world", "train", "--out", str(tmp_path / "run"), "--profile", "tiny",
                                     "--stages", "autoencoder", "--threads", "1", "--json"])
    last_again = json.loads(again.output.strip().splitlines()[-1])
    assert last_again["already_finished"] == ["autoencoder"] and last_again["autoencoder"] == last["autoencoder"]


@pytest.mark.slow  # worker processes each import torch: seconds to tens of seconds
def test_pool_rendered_in_worker_processes_equals_one_process():
    one = training_pool(4000, 7, 32, workers=1)
    two = training_pool(4000, 7, 32, workers=2)
    assert one[1] == two[1] and len(set(one[1])) > 100
    assert np.array_equal(one[0], two[0]) and one[0].std() > 10


@pytest.mark.slow  # worker processes each import torch: seconds to tens of seconds
def test_vision_and_llm_train_in_a_side_process_like_in_the_main_one(tmp_path):
    from vhslab.world.train import profile_configs

    tiny = {k: v for k, v in profile_configs("tiny").items() if k != "cfg"}
    cfg = replace(GeneratorConfig.tiny(), pool_size=64)
    lines = []
    quiet = dict(cfg=cfg, stages=("autoencoder", "vision", "llm"), progress=False, threads=1, **tiny)
    main = train_world(tmp_path / "main", side=False, log=lambda *a: None, **quiet)
    side = train_world(tmp_path / "side", side=True, log=lines.append, **quiet)
    assert list(side) == ["autoencoder", "vision", "llm"]
    assert any(x.startswith("vision, llm: training beside") for x in lines)
    assert [x.split(" ")[0] for x in lines if x.startswith("[")] == ["[autoencoder]", "[vision]", "[llm]"]
    for name in ("vision", "llm"):
        assert json.loads((tmp_path / "side" / name / "metrics.json").read_text()) == side[name]
        assert side[name]["device"] == "cpu" and side[name]["steps"] == main[name]["steps"]
        assert side[name]["final_loss"] == pytest.approx(main[name]["final_loss"], rel=0.05)
    again = train_world(tmp_path / "side", side=True, log=lines.append, **quiet)  # finished: no second process
    assert again == side and sum("training beside" in x for x in lines) == 1


@pytest.mark.slow  # worker processes each import torch: seconds to tens of seconds
def test_decoder_trains_beside_the_teacher_like_in_the_main_process(tmp_path, monkeypatch):
    import vhslab.world.train as train_mod

    monkeypatch.setattr(train_mod, "DECODER_BESIDE_MIN_THREADS", 1)  # this machine may have 2 cores
    cfg = replace(GeneratorConfig.tiny(), pool_size=64, ae_steps=10, decoder_steps=20, teacher_steps=10,
                  refine_steps=10, distill_steps=10)
    quiet = dict(cfg=cfg, stages=("autoencoder", "decoder", "teacher", "refine", "distill"), progress=False,
                 threads=1)
    main = train_world(tmp_path / "main", side=False, log=lambda *a: None, **quiet)
    lines = []
    side = train_world(tmp_path / "side", side=True, log=lines.append, **quiet)
    assert list(side) == list(main) == list(quiet["stages"])
    assert any(x.startswith("decoder: training beside") for x in lines)
    assert [x.split(" ")[0] for x in lines if x.startswith("[")][-1] == "[decoder]"  # logged once it is done
    assert (tmp_path / "side" / train_mod.POOL_IMAGES).exists() and not (tmp_path / "main" / train_mod.POOL_IMAGES).exists()
    for name, metrics in side.items():
        metrics.pop("seconds"), main[name].pop("seconds")
    assert side["decoder"] == pytest.approx(main["decoder"], rel=1e-4)
    # the teacher stages score with the autoencoder stage's decoder, the student with the fine-tuned one
    for name in ("autoencoder", "teacher", "refine", "distill"):
        assert side[name] == main[name], name
    again = train_world(tmp_path / "side", side=True, log=lines.append, **quiet)  # finished: no process
    assert sum("training beside" in x for x in lines) == 1
    assert {k: {m: v for m, v in d.items() if m != "seconds"} for k, d in again.items()} == side


@pytest.mark.slow  # >= 15 s on 2 cores: the full suite (CI) runs it
def test_bf16_autocast_trains_with_other_numbers(tmp_path):
    cfg = replace(GeneratorConfig.tiny(), pool_size=64, ae_steps=30, teacher_steps=30)
    quiet = dict(stages=("autoencoder", "teacher"), progress=False, log=lambda *a: None, threads=1)
    fp32 = train_world(tmp_path / "fp32", cfg=cfg, **quiet)
    bf16 = train_world(tmp_path / "bf16", cfg=replace(cfg, bf16=True), **quiet)
    for name in ("autoencoder", "teacher"):
        assert bf16[name]["loss_last"] < bf16[name]["loss_first"]
        assert bf16[name]["loss_first"] != fp32[name]["loss_first"]
        assert bf16[name]["loss_first"] == pytest.approx(fp32[name]["loss_first"], rel=0.05)


def test_a_run_folder_from_before_a_config_field_existed_resumes(tmp_path):
    cfg = replace(GeneratorConfig.tiny(), pool_size=64)
    WorldTrainer(tmp_path, cfg, progress=False)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["generator"]["bf16"]  # a run begun before the field was added
    (tmp_path / "config.json").write_text(json.dumps(saved))
    WorldTrainer(tmp_path, cfg, progress=False)
    with pytest.raises(ValueError, match="another seed or config"):
        WorldTrainer(tmp_path, replace(cfg, bf16=True), progress=False)


@pytest.mark.slow  # torch.compile builds C++ on the CPU
@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="torch.compile on the CPU needs a C compiler")
def test_compiled_blocks_train_like_eager_ones(tmp_path):
    cfg = replace(GeneratorConfig.tiny(), pool_size=64, ae_steps=10, teacher_steps=10, distill_steps=10)
    quiet = dict(stages=("autoencoder", "teacher", "distill"), progress=False, log=lambda *a: None, threads=1)
    eager = train_world(tmp_path / "eager", cfg=cfg, **quiet)
    compiled = train_world(tmp_path / "compiled", cfg=replace(cfg, compile_blocks=True), **quiet)
    for name in ("teacher", "distill"):
        assert compiled[name]["loss_first"] == pytest.approx(eager[name]["loss_first"], rel=1e-3)
        assert compiled[name]["loss_last"] == pytest.approx(eager[name]["loss_last"], rel=1e-2)
    a, b = (_weights(tmp_path / run / "distill" / "transformer") for run in ("eager", "compiled"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-3) for k in a)


def test_gpu_profile_is_the_shipped_checkpoints_recipe():
    """Resizing the CPU profile must not change the recipe the shipped world came from."""
    shipped = json.loads((Path(__file__).resolve().parents[1] / "docs" / "world_train_config.json").read_text())
    gpu = json.loads(json.dumps(GeneratorConfig.gpu().to_dict()))  # tuples as lists, like the file
    assert shipped["seed"] == 0
    # fields the shipped file predates: how steps run, not what is trained (bf16: the shipped run was
    # fp32/TF32, a retrain under bf16 matched it stage by stage, docs/world.md)
    execution_only = {"compile_blocks", "pairs_batch", "bf16"}
    assert set(gpu) - set(shipped["generator"]) == execution_only  # a new recipe field must be recorded
    assert {k: gpu[k] for k in shipped["generator"]} == shipped["generator"]
