"""Cost models and the N a budget buys (real-size table from ../shared/REFERENCE.md, shipped)."""

import json

import pytest

from vhslab.search import SearchError
from vhslab.search.costs import load_cost_model


def test_real_size_table_reproduces_the_reference_paths_and_budgets():
    cost = load_cost_model("sana-sprint-1.6b", card="H200")
    assert cost.num_blocks == 20
    assert cost.plain_ms() == pytest.approx(28.6 + 62.3, abs=0.1)
    fixed, per = cost.split_ms("vhs", block=7)  # h7: the first 8 blocks + the LLM, batched
    assert per == pytest.approx(5.4 + 3.7, abs=0.05)  # the reference's VHS path: 9.0 ms/candidate
    assert fixed == pytest.approx(12 * 1.43 + 62.3, abs=0.05)  # the winner: 12 more blocks + one decode
    budget = 2 * cost.plain_ms()  # two plain generations
    assert cost.n_for_budget(budget, "vhs", 7) == int((budget - fixed) // per) == 11
    assert cost.n_for_budget(budget, "vision") == 2
    assert cost.n_for_budget(budget, "none") == 1


def test_cost_model_errors(tmp_path):
    cost = load_cost_model("sana-sprint-1.6b")
    with pytest.raises(SearchError, match="too small for one candidate"):
        cost.n_for_budget(50, "vhs", 7)
    with pytest.raises(SearchError, match="not A100"):
        load_cost_model("sana-sprint-1.6b", card="A100")
    with pytest.raises(SearchError, match="block in 0-19"):
        cost.split_ms("vhs", 25)
    with pytest.raises(SearchError, match="unknown path"):
        cost.split_ms("clip")
    with pytest.raises(FileNotFoundError, match=r"sana-sprint-1\.6b"):
        load_cost_model("pixart-xl")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "card": "cpu", "num_blocks": 2, "stages_ms": {"batch_1": {}}}))
    with pytest.raises(SearchError, match="not a cost model"):
        load_cost_model(str(bad))


def test_every_path_and_the_depth_mapping():
    cost = load_cost_model("sana-sprint-1.6b")
    one, many = cost.batch_1, cost.batch_4
    assert cost.split_ms("ae") == pytest.approx((one["decode"], 20 * many["dit_block"] + many["llm_prefill"]))
    assert cost.split_ms("oracle") == pytest.approx((0.0, 20 * many["dit_block"] + many["decode"]))
    assert [cost.block_at(b, 12) for b in (0, 5, 10, 11)] == [1, 9, 17, 19]
    assert cost.block_at(7, 20) == 7
    world = load_cost_model("world")
    assert world.num_blocks == 12 and "CPU" in world.card
    # in the world, the decoder is cheap next to the DiT: VHS saves far less per candidate than at real size
    ratio = lambda m, b: m.split_ms("vhs", b)[1] / m.split_ms("vision")[1]  # noqa: E731
    assert ratio(world, 10) > 2 * ratio(cost, 17)
