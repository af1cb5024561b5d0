"""Early-pruning search on a real multi-step SanaPipeline (tiny): resumes equal uninterrupted runs,
k = N is Best-of-N, costs counted are the calls made, bad input fails before compute."""

import numpy as np
import pytest
import torch
from helpers.tiny_models import tiny_llm

from vhslab.pipeline import GenConfig, sample_seed
from vhslab.search.costs import load_cost_model
from vhslab.search.generation import Prompted, SearchError, decode, initial_noise
from vhslab.search.prune import (
    Cost,
    LatentScorer,
    PixelScorer,
    StepScorer,
    advance,
    bon_cost,
    check_prune,
    prune_cost,
    prune_search,
    teacher_best_of_n,
)
from vhslab.search.prune_table import plan, prune_compare, prune_pick, subset, teacher_pool
from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.suites import load_suite
from vhslab.testing.tiny import SANA_TEACHER_CALL, tiny_sana_pipeline, tiny_sana_sprint_pipeline
from vhslab.verifier.model import LatentVerifier
from vhslab.world import World
from vhslab.world.text import build_word_tokenizer

torch.set_num_threads(1)
PROMPT = "a photo of two red circles"


class Brightness(StepScorer):
    """A real, deterministic scorer: the mean of x0_hat (higher is better)."""

    name = "brightness"

    def score(self, pipe, prompt, state):
        return state.x0_hat.flatten(1).mean(1).numpy()


@pytest.fixture(scope="module")
def pipe():
    return tiny_sana_pipeline()


@pytest.fixture(scope="module")
def gen(pipe):
    return GenConfig(height=32, width=32, steps=3, guidance_scale=2.0, max_sequence_length=8).resolve(pipe)


class Calls:
    """Counts transformer rows per forward (a CFG pair = one transformer call per candidate)."""

    def __init__(self, pipe):
        self.rows = 0
        self.handle = pipe.transformer.register_forward_pre_hook(self.hook)

    def hook(self, _module, args):
        self.rows += args[0].shape[0] // 2

    def close(self):
        self.handle.remove()


def plain_latents(pipe, noise):
    return pipe([PROMPT] * len(noise), latents=noise, **dict(SANA_TEACHER_CALL, output_type="latent")).images


def test_resume_equals_the_uninterrupted_run(pipe, gen):
    prompted = Prompted.encode(pipe, PROMPT, gen)
    sigmas = check_prune(pipe, 3, 1, 1, Brightness(), None, gen)
    noise = initial_noise(pipe, [5, 6, 7], gen)
    ref = plain_latents(pipe, noise)
    for s in (1, 2):
        part = advance(prompted, noise, sigmas, 0, s)
        done = advance(prompted, part.latents, sigmas, s, 3)
        assert part.step == s - 1 and part.sigma == pytest.approx(float(sigmas[s - 1]))
        torch.testing.assert_close(done.latents, ref, rtol=0, atol=1e-6)
    assert torch.equal(done.x0_hat, done.latents)  # the last Euler step lands on x0_hat


@torch.no_grad()
def test_k_equal_n_is_best_of_n_and_pruned_winner_is_its_plain_run(pipe, gen):
    n, seeds = 4, [sample_seed(3, PROMPT, j) for j in range(4)]
    noise = initial_noise(pipe, seeds, gen)
    final = plain_latents(pipe, noise)
    scores = final.flatten(1).mean(1).numpy()
    images = decode(pipe, final)
    full = prune_search(pipe, PROMPT, n, 1, n, Brightness(), gen=gen, seed=3, batch_size=n)
    bon = teacher_best_of_n(pipe, PROMPT, n, Brightness(), gen=gen, seed=3, batch_size=n)
    assert full.chosen == bon.chosen == int(np.argmax(scores))
    np.testing.assert_array_equal(full.image, bon.image)
    np.testing.assert_allclose(full.final_scores, scores, atol=1e-6)
    assert np.abs(full.image.astype(int) - images[full.chosen].astype(int)).max() <= 1
    pruned = prune_search(pipe, PROMPT, n, 2, 2, Brightness(), gen=gen, seed=3, batch_size=n)
    part = advance(Prompted.encode(pipe, PROMPT, gen), noise, check_prune(pipe, n, 2, 2, Brightness(), Brightness(), gen), 0, 2)
    top = sorted(np.argsort(-part.x0_hat.flatten(1).mean(1).numpy())[:2].tolist())
    assert pruned.kept == top and pruned.chosen in top
    assert pruned.chosen == top[int(np.argmax(scores[top]))]


