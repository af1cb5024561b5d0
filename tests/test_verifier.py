"""LatentVerifier on a tiny real Qwen2 (random weights) and the world's tokenizer: batching, io, errors."""

import json

import numpy as np
import pytest
import torch
from helpers.tiny_models import tiny_llm
from safetensors.torch import save_file

from vhslab.verifier.model import LatentVerifier, VerifierError, from_release
from vhslab.world.text import build_word_tokenizer

torch.set_num_threads(1)
PROMPTS = ["a photo of a red circle", "a photo of two stars", "a photo of a blue square left of a red circle"]


@pytest.fixture(scope="module")
def verifier():
    rng = np.random.default_rng(0)
    return LatentVerifier.create(tiny_llm(), build_word_tokenizer(), "block.3", 16, mean=rng.random(16),
                                 var=rng.random(16) + 0.5, seed=1)


def test_scores_do_not_depend_on_the_batch_padding(verifier):
    h = torch.randn(3, 16, 16)
    together = verifier.score(h, PROMPTS)
    alone = np.array([verifier.score(h[i:i + 1], [p])[0] for i, p in enumerate(PROMPTS)])
    assert np.abs(together - alone).max() < 1e-5
    assert ((together > 0) & (together < 1)).all() and len(set(np.round(together, 6))) == 3
    # P(yes) / (P(yes) + P(no)) from the LLM's own logits at the answer position
    logits = verifier.answer_logits(h[:1], PROMPTS[:1])
    assert together[0] == pytest.approx(torch.softmax(logits, -1)[0, 0].item(), abs=1e-6)


def test_save_load_is_bit_identical_and_seeded_creation_repeats(verifier, tmp_path):
    h = torch.randn(3, 16, 16)
    before = verifier.score(h, PROMPTS)
    back = LatentVerifier.from_pretrained(verifier.save_pretrained(tmp_path / "v"))
    np.testing.assert_array_equal(back.score(h, PROMPTS), before)
    assert back.config == verifier.config
    again = LatentVerifier.create(tiny_llm(), build_word_tokenizer(), "block.3", 16, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(again.connector.parameters(), verifier.connector.parameters(), strict=True))


def test_errors_before_any_compute(verifier):
    with pytest.raises(VerifierError, match=r"20 channels; the connector of site block\.3 takes 16"):
        verifier.score(torch.randn(1, 16, 20), PROMPTS[:1])
    with pytest.raises(VerifierError, match=r"reads site 'block\.3', not 'block\.5'"):
        verifier.score(torch.randn(1, 16, 16), PROMPTS[:1], site="block.5")
    with pytest.raises(VerifierError, match="NaN"):
        verifier.score(torch.full((1, 16, 16), float("nan")), PROMPTS[:1])
    with pytest.raises(VerifierError, match="2 hidden states for 1 prompts"):
        verifier.score(torch.randn(2, 16, 16), PROMPTS[:1])
    short = LatentVerifier.create(tiny_llm(context=40), build_word_tokenizer(), "block.3", 16)
    with pytest.raises(VerifierError, match="exceeds the LLM's context of 40"):
        short.score(torch.randn(1, 16, 16), PROMPTS[:1])
    pooled = LatentVerifier.create(tiny_llm(context=40), build_word_tokenizer(), "block.3", 16, token_grid=2)
    assert pooled.score(torch.randn(1, 16, 16), PROMPTS[:1]).shape == (1,)  # 16 tokens pooled to 4 fit
    with pytest.raises(VerifierError, match="splits 'yes please' into 2 tokens"):
        LatentVerifier.create(tiny_llm(), build_word_tokenizer(), "block.3", 16, answers=("yes please", "no"))


def test_text_only_verifier_reads_no_hidden_states():
    v = LatentVerifier.create(tiny_llm(), build_word_tokenizer(), "text", 1)
    s = v.score(None, PROMPTS)
    assert s.shape == (3,)
    before, after = v.pieces(PROMPTS[0])
    assert after == [] and "<image>" not in v.tokenizer.decode(before)


