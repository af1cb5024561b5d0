"""Attribution sanity checks that can fail: planted settings where the model-free map passes the old
mean-deletion check but not ROAD's, and the labels of the check table (issue 34, item 4)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vhslab.analysis.checks import check_table, perturbation, run_checks, token_norm_map
from vhslab.analysis.road import neighbour_weights, road_impute

torch.set_num_threads(1)
SIDE, C, HOT = 8, 8, 0  # an 8 x 8 token grid, 8 channels, the planted token in a corner


class PlantedScorer(torch.nn.Module):
    """A verifier-like scorer: margin = <w, z[HOT]> / rms(z), z the normalised tokens. Only the planted
    token's content decides the sign; the whole grid's RMS scales it, as a layer norm would, so tokens
    set to the mean (far from the data) move the margin although their content does not matter."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", torch.zeros(C))
        self.register_buffer("var", torch.ones(C))
        self.w, self.config = w, SimpleNamespace(eps=1e-6, site="block.0")

    def answer_logits(self, hidden, prompts):
        z = (hidden.float() - self.mean) / torch.sqrt(self.var + self.config.eps)
        m = (z[:, HOT] @ self.w) / z.pow(2).mean((1, 2)).add(1e-6).sqrt()
        return torch.stack([m / 2, -m / 2], 1)


def planted(n: int = 48, seed: int = 0):
    """Tokens on a smooth field (a broad bump of high norm away from the planted token) and the planted
    token's content (+-w) on top: the high-norm tokens are not the ones that matter."""
    g = np.random.default_rng(seed)
    w = g.standard_normal(C)
    w /= np.linalg.norm(w)
    rows, cols = np.divmod(np.arange(SIDE * SIDE), SIDE)
    h = np.zeros((n, SIDE * SIDE, C))
    for i in range(n):
        r0, c0 = g.uniform(4, 7, 2)
        amp = 0.5 + 4.5 * np.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / 18)
        v = g.standard_normal(C)
        h[i] = amp[:, None] * v / np.linalg.norm(v) + 0.05 * g.standard_normal((SIDE * SIDE, C))
        h[i, HOT] += g.choice([-1.0, 1.0]) * w
    prompts = [f"prompt {i // 2}" for i in range(n)]  # two candidates per prompt: the bootstrap resamples prompts
    return PlantedScorer(torch.as_tensor(w, dtype=torch.float32)), torch.as_tensor(h, dtype=torch.float32), prompts


def test_model_free_map_passes_the_old_deletion_check_and_fails_roads():
    from vhslab.analysis.attribution import visual_ig
    from vhslab.analysis.checks import random_map

    v, h, prompts = planted()
    n, t = h.shape[:2]
    ig, _ = visual_ig(v, h, prompts, n_steps=32)
    assert (np.abs(ig).argmax(1) == HOT).all()  # IG finds the planted token
    norm = token_norm_map(v, h)
    assert ((norm > norm[:, [HOT]]).sum(1) >= 13).all()  # which the token-norm map ranks low
    maps = {"ig": ig, "token_norm": norm, "random": random_map((n, t), 0)}
    table, values, _ = run_checks(v, h, prompts, maps, maps, fractions=(0.1, 0.2), n_boot=300)
    old, road = table["deletion"]["maps"], table["deletion_road"]["maps"]
    # the old check (removed tokens set to the mean): the model-free map passes, off the data
    assert old["token_norm"]["label"] == "passed" and old["token_norm"]["ci"][0] > 1.1
    # ROAD (removed tokens imputed from their neighbours): the same map fails
    assert road["token_norm"]["label"] == "failed" and road["token_norm"]["ci"][1] < 1
    # the trained map passes both, separated from both controls
    for check in ("deletion", "deletion_road", "insertion_road"):
        row = table[check]["maps"]["ig"]
        assert row["label"] == "passed" and row["vs_token_norm"]["ci"][0] > 0 and row["vs_random"]["ci"][0] > 0
    # maps that do not change with the model fail the randomisation check; one equal to its controls is uninformative
    assert table["randomisation"]["maps"]["token_norm"]["label"] == "failed"
    assert table["randomisation"]["maps"]["ig"]["label"] == "uninformative"
    assert set(values["deletion_road"]) == set(maps) and values["deletion_road"]["ig"][0].shape == (n,)


