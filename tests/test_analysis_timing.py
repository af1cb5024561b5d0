"""Causal timing patching across denoising steps (vhslab.analysis.timing) on a tiny multi-step SanaPipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.cli import vhslab as vhslab_cli

from vhslab.analysis.timing import (
    TimingError,
    TimingPair,
    capture_states,
    colour_pairs,
    correctness_pairs,
    patch_timing,
    teacher_images,
    timing_sites,
)
from vhslab.pipeline import GenConfig
from vhslab.shapes.suites import load_suite
from vhslab.testing.tiny import SANA_TEACHER_CALL, tiny_sana_pipeline
from vhslab.trace.site import Site

GEN = GenConfig(height=SANA_TEACHER_CALL["height"], width=SANA_TEACHER_CALL["width"],
                steps=SANA_TEACHER_CALL["num_inference_steps"], guidance_scale=SANA_TEACHER_CALL["guidance_scale"],
                max_sequence_length=SANA_TEACHER_CALL["max_sequence_length"])
PROMPTS = ["a photo of a red circle", "a photo of a blue star"]


@pytest.fixture(scope="module")
def pipe():
    return tiny_sana_pipeline()


def _replace_with(state):
    return lambda t: state.clone()


def test_self_donor_changes_nothing(pipe):
    """Every site at every step written back with the recipient's own state: bitwise the same image."""
    seeds = [3, 4]
    sites = timing_sites(range(GEN.steps), [0, 3])
    plain = teacher_images(pipe, PROMPTS, seeds, GEN)
    images, states = capture_states(pipe, PROMPTS, seeds, GEN, sites)
    np.testing.assert_array_equal(images, plain)  # recording writes change nothing either
    for site in sites:
        patched = teacher_images(pipe, PROMPTS, seeds, GEN, {site: _replace_with(states[site])})
        np.testing.assert_array_equal(patched, plain, err_msg=str(site))


@pytest.mark.parametrize("step", [0, 1, 2])
def test_x_t_from_same_prompt_donor_reproduces_the_donor(pipe, step):
    """The latent entering step N is the whole state of the sampler: with the same prompt, the donor's
    x_t@stepN makes exactly the donor's image (and not the recipient's)."""
    recipient, donor = [5, 6], [7, 8]
    site = Site("x_t", None, step)
    donor_images, states = capture_states(pipe, PROMPTS, donor, GEN, [site])
    own = teacher_images(pipe, PROMPTS, recipient, GEN)
    patched = teacher_images(pipe, PROMPTS, recipient, GEN, {site: _replace_with(states[site])})
    np.testing.assert_array_equal(patched, donor_images)
    assert not np.array_equal(patched, own)


def test_block_write_at_the_last_step_takes_effect(pipe):
    """A block transplant from another seed at the last step takes effect (the image changes) but is
    not the whole state: the image is not the donor's."""
    recipient, donor = [5, 6], [7, 8]
    site = Site.block(3, GEN.steps - 1)
    donor_images, states = capture_states(pipe, PROMPTS, donor, GEN, [site])
    own = teacher_images(pipe, PROMPTS, recipient, GEN)
    patched = teacher_images(pipe, PROMPTS, recipient, GEN, {site: _replace_with(states[site])})
    assert not np.array_equal(patched, own)
    assert not np.array_equal(patched, donor_images)


def test_patch_timing_with_self_pairs_measures_no_effect(pipe):
    """Pairs whose donor and control donor are the recipient itself: every cell equals the unpatched
    baseline, and flip - control is exactly 0 with a [0, 0] interval."""
    pairs = [TimingPair(p, p, s, s) for p, s in zip(PROMPTS, [1, 2], strict=True)]
    res = patch_timing(pipe, pairs, steps=[0, 2], blocks=[1], gen=GEN, n_boot=50)
    ds = res.ds
    assert list(ds.site.values) == ["block.1", "x_t"] and list(ds.step.values) == [0, 2]
    for var in ("flipped", "flipped_control"):
        np.testing.assert_array_equal(ds[var].values, np.broadcast_to(ds["base_flip"].values, ds[var].shape))
    np.testing.assert_array_equal(ds["kept"].values, np.broadcast_to(ds["base_kept"].values, ds["kept"].shape))
    assert np.all(ds["flip_minus_control"].values == 0) and np.all(ds["flip_minus_control_ci"].values == 0)
    assert not ds["significant"].any()


