"""Verifier training (stage 1 + 2, resume, DDP), the per-site sweep and the `vhslab verifier` commands,
on planted stores and tiny real Qwen2 models."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.cli import vhslab as vhslab_cli
from helpers.tiny_models import tiny_llm
from safetensors.torch import load_file

from vhslab import statefile
from vhslab.probes import open_store
from vhslab.probes.metrics import auroc_within
from vhslab.testing import planted_store
from vhslab.verifier import train as vt
from vhslab.verifier.data import ChunkReader, first_candidates, index_batches, tag_repeats, validation_split
from vhslab.verifier.model import VerifierError
from vhslab.verifier.train import VerifierTrainConfig, train_verifier
from vhslab.world.text import build_word_tokenizer

HELPER = Path(__file__).parent / "helpers" / "ddp_train.py"


def planted(seed=3, n=256):
    return planted_store(n_samples=n, n_layers=2, n_tokens=4, n_channels=16, signal_layer=1, strength=1.5,
                         chunk_samples=32, seed=seed).load()


def planted_pair(n_train, n_test):
    """Training and test stores with the same planted direction (one store, split by prompt rows)."""
    ds = planted(n=n_train + n_test)
    return ds.isel(sample=slice(0, n_train)), ds.isel(sample=slice(n_train, None))


def test_index_batches_cover_rows_chunk_by_chunk_and_repeat_with_the_seed():
    rows = np.arange(0, 100, 2)
    first = [b for _, b in zip(range(5), index_batches(rows, 16, 10, seed=1), strict=False)]
    again = [b for _, b in zip(range(5), index_batches(rows, 16, 10, seed=1), strict=False)]
    assert all((a == b).all() for a, b in zip(first, again, strict=True))
    assert sorted(np.concatenate(first).tolist()) == rows.tolist()  # one epoch: every row once
    assert all(len(set(b // 16)) <= 2 for b in first)  # a batch touches at most two store chunks


def test_index_batches_mix_chunks_into_one_batch_and_keep_reads_bounded():
    rows = np.arange(256)  # 32 chunks of 8, as a store of 8 candidates per prompt row per chunk
    take = lambda mix: [b for _, b in zip(range(16), index_batches(rows, 8, 32, 0, mix=mix), strict=False)]  # noqa: E731
    alone, mixed = take(1), take(8)
    assert sorted(np.concatenate(mixed[:8]).tolist()) == rows.tolist()  # one epoch: every row once
    assert max(len(set(b // 8)) for b in alone) <= 5 and min(len(set(b // 8)) for b in mixed) >= 6
    assert all(len(set(b // 8)) <= 16 for b in mixed)  # at most 2 x mix chunks: ChunkReader keeps 2 x mix
    with pytest.raises(VerifierError, match="mix_chunks"):
        train_verifier(planted(), "block.1", tiny_llm(), build_word_tokenizer(), VerifierTrainConfig(mix_chunks=0))


def test_index_batches_deal_candidates_of_one_prompt_row_together():
    rows = np.arange(512)  # 8 chunks of 64; prompt rows of 16 candidates
    groups = rows // 16
    take = lambda k: [b for _, b in zip(range(16), index_batches(rows, 64, 32, 0, mix=8, groups=groups, per_group=k),  # noqa: E731
                                             strict=False)]
    free, dealt = take(0), take(4)
    assert sorted(np.concatenate(dealt).tolist()) == rows.tolist()  # one epoch: every row once
    counts = [np.bincount(groups[b])[np.unique(groups[b])] for b in dealt]
    assert all((c % 4 == 0).all() for c in counts) and np.mean([len(c) for c in counts]) >= 6  # ~8 rows x 4 candidates
    assert np.mean([len(set(groups[b])) for b in free]) > 16  # shuffled freely: about one candidate per row
    assert all(len(set(b // 64)) <= 16 for b in dealt)  # reads stay within 2 x mix chunks
    first = [b for _, b in zip(range(16), index_batches(rows, 64, 32, 0, mix=8), strict=False)]
    assert all((a == b).all() for a, b in zip(free, first, strict=True))  # per_group 0: the batches as before
    with pytest.raises(VerifierError, match="per_prompt"):
        train_verifier(planted(), "block.1", tiny_llm(), build_word_tokenizer(), VerifierTrainConfig(per_prompt=-1))


def test_stage1_lowers_the_caption_loss_and_the_caller_llm_is_untouched():
    import vhslab

    world = vhslab.load_world()  # a trained LLM: a random one's logits barely move with its inputs
    llm = world.llm
    before = {k: v.clone() for k, v in llm.state_dict().items()}
    cfg = VerifierTrainConfig(steps=2, batch_size=16, eval_every=20, align_steps=60, align_lr=3e-3)
    _, info = train_verifier(planted(), "block.1", llm, world.tokenizer, cfg, progress=False)
    nll = [h["caption_nll"] for h in info["history"] if h["stage"] == 1]
    assert len(nll) == 3 and nll[-1] < nll[0] - 0.3, nll
    assert all(torch.equal(before[k], v) for k, v in llm.state_dict().items())


def test_stage2_caption_weight_keeps_the_caption_loss_down():
    import vhslab

    world, ds = vhslab.load_world(), planted()
    rows = np.arange(64)
    hidden = torch.as_tensor(ds["hidden"].isel(sample=rows, layer=1).values)
    captions = [str(c) for c in ds["caption"].values[rows]]

    def caption_nll(weight):
        cfg = VerifierTrainConfig(steps=30, batch_size=16, eval_every=30, rank_weight=0, caption_weight=weight, lr=3e-3)
        v, _ = train_verifier(ds, "block.1", world.llm, world.tokenizer, cfg, progress=False)
        with torch.no_grad():
            nll, n = v.caption_nll(hidden, captions)
        return float(nll) / n

    assert caption_nll(1.0) < caption_nll(0.0) - 0.2


def test_refit_trains_again_on_every_row_for_the_chosen_steps():
    from vhslab.probes.data import site_statistics
    from vhslab.trace import find_site

    ds, tok = planted(), build_word_tokenizer()
    cfg = VerifierTrainConfig(steps=12, batch_size=16, eval_every=4, patience=10, align_steps=2)
    held, info = train_verifier(ds, "block.1", tiny_llm(), tok, cfg, progress=False)
    refit, again = train_verifier(ds, "block.1", tiny_llm(), tok, dataclasses.replace(cfg, refit=True),
                                  progress=False)
    assert info["refit_history"] is None and again["best_step"] == info["best_step"]  # the step chosen held out
    steps = [h["step"] for h in again["refit_history"] if h["stage"] == 2]
    assert steps == [info["best_step"]]  # then trained that long on every row
    every = site_statistics(ds, find_site(ds, "block.1"), np.arange(ds.sizes["sample"]))[0]
    torch.testing.assert_close(refit.mean, torch.as_tensor(np.asarray(every, np.float32)).flatten())
    assert not torch.equal(refit.mean, held.mean) and refit.config.extra["train"]["refit"] is True
    first, _ = validation_split(ds, 0.0, 0)
    assert (first == np.arange(ds.sizes["sample"])).all()


def test_a_stopped_run_resumes_to_the_same_verifier(tmp_path, monkeypatch):
    ds, tok = planted(), build_word_tokenizer()
    cfg = VerifierTrainConfig(steps=12, batch_size=16, eval_every=4, patience=10, align_steps=4)
    whole, _ = train_verifier(ds, "block.1", tiny_llm(), tok, cfg, progress=False)
    calls = {"n": 0}
    real = vt.score_rows

    def stop_at_second_eval(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the run is killed after its first stage-2 checkpoint
        return real(*args, **kwargs)

    monkeypatch.setattr(vt, "score_rows", stop_at_second_eval)
    ckpt = tmp_path / vt.CHECKPOINT
    with pytest.raises(KeyboardInterrupt):
        train_verifier(ds, "block.1", tiny_llm(), tok, cfg, progress=False, checkpoint=ckpt)
    saved = statefile.load(ckpt)  # safetensors + a JSON skeleton: the optimizer's tuples come back as tuples
    assert saved["step"] == 4 and isinstance(saved["opt"]["param_groups"][0]["betas"], tuple)
    monkeypatch.setattr(vt, "score_rows", real)
    resumed, info = train_verifier(ds, "block.1", tiny_llm(), tok, cfg, progress=False, checkpoint=ckpt)
    assert [h["step"] for h in info["history"] if h["stage"] == 2] == [4, 8, 12]
    for k, v in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=1e-6)
    other = VerifierTrainConfig(steps=13, batch_size=16, eval_every=4)
    with pytest.raises(VerifierError, match="other training settings"):
        train_verifier(ds, "block.1", tiny_llm(), tok, other, progress=False, checkpoint=ckpt)


def test_training_errors_before_any_compute():
    ds, tok = planted(), build_word_tokenizer()
    with pytest.raises(VerifierError, match="caption"):
        train_verifier(ds.drop_vars("caption"), "block.1", tiny_llm(), tok, VerifierTrainConfig(align_steps=5))
    with pytest.raises(VerifierError, match="caption"):
        train_verifier(ds.drop_vars("caption"), "block.1", tiny_llm(), tok, VerifierTrainConfig(caption_weight=1))
    with pytest.raises(VerifierError, match="text-only"):
        train_verifier(ds, "text", tiny_llm(), tok, VerifierTrainConfig(align_steps=5))
    with pytest.raises(ValueError, match=r"block\.7"):
        train_verifier(ds, "block.7", tiny_llm(), tok, VerifierTrainConfig())
    cramped = tiny_llm()  # the yes/no question fits, the (long) caption turn of stage 1 does not
    cramped.config.max_position_embeddings = 50
    wordy = ds.assign(caption=("sample", np.array(["a photo of a red circle and " * 10] * ds.sizes["sample"], object)))
    with pytest.raises(VerifierError, match="stage-1 input"):
        train_verifier(wordy, "block.1", cramped, tok, VerifierTrainConfig(align_steps=5, steps=1))
    with pytest.raises(VerifierError, match="stage-1 input"):  # the stage-2 caption loss reads the same turn
        train_verifier(wordy, "block.1", cramped, tok, VerifierTrainConfig(caption_weight=1, steps=1))
    short = tiny_llm()
    short.config.max_position_embeddings = 20
    with pytest.raises(VerifierError, match="exceeds the LLM's context"):
        train_verifier(ds, "block.1", short, tok, VerifierTrainConfig())


@pytest.mark.slow
@pytest.mark.parametrize("extra", [{}, {"caption_weight": 1.0, "input_noise": 0.5, "prompt_dropout": 0.3, "teacher_weight": 1.0}],
                         ids=["default", "regularised"])
def test_two_ddp_processes_train_the_same_verifier_as_one(tmp_path, extra):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    subprocess.run([sys.executable, str(HELPER), str(one), json.dumps(extra)], check=True, env=env, cwd=tmp_path,
                   capture_output=True)
    run = subprocess.run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", str(HELPER), str(two), json.dumps(extra)],
                         env=env, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    from safetensors import safe_open

    with safe_open(two, "pt") as f:
        assert f.metadata()["processes"] == "2"  # really two processes
    a, b = load_file(one), load_file(two)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.load(f"{two}.history.npy"), np.load(f"{one}.history.npy"), atol=1e-5)


@pytest.mark.slow
def test_sweep_finds_the_planted_site_and_puts_the_probe_beside_it(tmp_path):
    from vhslab.figures.verifiers import plot_verifier_depth
    from vhslab.verifier.sweep import run_verifier_sweep, verifier_table

    ds = planted(n=384 + 192)  # train and test share the planted direction
    train, test = ds.isel(sample=slice(0, 384)), ds.isel(sample=slice(384, None))
    cfg = VerifierTrainConfig(steps=60, batch_size=32, eval_every=20, align_steps=0)
    # dev: the test's prompts (the cross-fitted choice deals the test's meanings; here its very rows)
    res = run_verifier_sweep(train, test, tiny_llm(), build_word_tokenizer(), ["block.0", "block.1", "text"], cfg,
                             token_grid=None, n_boot=50, progress=False, dev=test)
    rule = json.loads(res.attrs["selected_by"])
    assert rule["rule"] == "by_training_validation" and res.attrs["selected_site"] == "block.1" == rule["chosen"]
    assert res["dev_within"].sel(site="block.1") > res["dev_within"].sel(site="block.0") + 0.15
    choice = json.loads(res.attrs["dev_choice"])  # each fold of test meanings chose on the other fold's dev rows
    assert choice["rule"] == "crossfit" and [f["chosen"] for f in choice["per_fold"]] == ["block.1", "block.1"]
    assert res.attrs["dev_choice_within"] > 0.7
    plain = run_verifier_sweep(train, test, tiny_llm(), build_word_tokenizer(), ["block.0", "block.1"], cfg,
                               token_grid=None, n_boot=50, progress=False)
    assert np.isnan(plain["dev_within"]).all() and "dev_choice" not in plain.attrs
    assert plain.attrs["selected_site"] == "block.1" and "dev within" not in verifier_table(plain)
    v = res["value"].sel(model="verifier", metric="auroc")
    assert float(v.sel(site="block.1")) > 0.85 and float(v.sel(site="block.0")) < 0.7, v.values
    assert abs(float(v.sel(site="text")) - 0.5) < 0.15  # the planted verdict ignores the prompt
    assert res.attrs["selected_site"] == "block.1"
    assert (res["lo"] <= res["value"] + 1e-9).all() and (res["value"] <= res["hi"] + 1e-9).all()
    assert str(res["probe_kind"].sel(site="text").values) == "prompt-only"
    p = res["value"].sel(model="probe", metric="auroc", site="block.1")
    d = res["diff"].sel(metric="auroc", site="block.1")
    assert float(d) == pytest.approx(float(v.sel(site="block.1")) - float(p))
    assert np.isnan(res["depth"].sel(site="text")) and float(res["depth"].sel(site="block.1")) == 0.5
    assert "| block.1 |" in verifier_table(res) and "dev within" in verifier_table(res)
    res.to_netcdf(tmp_path / "sweep.nc")
    plot_verifier_depth(res).savefig(tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 1000


@pytest.mark.slow
def test_cli_train_then_eval_on_stores(tmp_path):
    train, test = tmp_path / "train.zarr", tmp_path / "test.zarr"
    for ds, path in zip(planted_pair(256, 128), (train, test), strict=True):
        ds.to_zarr(path, consolidated=False)
    run = lambda *a: vhslab_cli(*a, cwd=tmp_path)  # noqa: E731
    out = tmp_path / "v"
    r = run("verifier", "train", "--data", str(train), "--site", "block.1", "--steps", "60", "--align-steps", "4",
            "--grid", "0", "--out", str(out), "--no-progress", "--json")
    assert r.returncode == 0, r.stderr[-1500:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["site"] == "block.1" and info["best_val_auroc"] > 0.7 and not (out / vt.CHECKPOINT).exists()
    again = run("verifier", "train", "--data", str(train), "--out", str(out), "--no-progress")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    r = run("verifier", "eval", str(out), "--test", str(test), "--data", str(train), "--text-only", "none",
            "--n-boot", "30", "--no-progress", "--json")
    assert r.returncode == 0, r.stderr[-1500:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("auroc", "within_prompt_auroc", "balanced_accuracy", "bo1", "bo4_verifier", "bo4_oracle"):
        lo, hi = res[key]["ci"]
        assert lo <= res[key]["value"] <= hi, key
    assert res["auroc"]["value"] > 0.65 and res["probe"]["kind"].split("-C")[0] in ("linear", "mlp", "within-linear")
    assert "teacher" not in res
    taught = tmp_path / "taught"
    r = run("verifier", "train", "--data", str(train), "--site", "block.1", "--steps", "20", "--align-steps", "0",
            "--grid", "0", "--teacher-weight", "5", "--teacher-c", "0.1", "--out", str(taught), "--no-progress", "--json")
    assert r.returncode == 0, r.stderr[-1500:]
    r = run("verifier", "eval", str(taught), "--test", str(test), "--data", str(train), "--text-only", "none",
            "--n-boot", "30", "--no-progress", "--json")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["teacher"]["kind"] == "within-linear-C0.1"  # the ranker it was distilled from, beside it
    assert res["teacher"]["within_prompt_auroc"]["value"] > 0.9  # the planted direction
    d = res["verifier_minus_teacher"]["within_prompt_auroc"]
    assert d["ci"][0] <= d["value"] <= d["ci"][1]
    assert d["value"] == pytest.approx(res["within_prompt_auroc"]["value"] - res["teacher"]["within_prompt_auroc"]["value"])
    bad = run("verifier", "train", "--data", str(train), "--site", "block.5", "--out", str(tmp_path / "w"), "--no-progress")
    assert bad.returncode == 2 and "block.5" in bad.stderr and not (tmp_path / "w" / "verifier.json").exists()
    assert open_store(train).sizes["sample"] == 256


def test_rank_loss_pairs_positives_with_negatives_of_the_same_prompt_row_only():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 0.0]])
    y, rows = np.array([1, 0, 1, 0, 1]), np.array([0, 0, 1, 1, 2])  # row 2: a positive with no negative
    assert vt._pairs(y, rows) == 2
    softplus = torch.nn.functional.softplus
    expected = (softplus(torch.tensor(-2.0)) + softplus(torch.tensor(-2.0))) / 4  # margins 2-0 and 1-(-1); 4 global pairs
    torch.testing.assert_close(vt._rank_loss(logits, y, rows, 4), expected)
    swapped = vt._rank_loss(logits, 1 - y, rows, 4)  # the same margins ranked the wrong way cost more
    assert swapped > 4 * expected


def test_prompt_dropout_blanks_whole_prompt_rows_repeatably():
    prompts = np.array([f"prompt {r}" for r in np.repeat(np.arange(200), 4)])
    rows, idx = np.repeat(np.arange(200), 4), np.arange(800)
    cfg = VerifierTrainConfig(prompt_dropout=0.5, seed=1)
    asked = np.array(vt._asked(prompts, rows, idx, cfg, step=7))
    blank = asked == ""
    assert all(len(set(blank[rows == r])) == 1 for r in range(200))  # a prompt row is asked one way
    assert 0.35 < blank.mean() < 0.65 and (asked[~blank] == prompts[~blank]).all()
    assert (np.array(vt._asked(prompts, rows, idx, cfg, step=7)) == asked).all()  # resumed runs ask the same
    assert (np.array(vt._asked(prompts, rows, idx, cfg, step=8)) != asked).any()
    assert vt._asked(prompts, rows, idx, VerifierTrainConfig(), step=7) == prompts.tolist()
    with pytest.raises(VerifierError, match="prompt_dropout"):
        train_verifier(planted(), "block.1", tiny_llm(), build_word_tokenizer(), VerifierTrainConfig(prompt_dropout=1.0))


def test_input_noise_scales_with_each_channel_and_is_drawn_per_global_batch():
    from vhslab.verifier.model import LatentVerifier

    var = np.linspace(0.25, 4.0, 16).astype(np.float32)
    v = LatentVerifier.create(tiny_llm(), build_word_tokenizer(), "block.1", 16, mean=np.zeros(16), var=var)
    n, places = 1024, np.arange(1024)
    hidden = torch.zeros(n, 4, 16)
    cfg = VerifierTrainConfig(input_noise=0.5, seed=2)
    noisy = vt._noisy(hidden, v, n, places, cfg, step=3)
    torch.testing.assert_close(noisy.std(dim=(0, 1)), 0.5 * torch.sqrt(torch.as_tensor(var)), rtol=0.05, atol=0)
    half = places[1::2]  # a DDP process's rows get the noise the whole batch drew for their places
    torch.testing.assert_close(vt._noisy(hidden[half], v, n, half, cfg, 3), noisy[half])
    assert not torch.equal(vt._noisy(hidden, v, n, places, cfg, step=4), noisy)
    assert vt._noisy(hidden, v, n, places, VerifierTrainConfig(), step=3) is hidden
    with pytest.raises(VerifierError, match="input_noise, weight_decay"):
        train_verifier(planted(), "block.1", tiny_llm(), build_word_tokenizer(), VerifierTrainConfig(input_noise=-1))


def test_ddp_share_keeps_prompt_rows_whole_and_covers_the_batch():
    from types import SimpleNamespace

    idx, rows = np.arange(12), np.repeat([5, 1, 7, 3], 3)
    shares = [vt._share(idx, rows, SimpleNamespace(num_processes=2, process_index=p)) for p in range(2)]
    assert sorted(np.concatenate(shares).tolist()) == idx.tolist()
    assert not set(rows[shares[0]]) & set(rows[shares[1]])
    with pytest.raises(VerifierError, match="prompt rows for 3 processes"):
        vt._share(idx[:6], rows, SimpleNamespace(num_processes=3, process_index=0))


def test_tag_balance_lists_rare_tag_chunks_more_often():
    ds = planted()
    rows = np.arange(ds.sizes["sample"])
    tags = np.array([str(t) for t in ds["tag"].values])
    rep = tag_repeats(ds, rows, 1.0)
    counts = {t: (tags == t).sum() for t in set(tags)}
    assert rep[tags == max(counts, key=counts.get)].max() == 1.0
    np.testing.assert_allclose(rep * np.array([counts[t] for t in tags]), max(counts.values()))
    assert tag_repeats(ds, rows, 0.0) is None
    plain = np.arange(64)
    seen = np.concatenate([b for _, b in zip(range(14), index_batches(plain, 8, 8, 0, np.where(plain < 16, 3.0, 1.0)), strict=False)])
    assert (seen < 16).sum() == (seen >= 16).sum() == 56  # 2 chunks x3 and 6 chunks x1 per epoch


def test_validation_scores_the_first_candidates_of_each_prompt_row():
    ds = planted()
    val = np.arange(0, 40)
    kept = first_candidates(ds["prompt_index"].values, val, 2)
    per_row = np.unique(ds["prompt_index"].values[kept], return_counts=True)[1]
    assert (per_row == 2).all() and len(per_row) == len(np.unique(ds["prompt_index"].values[val]))
    assert (first_candidates(ds["prompt_index"].values, val, 0) == val).all()


def test_selection_by_within_prompt_auroc_and_the_rank_loss_train(tmp_path):
    ds, tok = planted(), build_word_tokenizer()
    cfg = VerifierTrainConfig(steps=12, batch_size=16, eval_every=4, patience=10, select="within", rank_weight=1.0)
    verifier, info = train_verifier(ds, "block.1", tiny_llm(), tok, cfg, progress=False)
    stage2 = [h for h in info["history"] if h["stage"] == 2]
    assert info["best_val_within"] == max(h["val_auroc_within"] for h in stage2)
    assert info["best_step"] in [h["step"] for h in stage2]
    _, val = validation_split(ds, cfg.val_fraction, cfg.seed)  # the restored weights are that checkpoint's
    prompts = np.array([str(p) for p in ds["prompt"].values])
    s = vt.score_rows(verifier, ChunkReader(ds, vt.find_site(ds, "block.1"), 32), val, prompts)
    assert auroc_within(ds["verdict"].values[val].astype(int), s, prompts[val]) == pytest.approx(info["best_val_within"], abs=1e-6)
    with pytest.raises(VerifierError, match="selection metric"):
        train_verifier(ds, "block.1", tiny_llm(), tok, VerifierTrainConfig(select="loss"))


def test_distill_loss_pulls_margin_differences_inside_a_prompt_row_toward_the_teacher():
    from vhslab.verifier.teacher import distill_loss, same_row_pairs

    rows = np.array([0, 0, 0, 1, 1, 2])
    assert same_row_pairs(rows) == 3 + 1  # row 2 alone has no pair
    teacher = np.array([1.0, 0.0, -1.0, 0.5, -0.5, 9.0], np.float32)
    margins = lambda m: torch.stack([torch.as_tensor(m, dtype=torch.float32), torch.zeros(6)], 1)  # noqa: E731
    agree, against = distill_loss(margins(teacher), teacher, rows, 4), distill_loss(margins(-teacher), teacher, rows, 4)
    assert against > agree + 0.3
    shifted = teacher + np.array([3, 3, 3, -2, -2, 0], np.float32)  # a per-row offset is not distilled
    torch.testing.assert_close(distill_loss(margins(shifted), teacher, rows, 4), agree)
    m = torch.tensor(teacher * 0.5, requires_grad=True)  # too flat: the gradient steepens the row's order
    distill_loss(torch.stack([m, torch.zeros(6)], 1), teacher, rows, 4).backward()
    assert m.grad[0] < 0 < m.grad[2] and m.grad[5] == 0
    torch.testing.assert_close(distill_loss(margins(teacher), teacher, rows, 8), agree / 2)  # / the global pair count


def test_the_teacher_is_fit_on_the_training_rows_and_steers_the_verifier(monkeypatch):
    from vhslab.trace import store_sites
    from vhslab.verifier.teacher import fit_teacher

    train, test = planted_pair(256, 128)
    y, rows = np.asarray(train["verdict"].values).astype(int), vt.prompt_rows(train)
    site = next(s for s in store_sites(train) if s.name == "block.1")
    half = np.arange(128)
    t = fit_teacher(train, site, half, y, rows, 0.1)
    assert auroc_within(y[128:], t[128:], rows[128:]) > 0.75  # the planted direction, on rows it was not fit on
    y_other = y.copy()
    y_other[128:] = 1 - y_other[128:]
    np.testing.assert_array_equal(fit_teacher(train, site, half, y_other, rows, 0.1), t)  # other rows' verdicts unused
    from vhslab.verifier.sweep import teacher_scores

    fit_rows, _ = validation_split(train, 0.2, 4)  # the teacher `verifier eval` shows is the one training used
    shown = teacher_scores(train, train, "block.1", {"seed": 4, "teacher_c": 0.1, "teacher_weight": 5})
    np.testing.assert_allclose(shown, 1 / (1 + np.exp(-fit_teacher(train, site, fit_rows, y, rows, 0.1))), rtol=1e-5)
    cfg = VerifierTrainConfig(steps=40, batch_size=32, eval_every=40, align_steps=0, rank_weight=0, seed=1)
    ty = np.asarray(test["verdict"].values).astype(int)
    within = lambda v: auroc_within(ty, vt.score_rows(v, ChunkReader(test, site, 32), np.arange(128),  # noqa: E731
                                                       np.array([str(p) for p in test["prompt"].values])), vt.prompt_rows(test))
    plain, _ = train_verifier(train, "block.1", tiny_llm(), build_word_tokenizer(), cfg, token_grid=None, progress=False)
    monkeypatch.setattr(vt, "fit_teacher", lambda *a: -fit_teacher(*a))  # a teacher that orders every row backwards
    misled, _ = train_verifier(train, "block.1", tiny_llm(), build_word_tokenizer(), dataclasses.replace(cfg, teacher_weight=5),
                               token_grid=None, progress=False)
    assert within(plain) > 0.7 and within(misled) < within(plain) - 0.2, (within(plain), within(misled))
    for bad, match in (({"teacher_weight": -1}, "teacher_weight"), ({"teacher_c": 0}, "teacher_c")):
        with pytest.raises(VerifierError, match=match):
            train_verifier(train, "block.1", tiny_llm(), build_word_tokenizer(), VerifierTrainConfig(**bad))
    with pytest.raises(VerifierError, match="no states for the linear teacher"):
        train_verifier(train, "text", tiny_llm(), build_word_tokenizer(), VerifierTrainConfig(teacher_weight=1, align_steps=0))
