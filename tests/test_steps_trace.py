"""Steps as an axis of the trace: x_t, x0_hat and block sites at a denoising step, on a real tiny
multi-step SanaPipeline (flow-matching Euler, classifier-free guidance); no mocks."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from vhslab.data import open_zarr
from vhslab.data.extract import extract
from vhslab.errors import InputError
from vhslab.pipeline import GenConfig
from vhslab.shapes.suites import load_suite
from vhslab.testing.tiny import SANA_TEACHER_CALL as CALL
from vhslab.testing.tiny import generators as gens
from vhslab.testing.tiny import tiny_sana_pipeline
from vhslab.trace import Site, SiteError, find_site, site_array, store_sites, trace

torch.set_num_threads(1)
PROMPTS = ["a photo of a red circle", "a photo of two blue squares"]
STEPS = CALL["num_inference_steps"]
EVERY = [f"{kind}@step{n}" for kind in ("x_t", "x0_hat") for n in range(STEPS)]


@pytest.fixture(scope="module")
def pipe():
    return tiny_sana_pipeline(num_layers=4)


def plain(pipe, **kw):
    """A plain call; the latents after each step, from the pipeline's own callback."""
    after = []

    def keep(_pipe, _i, _t, tensors):
        after.append(tensors["latents"].clone())
        return {}

    images = pipe(PROMPTS, generator=gens(), callback_on_step_end=keep, **{**CALL, **kw}).images
    return images, after


def traced(pipe, reads, **options):
    images = None  # a trace that stops early returns no images
    with trace(pipe, reads, calls=STEPS, dtype=torch.float32, **options) as t:
        images = pipe(PROMPTS, generator=gens(), **CALL).images
    return t, images


def untouched(pipe):
    return ("step" not in pipe.scheduler.__dict__ and "prepare_latents" not in pipe.__dict__
            and all(not b._forward_hooks for b in pipe.transformer.transformer_blocks))


def test_x_t_is_what_the_scheduler_receives_and_tracing_changes_nothing(pipe):
    images, after = plain(pipe)
    t, traced_images = traced(pipe, [*EVERY, "all", "image"], stop=False)
    assert torch.equal(images, traced_images)  # bit for bit
    noise = torch.cat([torch.randn((1, 4, 8, 8), generator=g) for g in gens()])  # the pipeline's initial latents
    assert torch.equal(t.last("x_t@step0"), noise)
    for n in range(1, STEPS):
        assert torch.equal(t.last(f"x_t@step{n}"), after[n - 1])
    assert t.sigmas == pytest.approx(pipe.scheduler.sigmas[:STEPS].tolist())
    assert t.timesteps == pytest.approx(pipe.scheduler.timesteps.tolist())
    assert t["block.3"].shape == (STEPS, 2, 64, 16)  # the conditional rows of every step
    at, _ = traced(pipe, "block.3@step1", stop=False)
    assert torch.equal(at.last("block.3@step1"), t["block.3"][1])
    assert untouched(pipe)


def test_x0_hat_is_x_t_minus_sigma_times_the_guided_velocity(pipe):
    _, after = plain(pipe)
    t, _ = traced(pipe, EVERY, stop=False)
    sigmas = pipe.scheduler.sigmas
    pos, pos_mask, neg, neg_mask = pipe.encode_prompt(PROMPTS, max_sequence_length=8, complex_human_instruction=None)
    for n in range(STEPS):
        x_t = t.last(f"x_t@step{n}")
        with torch.no_grad():  # a plain call of the transformer on both branches, guided by hand
            v = pipe.transformer(torch.cat([x_t] * 2), encoder_hidden_states=torch.cat([neg, pos]),
                                 encoder_attention_mask=torch.cat([neg_mask, pos_mask]),
                                 timestep=pipe.scheduler.timesteps[n].expand(4) * pipe.transformer.config.timestep_scale,
                                 return_dict=False)[0].float()
        uncond, cond = v.chunk(2)
        guided = uncond + CALL["guidance_scale"] * (cond - uncond)
        torch.testing.assert_close(t.last(f"x0_hat@step{n}"), x_t - sigmas[n] * guided, atol=1e-5, rtol=0)
        # and the Euler step the scheduler takes from it: x_{n+1} = x_n + (sigma_{n+1} - sigma_n) v
        torch.testing.assert_close(after[n], x_t + (sigmas[n + 1] - sigmas[n]) * guided, atol=1e-5, rtol=0)


