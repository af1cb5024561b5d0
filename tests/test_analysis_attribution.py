"""Attribution of a verifier's yes-no margin: planted cases with known answers, the sanity checks, errors.

A tiny real Qwen2 (random weights) behind a LatentVerifier with the world's word tokenizer."""

import numpy as np
import pytest
import torch
from helpers.tiny_models import tiny_llm

from vhslab.analysis.attribution import AttributionError, attribute, margin, prompt_ig
from vhslab.analysis.checks import deletion
from vhslab.analysis.sanity import box_cells, randomised_copy, rank_correlation
from vhslab.verifier.model import LatentVerifier
from vhslab.world.text import build_word_tokenizer

torch.set_num_threads(1)
PROMPTS = ["a photo of a red circle", "a photo of two stars", "a photo of a blue square", "a photo of a green star"]


@pytest.fixture(scope="module")
def verifier():
    rng = np.random.default_rng(0)
    return LatentVerifier.create(tiny_llm(0), build_word_tokenizer(), "block.3", 8,
                                 mean=rng.normal(size=8), var=rng.random(8) + 0.5, token_grid=0, seed=1)


def planted(verifier, hot=(5, 10, 0, 15), scale=4.0):
    """Every token at the verifier's mean (its baseline) except one per sample: the only token that can matter."""
    h = verifier.mean.float().reshape(1, 1, -1).repeat(len(hot), 16, 1).clone()
    g = torch.Generator().manual_seed(0)
    for i, t in enumerate(hot):
        h[i, t] += scale * torch.randn(8, generator=g)
    return h


def test_all_attribution_lands_on_the_only_token_that_differs(verifier):
    hot = (5, 10, 0, 15)
    h = planted(verifier, hot)
    ds = attribute(verifier, h, PROMPTS, n_steps=32, internal_batch_size=16)
    ig = ds["visual_ig"].values.reshape(4, 16)
    for i, t in enumerate(hot):
        others = np.delete(np.abs(ig[i]), t)
        assert others.max() == 0.0 and abs(ig[i, t]) > 0
        # completeness: the map sums to margin(h) - margin(baseline)
        base = margin(verifier, verifier.mean.float().reshape(1, 1, -1).repeat(1, 16, 1), PROMPTS[i:i + 1])[0]
        assert ig[i].sum() == pytest.approx(float(ds["margin"][i]) - base, abs=2e-3)
        # patch ablation: only the 2x2 patch holding the token moves the margin
        abl = ds["visual_ablation"].values[i]
        r, c = divmod(t, 4)
        inside = np.zeros((4, 4), bool)
        inside[r // 2 * 2:r // 2 * 2 + 2, c // 2 * 2:c // 2 * 2 + 2] = True
        assert np.abs(abl[~inside]).max() == 0.0 and np.abs(abl[inside]).min() > 0
        assert abl[r, c] == pytest.approx(ig[i].sum(), rel=0.05, abs=1e-3)  # one token: ablation = IG
    assert ds.attrs["site"] == "block.3" and (ds["ig_delta"].values < 2e-3).all()


def test_prompt_words_carry_the_prompts_whole_effect(verifier):
    h = torch.randn(4, 16, 8)
    words, tokens, is_prompt = prompt_ig(verifier, h, PROMPTS, n_steps=48)
    for i, p in enumerate(PROMPTS):
        assert [tokens[i][j].strip() for j in np.flatnonzero(is_prompt[i])] == p.split()
        assert np.abs(words[i][~is_prompt[i]]).max() == 0.0  # only the prompt's words differ from the baseline
    # completeness: sum over the words = margin with the prompt - margin with the prompt's words zeroed
    inputs, mask, pos = verifier.embed_inputs(h, [verifier.pieces(p) for p in PROMPTS])
    blank = inputs.clone()
    blank[torch.as_tensor(is_prompt)] = 0
    with torch.no_grad():
        full = verifier.llm(inputs_embeds=inputs, attention_mask=mask, position_ids=pos).logits[:, -1, verifier.answer_ids]
        none = verifier.llm(inputs_embeds=blank, attention_mask=mask, position_ids=pos).logits[:, -1, verifier.answer_ids]
    want = (full[:, 0] - full[:, 1] - none[:, 0] + none[:, 1]).numpy()
    np.testing.assert_allclose(words.sum(1), want, atol=5e-3)


def test_internal_batch_size_bounds_every_forward(verifier, monkeypatch):
    seen = []
    original = verifier.answer_logits

    def spy(hidden, prompts):
        seen.append(len(prompts))
        return original(hidden, prompts)

    monkeypatch.setattr(verifier, "answer_logits", spy)
    attribute(verifier, torch.randn(4, 16, 8), PROMPTS, n_steps=20, internal_batch_size=8, text=False)
    assert max(seen) <= 8 and sum(seen) >= 4 * 20


def test_sanity_checks_on_the_planted_case(verifier):
    h = planted(verifier)
    ig = attribute(verifier, h, PROMPTS, n_steps=16, text=False)["visual_ig"].values.reshape(4, 16)
    d = deletion(verifier, h, PROMPTS, ig, fractions=(1 / 16, 0.5), n_random=4, n_boot=50)
    one = d[f"{1 / 16:g}"]
    assert one["tokens"] == 1 and one["drop_top"] > 0 and one["ratio"] > 4  # random picks miss the hot token
    assert d["0.5"]["drop_top"] == pytest.approx(one["drop_top"], rel=1e-4)  # nothing else to remove
    rnd = randomised_copy(verifier, seed=3)
    assert not torch.equal(next(rnd.llm.parameters()), next(verifier.llm.parameters()))
    assert torch.equal(rnd.mean, verifier.mean)
    assert rank_correlation(ig, ig) == pytest.approx(np.ones(4))
    assert rank_correlation(ig, -ig) == pytest.approx(-np.ones(4))
    cells = box_cells([(0, 0, 16, 16), (40, 40, 64, 64)], side=4, image_px=64)
    assert cells.sum() == 1 + 4 and cells[0, 0] and cells[3, 3] and cells[2, 2]


def test_errors_before_any_compute(verifier):
    with pytest.raises(AttributionError, match=r"\(sample, token, channel\)"):
        attribute(verifier, torch.randn(16, 8), PROMPTS[:1])
    with pytest.raises(AttributionError, match="3 prompts for 4 samples"):
        attribute(verifier, torch.randn(4, 16, 8), PROMPTS[:3])
    with pytest.raises(AttributionError, match="NaN"):
        attribute(verifier, torch.full((1, 16, 8), float("nan")), PROMPTS[:1])
    with pytest.raises(AttributionError, match="square"):
        attribute(verifier, torch.randn(1, 15, 8), PROMPTS[:1])
    with pytest.raises(AttributionError, match="internal_batch_size"):
        attribute(verifier, torch.randn(1, 16, 8), PROMPTS[:1], internal_batch_size=0)
    text = LatentVerifier.create(verifier.llm, verifier.tokenizer, "text", 1)
    with pytest.raises(AttributionError, match="text-only"):
        attribute(text, torch.randn(1, 16, 8), PROMPTS[:1])
