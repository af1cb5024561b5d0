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
