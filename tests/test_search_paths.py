"""Best-of-N on every verifier path, budgets from a cost model, noise search: on the world's real
(tiny) SANA-Sprint pipeline and its shipped verifiers."""

import numpy as np
import pytest
import torch

import vhslab
from vhslab.data.generate import sample_seed
from vhslab.search import SearchError, best_of_n, initial_noise, load_cost_model, noise_search
from vhslab.search.noise_search import round_sizes
from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.phrasing import parse_prompt
from vhslab.trace import Capture
from vhslab.verifier.model import LatentVerifier

PROMPT = "a photo of a red circle left of a blue square"



@pytest.fixture(scope="module")
def shipped():
    return {k: vhslab.load_verifier(kind=k) for k in ("vhs", "vision", "ae")}


def _plain(world, seeds, sites=("image",)):
    """A plain pipeline call of these seeds, capturing `sites`."""
    gen = world.gen_config.resolve(world.pipeline)
    with Capture(world.pipeline, list(sites), dtype=torch.float32, stop=False, vision=world.vision) as cap:
        world.pipeline(prompt=[PROMPT] * len(seeds), latents=initial_noise(world.pipeline, seeds, gen),
                       output_type="np", **gen.call_kwargs(world.pipeline))
    return cap


def _plain_images(world, seeds):
    gen = world.gen_config.resolve(world.pipeline)
    out = world.pipeline(prompt=[PROMPT] * len(seeds), latents=initial_noise(world.pipeline, seeds, gen),
                         output_type="np", **gen.call_kwargs(world.pipeline)).images
    return (np.asarray(out) * 255).round().astype(np.uint8)


def _close(a, b):
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01, (diff.max(), diff.mean())


def test_ae_and_vision_paths_score_what_a_plain_call_captures_and_return_the_winner(world, shipped):
    gen = world.gen_config
    seeds = [sample_seed(1, PROMPT, j) for j in range(3)]
    plain = _plain(world, seeds, ("ae_latent", "vision", "image"))
    for kind, site in (("ae", "ae_latent"), ("vision", "vision")):
        res = best_of_n(world.pipeline, shipped[kind], PROMPT, 3, seed=1, batch_size=2, gen=gen, vision=world.vision)
        want = shipped[kind].score(plain[site][0], [PROMPT] * 3)
        np.testing.assert_allclose(res.scores, want, atol=1e-4)
        assert res.chosen == int(np.argmax(res.scores)) and res.path == kind and res.seeds == seeds
        _close(res.image, plain["image"][0][res.chosen])
    assert "vision_encode" in res.timings and "decode" in res.timings


def test_oracle_none_and_random(world):
    gen, ev = world.gen_config, ShapesEvaluator()
    seeds = [sample_seed(0, PROMPT, j) for j in range(6)]
    images = _plain_images(world, seeds)
    truth = np.array([ev.evaluate(im, parse_prompt(PROMPT)).correct for im in images], float)
    res = best_of_n(world.pipeline, "oracle", PROMPT, 6, batch_size=4, gen=gen)
    np.testing.assert_array_equal(res.scores, truth)
    assert res.chosen == int(np.argmax(truth)) and ev.evaluate(res.image, parse_prompt(PROMPT)).correct == truth.max()
    none = best_of_n(world.pipeline, "none", PROMPT, 1, gen=gen)
    _close(none.image, images[0])
    rnd = best_of_n(world.pipeline, "random", PROMPT, 6, gen=gen)
    assert 0 <= rnd.chosen < 6 and np.isnan(rnd.scores).all()
    assert rnd.chosen == best_of_n(world.pipeline, "random", PROMPT, 6, gen=gen).chosen  # seeded
    _close(rnd.image, images[rnd.chosen])