def test_release_layout_loads_into_the_same_verifier(tmp_path):
    llm, tok = tiny_llm(seed=3), build_word_tokenizer()
    torch.manual_seed(4)
    proj = [torch.nn.Linear(16, 32), torch.nn.Linear(32, 32)]
    mean, var = torch.randn(1, 16).bfloat16(), (torch.rand(1, 16) + 0.5).bfloat16()
    release = tmp_path / "vhs-hidden-verifier"
    release.mkdir()
    raw = {**llm.config.to_dict(), "model_type": "llava_qwen", "architectures": ["LlavaQwenForCausalLM"],
           "mm_hidden_size": 16, "mm_projector_type": "mlp2x_gelu", "mm_vision_tower": "hidden_7"}
    (release / "config.json").write_text(json.dumps(raw))
    state = {k: v.contiguous() for k, v in llm.state_dict().items() if k != "lm_head.weight"}
    for i, layer in zip((0, 2), proj, strict=True):
        state[f"model.mm_projector.{i}.weight"], state[f"model.mm_projector.{i}.bias"] = layer.weight.data, layer.bias.data
    save_file(state, release / "model.safetensors")
    tok.save_pretrained(release)
    torch.save(mean, release / "block_7_mean_bf16.pt")
    torch.save(var, release / "block_7_variance_bf16.pt")
    loaded = from_release(release, system="sys .", question="<image> {prompt} ?")
    assert loaded.config.site == "block.7" and loaded.config.in_channels == 16
    mine = LatentVerifier(llm, tok, loaded.config)
    mine.connector[0].load_state_dict(proj[0].state_dict())
    mine.connector[2].load_state_dict(proj[1].state_dict())
    mine.set_statistics(mean.float(), var.float())
    h = torch.randn(2, 16, 16)
    np.testing.assert_allclose(loaded.score(h, PROMPTS[:2]), mine.score(h, PROMPTS[:2]), atol=1e-6)


def test_site_statistics_stream_over_chunks():
    from vhslab.probes.data import site_statistics
    from vhslab.testing import planted_store
    from vhslab.trace import store_sites

    ds = planted_store(n_samples=300, n_layers=2, n_tokens=4, n_channels=8, chunk_samples=64, seed=2)
    site = store_sites(ds)[1]
    rows = np.arange(0, 300, 3)
    mean, var = site_statistics(ds, site, rows)
    x = ds["hidden"].sel(layer=1).values[rows].astype(np.float64).reshape(-1, 8)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, x.var(0), rtol=1e-4)


@pytest.mark.slow
def test_stage2_training_learns_a_planted_verdict_and_repeats_with_its_seed():
    from vhslab.testing import planted_store
    from vhslab.verifier.train import VerifierTrainConfig, train_verifier

    ds = planted_store(n_samples=480, n_layers=2, n_tokens=4, n_channels=16, signal_layer=1, strength=1.5,
                       chunk_samples=32, seed=3).load()
    cfg = VerifierTrainConfig(steps=120, batch_size=32, eval_every=40, seed=0)
    runs = [train_verifier(ds, "block.1", tiny_llm(), build_word_tokenizer(), cfg, progress=False) for _ in range(2)]
    (v, info), (v2, _) = runs
    assert info["best_val_auroc"] >= 0.85, info
    h = ds["hidden"].sel(layer=1).values[:8].astype(np.float32)
    prompts = [str(p) for p in ds["prompt"].values[:8]]
    np.testing.assert_array_equal(v.score(h, prompts), v2.score(h, prompts))  # same seed, same verifier
    _, blind = train_verifier(ds, "block.0", tiny_llm(), build_word_tokenizer(), cfg, progress=False)
    assert blind["best_val_auroc"] <= 0.7  # nothing planted at block 0: nothing learnt
    one = ds.assign(verdict=("sample", np.ones(ds.sizes["sample"], np.int8)))
    with pytest.raises(VerifierError, match="needs both verdicts"):
        train_verifier(one, "block.1", tiny_llm(), build_word_tokenizer(), cfg, progress=False)
    with pytest.raises(VerifierError, match="unknown loss"):
        train_verifier(ds, "block.1", tiny_llm(), build_word_tokenizer(), VerifierTrainConfig(loss="hinge"))