def test_block_reads_keep_the_chosen_guidance_branch(pipe):
    both, _ = traced(pipe, "block.2@step1", branch="both")
    cond, _ = traced(pipe, "block.2@step1")
    uncond, _ = traced(pipe, "block.2@step1", branch="uncond")
    rows = both.last("block.2@step1")
    assert rows.shape[0] == 4
    assert torch.equal(cond.last("block.2@step1"), rows[2:]) and torch.equal(uncond.last("block.2@step1"), rows[:2])
    with pytest.raises(SiteError, match="branch"):
        trace(pipe, "block.2", branch="guided")


def test_a_block_write_at_step_n_changes_only_the_later_steps(pipe):
    n = 1
    base, base_images = traced(pipe, EVERY, stop=False)
    with trace(pipe, EVERY, writes={"block.2@step1": lambda h: h + 1.0}, calls=STEPS, dtype=torch.float32, stop=False) as t:
        images = pipe(PROMPTS, generator=gens(), **CALL).images
    for k in range(STEPS):
        same = torch.equal(t.last(f"x_t@step{k}"), base.last(f"x_t@step{k}"))
        assert same == (k <= n), k
    assert not torch.equal(t.last(f"x0_hat@step{n}"), base.last(f"x0_hat@step{n}"))
    assert torch.equal(t.last(f"x0_hat@step{n - 1}"), base.last(f"x0_hat@step{n - 1}"))
    assert not torch.equal(images, base_images)
    assert untouched(pipe)


@pytest.mark.parametrize("n", [0, 2])
def test_an_x_t_write_replaces_the_latent_entering_step_n(pipe, n):
    base, _ = traced(pipe, [*EVERY, "block.1@step2"], stop=False)
    with trace(pipe, [*EVERY, "block.1@step2"], writes={f"x_t@step{n}": lambda z: z * 0.5}, calls=STEPS,
               dtype=torch.float32, stop=False) as t:
        pipe(PROMPTS, generator=gens(), **CALL)
    torch.testing.assert_close(t.last(f"x_t@step{n}"), base.last(f"x_t@step{n}") * 0.5, atol=0, rtol=0)
    for k in range(n):
        assert torch.equal(t.last(f"x_t@step{k}"), base.last(f"x_t@step{k}"))
    # the transformer saw the edited latent: its blocks and estimate at step n differ
    assert not torch.equal(t.last(f"x0_hat@step{n}"), base.last(f"x0_hat@step{n}"))
    assert not torch.equal(t.last("block.1@step2"), base.last("block.1@step2"))


def test_stop_after_the_last_needed_step(pipe):
    ran = []
    handle = pipe.transformer.register_forward_pre_hook(lambda *a: ran.append(1))
    try:
        full, _ = traced(pipe, ["x_t@step1", "x0_hat@step1"], stop=False)
        ran.clear()
        early, _ = traced(pipe, ["x_t@step1", "x0_hat@step1"])
        assert len(ran) == 2  # steps 0 and 1 only
        ran.clear()
        block, _ = traced(pipe, ["block.1@step0"])
        assert len(ran) == 1 and block.last("block.1@step0").shape == (2, 64, 16)
    finally:
        handle.remove()
    assert torch.equal(early.last("x0_hat@step1"), full.last("x0_hat@step1"))
    assert untouched(pipe)


