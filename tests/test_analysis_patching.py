"""Edits during generation on the world's real (tiny) SANA-Sprint pipeline: known answers of patching,
hook hygiene, steering's shape, errors."""

import numpy as np
import pytest
import torch

from vhslab.analysis.interventions import _generate, colour_directions, patch_sweep, steer_sweep
from vhslab.data.extract import extract
from vhslab.data.generate import sample_seed
from vhslab.probes import open_store
from vhslab.search import initial_noise
from vhslab.shapes.prompts import load_suite
from vhslab.trace import Capture, Edit, PatchError, ablate_tokens, add_direction, region_mask, replace_tokens, trace
from vhslab.verifier.model import LatentVerifier

PROMPT = "a photo of a red circle left of a blue square"



@pytest.fixture(scope="module")
def verifier(world):
    return LatentVerifier.create(world.llm, world.tokenizer, "block.5", 96, token_grid=4, seed=3)


def _own_states(world, seeds, block):
    gen = world.gen_config.resolve(world.pipeline)
    with Capture(world.pipeline, [f"block.{block}"], dtype=torch.float32, stop=True) as cap:
        world.pipeline(prompt=[PROMPT] * len(seeds), latents=initial_noise(world.pipeline, seeds, gen),
                       output_type="latent", **gen.call_kwargs(world.pipeline))
    return cap.last(f"block.{block}")


def test_regions_partition_the_grid():
    quads = [region_mask(8, q) for q in ("q00", "q01", "q10", "q11")]
    assert (sum(q.astype(int) for q in quads) == 1).all() and all(q.sum() == 16 for q in quads)
    assert (region_mask(8, "top") == (quads[0] | quads[1])).all() and region_mask(8, "all").all()
    with pytest.raises(PatchError, match="unknown region"):
        region_mask(8, "middle")


def test_an_edit_with_the_runs_own_tokens_changes_nothing_and_always_leaves(world):
    seeds = [sample_seed(0, PROMPT, j) for j in range(2)]
    plain, _ = _generate(world, [PROMPT] * 2, seeds)
    own = _own_states(world, seeds, 4)
    same, _ = _generate(world, [PROMPT] * 2, seeds, ("block.4", replace_tokens(own, region_mask(8, "all"))))
    assert np.abs(same.astype(int) - plain.astype(int)).max() <= 1
    ablated, _ = _generate(world, [PROMPT] * 2, seeds, ("block.4", ablate_tokens(region_mask(8, "all"))))
    assert np.abs(ablated.astype(int) - plain.astype(int)).mean() > 1
    blocks = world.pipeline.transformer.transformer_blocks
    assert all(len(b._forward_hooks) == 0 for b in blocks)
    with pytest.raises(RuntimeError, match="fired 1 times"), Edit(world.pipeline, "block.4", lambda o: o, calls=2):
        _generate(world, [PROMPT], seeds[:1])
    assert all(len(b._forward_hooks) == 0 for b in blocks)
    with pytest.raises(PatchError, match="blocks 0-11"):
        Edit(world.pipeline, "block.12", lambda o: o)
    with pytest.raises(PatchError, match="block site"):
        Edit(world.pipeline, "ae_latent", lambda o: o)
    with Edit(world.pipeline, "block.1", lambda o: o, calls=0), pytest.raises(RuntimeError, match="do not nest"):
        Edit(world.pipeline, "block.2", lambda o: o).__enter__()


def test_patching_at_the_verifiers_block_restores_its_score_and_later_blocks_cannot(world, verifier):
    seeds = [sample_seed(7, PROMPT, j) for j in range(3)]
    pairs = [(PROMPT, seeds[0], seeds[1]), (PROMPT, seeds[2], seeds[1])]
    ds = patch_sweep(world, verifier, pairs, blocks=[0, 5, 6], regions=["all", "q00"])
    assert ds["restored"].sel(block=5, region="all").item() == pytest.approx(1.0, abs=1e-4)  # B's block 5 = A's
    assert np.abs(ds["score_change"].sel(block=6).values).max() < 1e-6  # after the verifier's site
    assert set(ds.data_vars) >= {"flipped", "flipped_control", "flip", "flip_control", "restored"}
    assert ds["flip"].min() >= 0 and ds["flip"].max() <= 1 and ds.attrs["n_pairs"] == 2
    same = patch_sweep(world, verifier, [(PROMPT, seeds[1], seeds[1])], blocks=[3], regions=["all"], control=False)
    assert same["flip"].item() == 0 and np.abs(same["score_change"].values).max() < 1e-5
    with pytest.raises(PatchError, match="at least 2 pairs"):
        patch_sweep(world, verifier, [(PROMPT, seeds[1], seeds[1])], blocks=[3])


def test_a_steering_edit_adds_exactly_its_direction(world):
    seeds = [sample_seed(3, PROMPT, j) for j in range(2)]
    gen = world.gen_config.resolve(world.pipeline)
    direction = torch.randn(96, generator=torch.Generator().manual_seed(0))
    plain = _own_states(world, seeds, 4)
    for coefficient in (0.0, 2.5):
        tokens = region_mask(8, "q11")
        with trace(world.pipeline, ["block.4"], writes={"block.4": add_direction(direction, coefficient, tokens)},
                   dtype=torch.float32, stop=True) as cap:
            world.pipeline(prompt=[PROMPT] * 2, latents=initial_noise(world.pipeline, seeds, gen), output_type="latent",
                           **gen.call_kwargs(world.pipeline))
        want = plain.clone()
        want[:, torch.as_tensor(tokens)] += coefficient * direction
        torch.testing.assert_close(cap.last("block.4"), want, atol=1e-5, rtol=0)
    with pytest.raises(PatchError, match="width 5"):
        _generate(world, [PROMPT], seeds[:1], ("block.4", add_direction(torch.ones(5), 1.0)))


def test_steering_reports_success_and_a_random_control(world, tmp_path):
    suite = [s for s in load_suite("train") if s.tag == "colors"][:16]
    path = tmp_path / "s.zarr"
    extract(world.pipeline, suite, path, n_per_prompt=2, sites="block.3", seed=0, gen=world.gen_config,
            model_id="world", progress=False)
    store = open_store(path)
    dirs, classes, norm = colour_directions(store, 3)
    assert dirs.shape == (len(classes), 96) and np.allclose(np.linalg.norm(dirs, axis=1), 1) and norm > 0
    test = [s for s in load_suite("geneval-shapes") if s.tag == "colors"][:6]
    ds = steer_sweep(world, store, test, [3], coefficient=2.0, per_prompt=1)
    assert set(ds.data_vars) == {"success", "control"} and ds.attrs["n_prompts"] >= 1
    assert ds["success"].shape == ds["control"].shape == (1, ds.attrs["n_images"])
    with pytest.raises(PatchError, match="colour prompts"):
        steer_sweep(world, store, [s for s in load_suite("geneval-shapes") if s.tag == "single_object"], [3])