def test_best_of_n_picks_and_intervals():
    from vhslab.verifier.evaluate import best_of_n, ranking_metrics

    rng = np.random.default_rng(0)
    rows, n = 120, 4
    group = np.repeat(np.arange(rows), n)
    tag = np.repeat(np.where(np.arange(rows) % 2, "colors", "position"), n)
    meaning = np.repeat(np.arange(rows) // 2, n)
    verdict = (rng.random(rows * n) < 0.4).astype(int)
    perfect = best_of_n(group, tag, meaning, verdict, verdict + 0.01 * rng.random(rows * n), n)
    assert perfect["bo4_verifier"]["value"] == perfect["bo4_oracle"]["value"]  # a perfect score picks like the oracle
    blind = best_of_n(group, tag, meaning, verdict, np.zeros(rows * n), n)  # ties: the first candidate
    first = verdict.reshape(rows, n)[:, 0]
    by_tag = [first[(np.arange(rows) % 2) == k].mean() for k in (0, 1)]
    assert blind["bo4_verifier"]["value"] == pytest.approx(np.mean(by_tag))
    g = perfect["gain"]
    assert g["ci"][0] > 0 and g["ci"][0] <= g["value"] <= g["ci"][1]
    assert perfect["n_meanings"] == 60 and perfect["n_prompt_rows"] == 120
    with pytest.raises(ValueError, match="Best-of-5 needs 5"):
        best_of_n(group, tag, meaning, verdict, verdict, 5)
    m = ranking_metrics(verdict, verdict * 0.8 + 0.1, group, meaning, n_boot=100)
    assert m["auroc"]["value"] == 1.0 and m["within_prompt_auroc"]["value"] == 1.0


def test_the_shipped_verifiers_load_and_score_world_states():
    import vhslab

    v, text = vhslab.load_verifier(), vhslab.load_verifier(kind="text")
    assert v.config.site.startswith("block.") and text.config.site == "text"
    assert v.config.extra["train"]["align_steps"] > 0 and v.config.extra["store"]  # says what made it
    hidden = torch.randn(3, 64, v.config.in_channels)
    s = v.score(hidden, PROMPTS, site=v.config.site)
    assert s.shape == (3,) and np.all((s > 0) & (s < 1))
    assert np.allclose(text.score(None, PROMPTS), text.score(None, PROMPTS[::-1])[::-1])
    with pytest.raises(VerifierError, match="reads site"):
        v.score(hidden, PROMPTS, site="block.0")
    with pytest.raises(FileNotFoundError, match="not a saved LatentVerifier"):
        vhslab.load_verifier("/nonexistent")


def test_an_llm_folder_keeps_its_word_level_tokenizer(tmp_path):
    from vhslab.verifier.load import load_llm as _llm

    llm, tok = tiny_llm(), build_word_tokenizer()
    llm.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)  # config.json says qwen2: AutoTokenizer alone would rebuild a BPE tokenizer
    loaded, loaded_tok = _llm(str(tmp_path))
    text = "<|im_start|> user <image> does this image match the prompt : a photo of two red stars ?"
    assert loaded_tok(text).input_ids == tok(text).input_ids
    assert loaded_tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False) == tok.apply_chat_template(
        [{"role": "user", "content": "x"}], tokenize=False)
    ids = torch.tensor([tok(text).input_ids])
    assert torch.equal(loaded(ids).logits, llm(ids).logits)
    with pytest.raises(FileNotFoundError, match=r"config\.json missing"):
        _llm(str(tmp_path / "absent"))