def test_bad_step_sites_fail_before_compute(pipe):
    ran = []
    handle = pipe.transformer.register_forward_hook(lambda *a: ran.append(1))
    try:
        with pytest.raises(SiteError, match=r"x_t@step3.*runs 3 step\(s\), so steps are 0-2"):
            trace(pipe, "x_t@step3", calls=STEPS)
        with pytest.raises(SiteError, match=r"block\.1@step5.*0-2"):
            trace(pipe, [], writes={"block.1@step5": lambda h: h}, calls=STEPS)
        with pytest.raises(SiteError, match="exists only at a denoising step"):
            trace(pipe, "x_t", calls=STEPS)
        with pytest.raises(SiteError, match="exists only at a denoising step"):
            Site.parse("x0_hat")
        with pytest.raises(SiteError, match="writes act on"):
            trace(pipe, [], writes={"x0_hat@step1": lambda h: h}, calls=STEPS)
        with pytest.raises(SiteError, match="bare DiT"):
            trace(pipe.transformer, [], writes={"x_t@step1": lambda h: h}, calls=STEPS)
    finally:
        handle.remove()
    assert ran == []
    assert untouched(pipe)


# -- (step x block) stores ---------------------------------------------------------------------------
GEN = GenConfig(steps=STEPS, guidance_scale=CALL["guidance_scale"], max_sequence_length=8)


def test_a_partial_grid_store_holds_exactly_the_asked_grid(pipe, tmp_path):
    prompts = load_suite("train")[:2]
    out = tmp_path / "grid.zarr"
    result = extract(pipe, prompts, out, n_per_prompt=2, batch_size=2, gen=GEN, steps=[2, 0], layers=[3, 1],
                     x_t=True, x0_hat=True, dtype="float32", progress=False)
    ds = open_zarr(out)
    assert ds.hidden.dims == ("sample", "step", "layer", "token", "channel") and ds.hidden.shape == (4, 2, 2, 64, 16)
    assert list(ds.step.values) == [0, 2] and list(ds.layer.values) == [1, 3]
    assert ds.x_t.dims == ("sample", "step", "latent_token", "latent_channel") and ds.x0_hat.shape == (4, 2, 64, 4)
    pipe.scheduler.set_timesteps(STEPS)
    np.testing.assert_allclose(ds.sigma.values, pipe.scheduler.sigmas[[0, 2]].numpy(), rtol=1e-6)
    np.testing.assert_allclose(ds.timestep.values, pipe.scheduler.timesteps[[0, 2]].numpy(), rtol=1e-6)
    assert [str(s) for s in store_sites(ds)] == ["block.1@step0", "block.1@step2", "block.3@step0", "block.3@step2",
                                                 "x_t@step0", "x_t@step2", "x0_hat@step0", "x0_hat@step2"]
    assert find_site(ds, "block.3@step2") == Site.block(3, step=2)
    with pytest.raises(SiteError, match="not in the store"):
        find_site(ds, "block.3@step1")
    with pytest.raises(SiteError, match="not in the store"):
        find_site(ds, "block.3")
    # the stored values are the trace's, sample by sample (same seeds, same batch)
    with trace(pipe, ["block.3@step2", "x_t@step2", "x0_hat@step0"], calls=STEPS, dtype=torch.float32, stop=False) as t:
        pipe(prompt=[s.prompt for s in prompts[:1]] * 2, output_type="latent",
             generator=[torch.Generator().manual_seed(int(s)) for s in ds.seed.values[:2]], **GEN.resolve(pipe).call_kwargs(pipe))
    np.testing.assert_array_equal(site_array(ds, "block.3@step2").values[:2], t.last("block.3@step2").numpy())
    np.testing.assert_array_equal(site_array(ds, "x_t@step2").values[:2], t.last("x_t@step2").flatten(2).transpose(1, 2).numpy())
    np.testing.assert_array_equal(site_array(ds, "x0_hat@step0").values[:2],
                                  t.last("x0_hat@step0").flatten(2).transpose(1, 2).numpy())
    # resumable: the same call writes nothing; another grid is another store
    again = extract(pipe, prompts, out, n_per_prompt=2, batch_size=2, gen=GEN, steps=[0, 2], layers=[1, 3],
                    x_t=True, x0_hat=True, dtype="float32", progress=False)
    assert again["samples_this_run"] == 0 and again["content_key"] == result["content_key"]
    with pytest.raises(InputError, match="holds different data"):
        extract(pipe, prompts, out, n_per_prompt=2, batch_size=2, gen=GEN, steps=[0, 1], layers=[1, 3], progress=False)