def test_costs_counted_are_the_calls_made(pipe, gen):
    cm = load_cost_model("world")
    for n, s, k, b in ((5, 1, 2, 2), (4, 2, 1, 4), (3, 1, 3, 2)):
        calls = Calls(pipe)
        try:
            res = prune_search(pipe, PROMPT, n, s, k, Brightness(), gen=gen, batch_size=b)
        finally:
            calls.close()
        expect = n * 3 if k == n else n * s + k * (3 - s)
        assert res.cost.transformer_calls == expect == calls.rows
        assert res.cost.scored == (n if k == n else n + (k if k > 1 else 0))
    one = Cost()
    one.add(1, 8)
    one.decodes = 1
    plain = cm.per_call["prompt_encode"] + cm.per_call["call_overhead"] + 8 * cm.num_blocks * cm.stage_ms("dit_block", 2) + cm.batch_1["decode"]
    assert one.ms(cm) == pytest.approx(plain)
    assert bon_cost(4, 8, Brightness()).transformer_calls == 32
    assert prune_cost(16, 2, 2, 8, Brightness(), Brightness()).ms(cm) < bon_cost(16, 8, Brightness()).ms(cm)


@pytest.mark.parametrize(("n", "step", "k", "match"), [(2, 1, 3, "k <= N"), (4, 3, 2, "step must be in 1-2"),
                                                       (4, 0, 2, "step must be an integer"), (4, 1, 0, "k must be")])
def test_bad_input_fails_before_compute(pipe, gen, n, step, k, match):
    calls = Calls(pipe)
    try:
        with pytest.raises(SearchError, match=match):
            prune_search(pipe, PROMPT, n, step, k, Brightness(), gen=gen)
    finally:
        calls.close()
    assert calls.rows == 0


def test_latent_scorer_reads_the_block_at_the_step(pipe, gen):
    rng = np.random.default_rng(0)
    width = pipe.transformer.config.num_attention_heads * pipe.transformer.config.attention_head_dim
    verifier = LatentVerifier.create(tiny_llm(), build_word_tokenizer(), "block.2", width, mean=rng.random(width),
                                     var=rng.random(width) + 0.5, seed=1)
    scorer = LatentScorer(verifier)
    res = prune_search(pipe, PROMPT, 3, 1, 1, scorer, gen=gen, batch_size=3)
    assert res.kept == [int(np.argmax(res.partial_scores))] and res.chosen == res.kept[0]
    deep = LatentScorer(LatentVerifier.create(tiny_llm(), build_word_tokenizer(), "block.9", width, seed=1))
    with pytest.raises(SearchError, match="blocks 0-3"):
        prune_search(pipe, PROMPT, 3, 1, 1, deep, gen=gen)


def test_pool_pick_is_prune_search_and_the_comparison_runs(pipe, gen):
    spec = load_suite("geneval-shapes")[100]
    partial, final, verdict = teacher_pool(pipe, gen, spec, 5, 2, Brightness(), 4, 0, 2, ShapesEvaluator())
    assert verdict.shape == (5,) and set(verdict) <= {0.0, 1.0}
    for n, k in ((5, 2), (4, 1), (3, 2)):
        res = prune_search(pipe, spec.prompt, n, 2, k, Brightness(), gen=gen, seed=4, batch_size=2)
        assert prune_pick(partial, final, n, k) == res.chosen
    student = tiny_sana_sprint_pipeline()
    width = student.transformer.config.num_attention_heads * student.transformer.config.attention_head_dim
    vhs = LatentVerifier.create(tiny_llm(), build_word_tokenizer(), "block.2", width, seed=1)
    world = World(student, None, None, None, student.tokenizer, GenConfig(height=32, width=32, max_sequence_length=8), {},
                  pipe, gen)
    prompts = subset(load_suite("geneval-shapes"), 4)
    cm = load_cost_model("world")
    res = prune_compare(world, prompts, [2, 3], cm, Brightness(), vhs, step=1, k=1, n_boot=50, progress=False)
    out = res.to_json()
    assert out["n_prompt_rows"] == 4 and set(out["table"]) == {"2", "3"}
    plan_n, _ = plan(cm, [2, 3], 3, 1, 1, Brightness(), 2, 4)
    assert out["table"]["3"]["prune"]["n"] == plan_n[3, "prune"] > plan_n[3, "bon"] >= 3
    assert np.isfinite(res.ds["diff"].values).all()
    fig = res.plot()
    assert len(fig.legends) == 1 and len(fig.axes[0].lines) >= 3
    with pytest.raises(SearchError, match="budgets"):
        prune_compare(world, prompts, [], cm, Brightness(), vhs, step=1, k=1)


def test_pixel_scorers(pipe, gen):
    res = prune_search(pipe, PROMPT, 3, 1, 2, PixelScorer.oracle(), gen=gen, batch_size=3)
    assert set(res.partial_scores) <= {0.0, 1.0} and set(res.final_scores) <= {0.0, 1.0}
    assert res.cost.decodes == 0 and res.to_json()["cost"]["scored"] == 5
    with pytest.raises(SearchError, match="needs a `vision` verifier"):
        PixelScorer.vision(None, None)
