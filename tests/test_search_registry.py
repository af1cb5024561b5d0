"""The search-path registry: every path is one class saying what it runs, scores and costs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vhslab.search import PATHS, SearchError, SearchPath, load_cost_model, path_of, register


def _verifier(site: str):
    return SimpleNamespace(config=SimpleNamespace(site=site))


def test_paths_by_site_and_name():
    assert list(PATHS) == ["vhs", "vision", "ae", "none", "random", "oracle"]
    assert [(p.name, b) for p, b in (path_of(_verifier("block.7")), path_of(_verifier("ae_latent")),
                                     path_of(_verifier("vision")), path_of(None), path_of("oracle"))] == \
        [("vhs", 7), ("ae", None), ("vision", None), ("none", None), ("oracle", None)]
    with pytest.raises(SearchError, match="cannot pick among images"):
        path_of(_verifier("text"))
    with pytest.raises(SearchError, match="one of none, random, oracle"):
        path_of("vhs")  # a verifier path is chosen by its verifier, not by name


def test_cost_model_charges_each_path_its_stages():
    cost = load_cost_model("sana-sprint-1.6b")
    for name, path in PATHS.items():
        charged = PATHS[path.cost_as] if path.cost_as else path
        block = 7 if charged.to_block else None
        blocks = 8 if charged.to_block else cost.num_blocks
        want = cost.per_call["call_overhead"] + blocks * cost.stage_ms("dit_block", 3)
        for stage in charged.stages:
            want += cost.stage_ms(stage, 3)
        assert cost.batch_ms(name, 3, block) == want, name


def test_a_new_path_is_one_class():
    @register
    class Blind(SearchPath):
        """Reads the decoded image (a site no other path reads); charged every block and the decode."""

        name, site, stages = "blind", "image", ("decode",)

    try:
        path, block = path_of(_verifier("image"))
        assert path.name == "blind" and block is None
        cost = load_cost_model("world")
        assert cost.batch_ms("blind", 1) == cost.batch_ms("oracle", 1)  # every block + decode, like the oracle
        with pytest.raises(SearchError, match="new name"):
            register(Blind)
    finally:
        PATHS.pop("blind")