def test_the_default_grid_keeps_the_old_layout_and_key(pipe, tmp_path):
    prompts = load_suite("train")[:1]
    old = extract(pipe, prompts, tmp_path / "a.zarr", n_per_prompt=2, batch_size=2, gen=GEN, sites="block.1", progress=False)
    new = extract(pipe, prompts, tmp_path / "b.zarr", n_per_prompt=2, batch_size=2, gen=GEN, sites="all",
                  steps=list(range(STEPS)), layers=[1], progress=False)
    assert old["content_key"] == new["content_key"]
    ds = open_zarr(tmp_path / "a.zarr")
    assert ds.hidden.shape == (2, STEPS, 1, 64, 16) and "x_t" not in ds and list(ds.step.values) == [0, 1, 2]
    only = extract(pipe, prompts, tmp_path / "c.zarr", n_per_prompt=2, batch_size=2, gen=GEN, layers=[], steps=[1],
                   x_t=True, progress=False)
    ds = open_zarr(tmp_path / "c.zarr")
    assert "hidden" not in ds and ds.x_t.shape == (2, 1, 64, 4) and [str(s) for s in store_sites(ds)] == ["x_t@step1"]
    assert only["steps"] == [1]


def test_bad_grids_fail_before_compute(pipe, tmp_path):
    ran = []
    handle = pipe.transformer.register_forward_pre_hook(lambda *a: ran.append(1))
    prompts = load_suite("train")[:1]
    try:
        for kw, match in ((dict(steps=[0, 3]), r"runs 3 step\(s\).*0-2.*\[3\]"), (dict(steps=[1, 1]), "repeated"),
                          (dict(steps=[]), "non-empty"), (dict(layers=[9]), r"0-3"),
                          (dict(layers=[], sites="block.0"), "nothing to capture")):
            with pytest.raises(InputError, match=match):
                extract(pipe, prompts, tmp_path / "bad.zarr", gen=GEN, progress=False, **kw)
    finally:
        handle.remove()
    assert ran == [] and not (tmp_path / "bad.zarr").exists()


@pytest.mark.slow  # four CLI processes, each importing torch and diffusers: about a minute on 2 cores
def test_the_cli_extracts_a_grid_of_a_saved_multi_step_pipeline(pipe, tmp_path):
    saved = tmp_path / "tiny-teacher"
    pipe.save_pretrained(saved)
    base = [sys.executable, "-c", "from vhslab.cli.main import run; run()", "extract", "--model", str(saved), "--prompts", "train",
            "--limit", "1", "--n-per-prompt", "2", "--batch-size", "2", "--max-sequence-length", "8", "--steps", "3",
            "--guidance-scale", "2", "--no-progress", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([*base, "--out", str(tmp_path / "g.zarr"), "--sites", "block.0,block.2", "--capture-steps", "2,0",
                          "--x-t", "--x0-hat"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1])["steps"] == [0, 2]
    ds = open_zarr(tmp_path / "g.zarr")
    assert ds.hidden.shape == (2, 2, 2, 64, 16) and ds.x0_hat.shape == (2, 2, 64, 4) and list(ds.step.values) == [0, 2]
    for extra, match in ((["--capture-steps", "0,5"], "0-2"), (["--capture-steps", "a"], "--capture-steps"),
                         (["--teacher"], "--teacher")):
        bad = subprocess.run([*base, "--out", str(tmp_path / "bad.zarr"), *extra], env=env, capture_output=True, text=True,
                             timeout=300)
        assert bad.returncode == 2 and match in bad.stdout + bad.stderr, (extra, bad.stdout, bad.stderr)
    assert not (tmp_path / "bad.zarr").exists()
