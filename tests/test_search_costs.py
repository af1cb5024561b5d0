"""Cost models and the N a budget buys (real-size table from ../shared/REFERENCE.md, shipped)."""

import json

import pytest

from vhslab.search import SearchError
from vhslab.search.costs import COSTS, CostModel, load_cost_model, round_sizes


def test_real_size_table_reproduces_the_reference_paths_and_budgets():
    cost = load_cost_model("sana-sprint-1.6b", card="H200")
    assert cost.num_blocks == 20
    assert cost.plain_ms() == pytest.approx(28.6 + 62.3, abs=0.1)
    fixed, per = cost.split_ms("vhs", block=7)  # h7: the first 8 blocks + the LLM, batched
    # the reference's VHS path (9.0 ms/candidate), with the LLM's batch of 4 (4 x 3.7 ms) at no less than one alone (15.2)
    assert per == pytest.approx(5.4 + 15.2 / 4, abs=0.05)
    assert fixed == pytest.approx(12 * 1.43 + 62.3, abs=0.05)  # the winner: 12 more blocks + one decode
    budget = 2 * cost.plain_ms()  # two plain generations
    assert int((budget - fixed) // per) == 11  # full batches of 4 would buy 11 ...
    # ... but calls of 8 end in a smaller batch, dearer per candidate (between the batch-1 and batch-4 costs): 9
    assert cost.n_for_budget(budget, "vhs", 7) == 9 and cost.n_for_budget(budget, "vhs", 7, batch_size=4) == 9
    assert cost.call_ms("vhs", 9, 7) <= budget < cost.call_ms("vhs", 10, 7)
    assert cost.n_for_budget(budget, "vision") == 2
    assert cost.n_for_budget(budget, "none") == 1
    # a verifier's Best-of-1 costs more than a plain generation: one plain generation buys no VHS candidate
    with pytest.raises(SearchError, match="too small for one candidate"):
        cost.n_for_budget(cost.plain_ms(), "vhs", 17)


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
    assert cost.split_ms("ae") == pytest.approx((one["decode"], 20 * many["dit_block"] + one["llm_prefill"] / 4))
    assert cost.split_ms("oracle") == pytest.approx((0.0, 20 * many["dit_block"] + many["decode"]))
    assert [cost.block_at(b, 12) for b in (0, 5, 10, 11)] == [1, 9, 17, 19]
    assert cost.block_at(7, 20) == 7
    world = load_cost_model("world")
    assert world.num_blocks == 12 and "CPU" in world.card
    # in the world, the decoder is cheap next to the DiT: VHS saves far less per candidate than at real size
    ratio = lambda m, b: m.split_ms("vhs", b)[1] / m.split_ms("vision")[1]  # noqa: E731
    assert ratio(world, 10) > 2 * ratio(cost, 17)


def _toy(prompt_encode=5.0, call_overhead=3.0) -> CostModel:
    """4 blocks; a block costs 1 ms per candidate at any batch, decode 10, vision 1, LLM 2."""
    rates = {"dit_block": 1.0, "decode": 10.0, "vision_encode": 1.0, "llm_prefill": 2.0}
    return CostModel("toy", "cpu", 4, dict(rates), dict(rates), {"prompt_encode": prompt_encode, "call_overhead": call_overhead})


def test_older_cost_files_load_with_the_per_call_stages_at_zero_and_a_note(tmp_path):
    raw = json.loads((COSTS / "sana-sprint-1.6b.json").read_text())
    del raw["stages_ms"]["per_call"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(raw))
    model = load_cost_model(str(old))
    assert model.per_call == {"prompt_encode": 0.0, "call_overhead": 0.0} and "older cost model" in model.note
    shipped = load_cost_model("sana-sprint-1.6b")  # per_call written out as 0: no note, the same numbers
    assert shipped.note == "" and shipped.per_call == model.per_call and shipped.plain_ms() == model.plain_ms()
    assert "per_call is 0" in raw["source"]
    world = load_cost_model("world")  # re-measured by `vhslab bench`: its per-call stages are real
    assert world.note == "" and world.per_call["prompt_encode"] > 0
    for bad, match in (({"prompt_encode": -1.0, "call_overhead": 0.0}, "prompt_encode: expected a finite number of ms"),
                       ({"prompt_encode": 1.0}, "call_overhead: missing")):
        raw["stages_ms"]["per_call"] = bad
        old.write_text(json.dumps(raw))
        with pytest.raises(SearchError, match=match.replace("ms", "milliseconds")):
            load_cost_model(str(old))


def test_prompt_encoding_and_call_overhead_enter_every_call_and_the_n_a_budget_buys():
    toy, free = _toy(), _toy(0.0, 0.0)
    # Best-of-8 on block 1 in calls of 4: the prompt (5) + the winner (overhead 3 + blocks 2-3 + decode 10 = 15)
    # + 2 calls of (overhead 3 + 2 blocks x 4 + LLM 4 x 2) = 19 each
    assert toy.call_ms("vhs", 8, 1, batch_size=4) == pytest.approx(5 + 15 + 2 * 19)
    assert free.call_ms("vhs", 8, 1, batch_size=4) == pytest.approx(12 + 2 * 16)
    assert toy.plain_ms() == pytest.approx(5 + 3 + 4 + 10)
    assert toy.split_ms("vhs", 1) == pytest.approx((5 + 15, 19 / 4))
    assert toy.n_for_budget(58, "vhs", 1, batch_size=4) == 8
    assert toy.n_for_budget(57.9, "vhs", 1, batch_size=4) == 7  # calls of 4 + 3: 5 + 15 + 19 + 15 = 54
    assert free.n_for_budget(57.9, "vhs", 1, batch_size=4) == 11  # without them the same budget buys more
    # smaller calls pay the overhead more often
    assert toy.n_for_budget(100, "ae", batch_size=1) < toy.n_for_budget(100, "ae", batch_size=8)
    with pytest.raises(SearchError, match="too small for one candidate"):
        toy.n_for_budget(toy.call_ms("vision", 1) - 0.1, "vision")


def test_noise_search_rounds_are_charged_one_after_another():
    toy = _toy()
    # 6 candidates in 3 rounds: three calls of 2, not one call of 6
    assert round_sizes(6, 3) == [2, 2, 2]
    one_call = toy.call_ms("vhs", 6, 1)
    rounds = toy.call_ms("vhs", 6, 1, rounds=3)
    assert rounds == pytest.approx(5 + 15 + 3 * toy.batch_ms("vhs", 2, 1))
    assert rounds - one_call == pytest.approx(2 * 3)  # here only the overhead is per call: paid twice more
    assert toy.n_for_budget(195, "vhs", 1, rounds=3) == 39 < toy.n_for_budget(195, "vhs", 1) == 40  # 6 calls, not 5
    real = load_cost_model("sana-sprint-1.6b")  # on a GPU a small batch is dear per candidate too
    assert real.call_ms("vhs", 3, 17, rounds=3) == pytest.approx(real.call_ms("vhs", 1, 17) + 2 * real.batch_ms("vhs", 1, 17))


def test_a_batch_never_costs_less_than_a_smaller_one():
    real = load_cost_model("sana-sprint-1.6b")  # vision: 4 x 1.6 ms at batch 4 < 6.7 ms at batch 1
    costs = [real.stage_ms("vision_encode", b) for b in range(1, 12)]
    assert costs == sorted(costs) and costs[0] == 6.7 and costs[7] == pytest.approx(8 * 1.6)
    assert real.stage_ms("dit_block", 1) == 1.43 and real.stage_ms("dit_block", 4) == pytest.approx(4 * 0.675)
    calls = [real.call_ms("vision", n) for n in range(1, 40)]
    assert calls == sorted(calls)