def test_labels_of_the_check_table():
    g = np.random.default_rng(0)
    n = 40
    prompts = np.repeat(np.arange(20), 2)
    control = g.uniform(1, 2, n)
    ones = np.ones(n)
    values = {
        "deletion": {"ig": (control, ones), "token_norm": (control, ones), "random": (g.uniform(0.5, 1.5, n), ones)},
        "deletion_road": {"ig": (control + 1, ones), "token_norm": (control, ones), "random": (ones, ones)},
        "randomisation": {"ig": (0.7 + 0.01 * g.standard_normal(n), ones), "token_norm": (ones, ones), "random": (ones, ones)},
    }
    table = check_table(values, prompts, trained=("ig",), n_boot=200)
    same = table["deletion"]["maps"]["ig"]
    assert same["label"] == "uninformative" and same["vs_token_norm"]["diff"] == 0 and same["vs_token_norm"]["ci"] == [0, 0]
    assert table["deletion"]["maps"]["token_norm"]["label"] == "passed"  # a control is judged by the rule alone
    assert table["deletion_road"]["maps"]["ig"]["label"] == "passed"
    # separated from the controls, but above the rule's bar: failed, not uninformative
    assert table["randomisation"]["maps"]["ig"]["label"] == "failed"
    for check in table.values():
        for row in check["maps"].values():
            assert row["ci"][0] <= row["value"] <= row["ci"][1]


def test_road_imputation():
    side, c = 6, 3
    rows, cols = np.divmod(np.arange(side * side), side)
    field = np.stack([2.0 * rows - cols + 1, rows + 0.5 * cols, np.ones(side * side)], 1)  # linear: harmonic inside
    h = torch.as_tensor(np.stack([field, field]), dtype=torch.float64)
    drop = np.zeros((2, side * side), bool)
    drop[0, [14, 15, 20, 21]] = True  # an interior 2 x 2 block
    drop[1, :] = True
    drop[1, 0] = False
    with pytest.raises(ValueError, match="at least one kept token"):
        road_impute(h, np.ones((2, side * side), bool), torch.ones(c), 0.0)
    out = road_impute(h, drop, torch.ones(c), noise=0.0)
    np.testing.assert_allclose(out[0].numpy(), field, atol=1e-9)  # exact on a linear field
    np.testing.assert_allclose(out[1].numpy(), np.broadcast_to(field[0], field.shape), atol=1e-9)  # one kept token: its value
    noisy = road_impute(h[:1].repeat(200, 1, 1), drop[:1].repeat(200, 0), torch.tensor([1.0, 2.0, 4.0]), 0.1)
    kept = ~drop[0]
    assert torch.equal(noisy[:, kept], h[:1, kept].expand(200, -1, -1))
    sd = (noisy[:, drop[0]] - h[:1, drop[0]]).std((0, 1)).numpy()
    np.testing.assert_allclose(sd, [0.1, 0.2, 0.4], rtol=0.15)
    w = neighbour_weights(3)
    assert w[4].sum() == pytest.approx(4 / 6 + 4 / 12) and w[0].sum() == pytest.approx(2 / 6 + 1 / 12)


def test_perturbation_draws_the_same_random_tokens_for_every_map():
    v, h, prompts = planted(8)
    a = np.random.default_rng(1).random((8, 64))
    one = perturbation(v, h, prompts, {"a": a}, (0.1,), "road", n_random=2, seed=3)
    two = perturbation(v, h, prompts, {"a": a, "b": -a}, (0.1,), "road", n_random=2, seed=3)
    np.testing.assert_array_equal(one["deletion_random"], two["deletion_random"])
    np.testing.assert_array_equal(two["deletion_top"]["a"], two["deletion_top"]["b"])  # ranked by |map|
