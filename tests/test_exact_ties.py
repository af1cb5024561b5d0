"""Scores that cannot differ tie exactly, and ranking metrics count ties as halves (issue 34, item 5)."""

import numpy as np
import pytest
import torch

import vhslab
from vhslab.probes.metrics import auroc_binary, auroc_within, bootstrap_ci
from vhslab.shapes.suites import load_suite
from vhslab.testing.planted import planted_store
from vhslab.verifier.sweep import score_store

torch.set_num_threads(1)


def test_ties_count_as_halves():
    y = np.array([1, 0, 1, 0, 1, 0])
    groups = np.array([0, 0, 0, 0, 1, 1])
    assert auroc_within(y, np.zeros(6), groups) == 0.5
    assert auroc_binary(y, np.zeros(6)) == 0.5
    # group 0: pos 1.0 ties neg 1.0 (1/2) and beats neg 0.0 (1); pos 2.0 beats both (2); group 1: a tie (1/2)
    s = np.array([1.0, 1.0, 2.0, 0.0, 3.0, 3.0])
    assert auroc_within(y, s, groups) == (0.5 + 1 + 2 + 0.5) / 5
    lo, hi = bootstrap_ci("classification", y, np.stack([1 - np.zeros(6), np.zeros(6)], 1), groups, True, 50)["auroc_within"]
    assert lo == hi == 0.5  # every replicate of an all-tied score is exactly chance


def test_shipped_text_verifier_is_exactly_chance_within_a_prompt():
    """A text-only verifier sees only the prompt: its candidates of one prompt must tie bit for bit, in
    whatever batch and call they are scored (before: padding noise of ~3e-7 gave 0.494-0.506)."""
    suite = [s.prompt for s in load_suite("geneval-shapes")]  # 553 rows, 160 distinct prompts
    prompts = np.repeat(suite, 4)  # the test store's layout: 4 candidates per row
    store = planted_store(len(prompts), n_layers=1, n_channels=8, seed=5).assign(prompt=("sample", prompts))
    scores = score_store(vhslab.load_verifier(kind="text"), store)
    for p in np.unique(prompts):
        assert len(set(scores[prompts == p].tolist())) == 1, p
    y = store["verdict"].values.astype(int)
    assert 0 < y.mean() < 1 and auroc_within(y, scores, prompts) == 0.5


def test_identical_inputs_tie_in_one_call():
    v = vhslab.load_verifier(kind="vhs")
    h = torch.randn(3, 64, v.config.in_channels)
    rows = torch.tensor([0, 1, 0, 2, 0, 1] * 6)
    prompts = ["a photo of a red circle", "a photo of two stars"] * 18
    prompts = [prompts[i] if int(r) else "a photo of a red circle" for i, r in enumerate(rows)]
    s = v.score(h[rows], prompts, batch_size=7)
    key = [(int(r), p) for r, p in zip(rows, prompts, strict=True)]
    for k in set(key):
        assert len({float(x) for x, kk in zip(s, key, strict=True) if kk == k}) == 1
    assert s.shape == (36,) and len(set(s.tolist())) == len(set(key))
    alone = v.score(h[1:2], [prompts[1]])[0]
    assert s[1] == pytest.approx(alone, abs=1e-5)  # deduplication broadcasts the right row