def test_patch_timing_real_and_control_donors(pipe, tmp_path):
    """Colour pairs with a control donor run end to end: a (step, site) dataset with sigma on the step
    axis, the summary is JSON, and the figure renders."""
    pairs = colour_pairs(load_suite("geneval-shapes"), 3, seed=0)
    assert all(p.donor != p.recipient and p.seed != p.control_seed for p in pairs)
    res = patch_timing(pipe, pairs, steps=[0, 1], blocks=[0, 2], gen=GEN, batch_size=2, n_boot=50)
    ds = res.ds
    assert ds["flip"].dims == ("step", "site") and ds.sizes == {"step": 2, "site": 3, "pair": 3, "bound": 2}
    sigma = ds.sigma.values
    assert sigma[0] == pytest.approx(1.0) and sigma[1] < sigma[0]  # flow matching starts from pure noise
    diff = ds["flip"] - ds["flip_control"]
    np.testing.assert_allclose(ds["flip_minus_control"].values, diff.values)
    lo, hi = ds["flip_minus_control_ci"].sel(bound="low"), ds["flip_minus_control_ci"].sel(bound="high")
    assert bool((lo <= ds["flip_minus_control"] + 1e-12).all()) and bool((ds["flip_minus_control"] <= hi + 1e-12).all())
    out = json.loads(json.dumps(res.to_json()))
    assert set(out["cells"]) == {f"{s}@step{n}" for n in (0, 1) for s in ("block.0", "block.2", "x_t")}
    fig = res.plot()
    fig.savefig(tmp_path / "map.png")
    fig.savefig(tmp_path / "map.pdf")
    assert (tmp_path / "map.png").stat().st_size > 0 and (tmp_path / "map.pdf").stat().st_size > 0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"steps": [GEN.steps]}, "steps: the generator runs 3 steps"),
    ({"steps": [-1]}, "steps"),
    ({"blocks": [99]}, "blocks: the generator has blocks"),
    ({"steps": []}, "at least one denoising step"),
])
def test_bad_input_fails_before_compute(pipe, kwargs, match):
    calls = []
    handle = pipe.transformer.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        args = {"steps": [0], "blocks": [0], **kwargs}
        with pytest.raises(TimingError, match=match):
            patch_timing(pipe, [TimingPair(PROMPTS[0], PROMPTS[1], 1, 2)], gen=GEN, **args)
        with pytest.raises(TimingError, match="at least one"):
            patch_timing(pipe, [], steps=[0], blocks=[0], gen=GEN)
    finally:
        handle.remove()
    assert not calls


def test_colour_pairs_seeds_per_prompt():
    pairs = colour_pairs(load_suite("geneval-shapes"), 6, seed=0, per_prompt=2)
    assert len(pairs) == 6 and [p.recipient for p in pairs[::2]] == [p.recipient for p in pairs[1::2]]
    assert len({p.seed for p in pairs}) == 6 and all(p.seed != p.control_seed for p in pairs)
    for p in pairs:  # the donor differs in the colour word only
        rec, don = p.recipient.split(), p.donor.split()
        assert len(rec) == len(don) and sum(a != b for a, b in zip(rec, don, strict=True)) == 1
    with pytest.raises(TimingError, match="per_prompt"):
        colour_pairs(load_suite("geneval-shapes"), 6, per_prompt=0)


def test_cli_on_the_world_teacher(tmp_path):
    """`vhslab patch-timing` on the shipped teacher: a step it lacks is exit 2 naming it; one pair at the
    last step runs and prints one JSON object."""
    r = vhslab_cli("patch-timing", "--steps", "8", "--json")
    assert r.returncode == 2 and "steps: the generator runs 8 steps" in r.stderr
    r = vhslab_cli("patch-timing", "--pairs", "1", "--steps", "7", "--blocks", "11", "--n-boot", "20",
                   "--plot", str(tmp_path / "m.png"), "--json")
    assert r.returncode == 0, r.stderr[-1500:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["n_pairs"] == 1 and set(res["cells"]) == {"block.11@step7", "x_t@step7"} and res["sigma"][0] < 0.2
    assert (tmp_path / "m.png").stat().st_size > 0 and (tmp_path / "m.pdf").stat().st_size > 0


class _Brightness:
    """A deterministic stand-in judge for the tiny random generator (it draws no shapes): an image is
    "correct" when its mean is above a threshold. Enough to build and check correct-into-wrong pairs."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def evaluate(self, image, spec):
        return type("Verdict", (), {"correct": float(np.asarray(image).mean()) > self.threshold})()


def test_correctness_pairs_put_a_correct_candidate_into_a_wrong_one(pipe):
    specs = [s for s in load_suite("geneval-shapes") if s.tag == "colors"][:6]
    seeds = list(range(40))
    means = teacher_images(pipe, [specs[0].prompt] * 40, seeds, GEN).reshape(40, -1).mean(1)
    judge = _Brightness(float(np.median(means)))  # about half the candidates "correct"
    pairs = correctness_pairs(pipe, specs, GEN, n_pairs=3, candidates=6, seed=1, evaluator=judge)
    assert 1 <= len(pairs) <= 3
    for p in pairs:
        assert p.recipient == p.donor and len({p.seed, p.donor_noise, p.control_seed}) == 3
        imgs = teacher_images(pipe, [p.recipient] * 3, [p.seed, p.donor_noise, p.control_seed], GEN)
        verdicts = [judge.evaluate(im, None).correct for im in imgs]
        assert verdicts == [False, True, False]  # recipient wrong, donor correct, control wrong
    res = patch_timing(pipe, pairs, [0, 2], [1], gen=GEN, x_t=True, n_boot=50, evaluator=judge)
    assert bool(res.ds["donor_correct"].all())
    # the donor's x_t at step 2 carries its whole state: every recipient becomes correct, no control does
    assert float(res.ds["flipped"].sel(step=2, site="x_t").mean()) == 1.0
    assert float(res.ds["flipped_control"].sel(step=2, site="x_t").mean()) == 0.0
    with pytest.raises(TimingError, match="candidates must be >= 3"):
        correctness_pairs(pipe, specs, GEN, n_pairs=1, candidates=2)
    with pytest.raises(TimingError, match="needs another seed"):
        patch_timing(pipe, [TimingPair(PROMPTS[0], PROMPTS[0], 1, 2, donor_seed=1)], [0], [0], gen=GEN)


def test_cli_refuses_an_unknown_pair_kind_before_compute(tmp_path):
    done = vhslab_cli("patch-timing", "--kind", "shape", "--out", tmp_path / "t.nc", "--json")
    assert done.returncode == 2 and "--kind is 'colour' or 'correctness'" in done.stderr
    assert not (tmp_path / "t.nc").exists()