def test_a_budget_buys_the_cost_models_n_and_bad_input_fails_before_compute(world, shipped, monkeypatch):
    pipe, gen, v = world.pipeline, world.gen_config, shipped["vhs"]
    cost = load_cost_model("sana-sprint-1.6b")
    budget = 2 * cost.plain_ms()
    assert cost.block_at(10, 12) == 17 and cost.block_at(7, 20) == 7
    res = best_of_n(pipe, v, PROMPT, budget_ms=budget, cost_model=cost, gen=gen, batch_size=4)
    assert res.n == cost.n_for_budget(budget, "vhs", 17, batch_size=4) == 6  # calls of 4: 4 + 2
    vision = best_of_n(pipe, shipped["vision"], PROMPT, budget_ms=budget, cost_model=cost, gen=gen, vision=world.vision)
    assert vision.n == 2

    def tripwire(*a, **k):
        raise AssertionError("compute started before the input was checked")

    monkeypatch.setattr(pipe, "encode_prompt", tripwire)
    cases = [({"budget_ms": 50.0, "cost_model": cost}, "too small for one candidate"),
             ({"n": 3, "budget_ms": budget, "cost_model": cost}, "not both"),
             ({}, "not both and not neither"),
             ({"budget_ms": budget}, "needs a cost model"),
             ({"n": 0}, "N must be")]
    for kwargs, match in cases:
        with pytest.raises(SearchError, match=match):
            best_of_n(pipe, v, PROMPT, gen=gen, **kwargs)
    with pytest.raises(SearchError, match="vision encoder"):
        best_of_n(pipe, shipped["vision"], PROMPT, 2, gen=gen)
    with pytest.raises(SearchError, match="shapes world"):
        best_of_n(pipe, "oracle", "a photo of a giraffe riding a bike", 2, gen=gen)
    with pytest.raises(SearchError, match="unknown verifier"):
        best_of_n(pipe, "clip", PROMPT, 2, gen=gen)
    with pytest.raises(SearchError, match="not A100"):
        load_cost_model("world", card="A100")


def test_noise_search_pairs_with_best_of_n_and_finishes_its_winner(world, shipped):
    pipe, gen, v = world.pipeline, world.gen_config, shipped["vhs"]
    assert round_sizes(7, 3) == [3, 2, 2] and round_sizes(2, 3) == [1, 1] and sum(round_sizes(41, 3)) == 41
    one = noise_search(pipe, v, PROMPT, 5, rounds=1, seed=4, gen=gen)
    bon = best_of_n(pipe, v, PROMPT, 5, seed=4, gen=gen)
    np.testing.assert_allclose(one.scores, bon.scores, atol=1e-5)
    assert one.chosen == bon.chosen
    np.testing.assert_array_equal(one.image, bon.image)
    res = noise_search(pipe, v, PROMPT, 7, rounds=3, radius=0.3, seed=4, gen=gen)
    assert res.extra["round"] == [0, 0, 0, 1, 1, 2, 2] and res.chosen == int(np.argmax(res.scores))
    np.testing.assert_allclose(res.scores[:3], bon.scores[:3], atol=1e-5)  # round 0 = Best-of-N's first seeds
    later = res.scores[3:]
    assert len(set(np.round(later, 6))) == 4  # fresh neighbours, not copies
    g = gen.resolve(pipe)
    plain = pipe(prompt=PROMPT, latents=res.extra["winner_noise"], output_type="np", **g.call_kwargs(pipe)).images[0]
    _close(res.image, (plain * 255).round().astype(np.uint8))
    with pytest.raises(SearchError, match="radius"):
        noise_search(pipe, v, PROMPT, 4, radius=0.0, gen=gen)
    with pytest.raises(SearchError, match="rounds"):
        noise_search(pipe, v, PROMPT, 4, rounds=0, gen=gen)
    with pytest.raises(SearchError, match="VHS"):
        noise_search(pipe, shipped["ae"], PROMPT, 4, gen=gen)
    text = LatentVerifier.create(world.llm, world.tokenizer, "text", 1)
    with pytest.raises(SearchError, match="sees no candidate"):
        noise_search(pipe, text, PROMPT, 4, gen=gen)
