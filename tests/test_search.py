"""Best-of-N on the world's real (tiny) SANA-Sprint pipeline: the cached winner, batching, errors."""

import numpy as np
import pytest
import torch

from vhslab.pipeline import sample_seed
from vhslab.search import SearchError, best_of_n, finish_from_cache, initial_noise
from vhslab.trace import Capture
from vhslab.verifier.model import LatentVerifier

PROMPT = "a photo of a red circle left of a blue square"



@pytest.fixture(scope="module")
def verifier(world):
    width = world.pipeline.transformer.config.num_attention_heads * world.pipeline.transformer.config.attention_head_dim
    return LatentVerifier.create(world.llm, world.tokenizer, "block.5", width, token_grid=4, seed=3)


def _call(world):
    gen = world.gen_config.resolve(world.pipeline)
    return gen, {k: v for k, v in gen.call_kwargs(world.pipeline).items()}


@torch.no_grad()
def test_the_winner_finished_from_its_cache_equals_one_full_call(world):
    pipe = world.pipeline
    gen, kwargs = _call(world)
    noise = initial_noise(pipe, [11, 12], gen)
    full = pipe(prompt=[PROMPT] * 2, latents=noise, output_type="np", **kwargs).images
    with Capture(pipe, ["block.5"], dtype=torch.float32, stop=True) as cap:
        pipe(prompt=[PROMPT] * 2, latents=noise, output_type="latent", **kwargs)
    cached = cap["block.5"][0]
    for j in range(2):
        with finish_from_cache(pipe, 5, cached[j:j + 1]):
            finished = pipe(prompt=PROMPT, latents=noise[j:j + 1], output_type="np", **kwargs).images[0]
        rel = np.abs(finished - full[j]).max() / np.abs(full[j]).max()
        assert rel <= 1e-5, rel
    assert all(type(b).__name__ not in ("_Skip", "_Replay") for b in pipe.transformer.transformer_blocks)
    generators = [torch.Generator("cpu").manual_seed(s) for s in (11, 12)]  # the noise a plain call draws
    plain = pipe(prompt=[PROMPT] * 2, generator=generators, output_type="np", **kwargs).images
    np.testing.assert_array_equal(plain, full)


def test_best_of_n_picks_the_top_score_batched_as_one_by_one(world, verifier):
    pipe = world.pipeline
    a = best_of_n(pipe, verifier, PROMPT, 6, seed=2, batch_size=4, gen=world.gen_config)
    b = best_of_n(pipe, verifier, PROMPT, 6, seed=2, batch_size=1, gen=world.gen_config)
    np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-5)
    assert a.chosen == int(np.argmax(a.scores)) == b.chosen
    assert a.seeds == [sample_seed(2, PROMPT, j) for j in range(6)]
    _gen, kwargs = _call(world)
    seed = a.seeds[a.chosen]
    plain = pipe(prompt=PROMPT, generator=[torch.Generator("cpu").manual_seed(seed)], output_type="np", **kwargs)
    np.testing.assert_array_equal(a.image, (plain.images[0] * 255).round().astype(np.uint8))
    assert set(a.timings) == {"encode_prompt", "generate_to_site", "score", "finish_winner", "total"}


def test_search_errors_before_any_compute(world, verifier):
    pipe = world.pipeline
    with pytest.raises(SearchError, match="N must be"):
        best_of_n(pipe, verifier, PROMPT, 0)
    deep = LatentVerifier.create(world.llm, world.tokenizer, "block.40", verifier.config.in_channels, token_grid=4)
    with pytest.raises(SearchError, match="blocks 0-11"):
        best_of_n(pipe, deep, PROMPT, 2)
    text = LatentVerifier.create(world.llm, world.tokenizer, "text", 1)
    with pytest.raises(SearchError, match="sees no candidate"):
        best_of_n(pipe, text, PROMPT, 2)


def test_generate_command_writes_the_winner_and_reports_it(tmp_path):
    import json

    from helpers.cli import vhslab as vhslab_cli
    from PIL import Image

    out = tmp_path / "x.png"
    r = vhslab_cli("generate", "a photo of two red circles", "--n", "4", "-o", str(out), "--upscale", "2", "--json")
    assert r.returncode == 0, r.stderr[-1500:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["n"] == 4 and res["chosen"] == int(np.argmax(res["scores"])) and res["evaluator_correct"] in (True, False)
    assert Image.open(out).size == (128, 128)
    again = vhslab_cli("generate", "a photo of two red circles", "-o", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr
