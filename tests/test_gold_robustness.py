"""The evaluator against people (the gold set) and against distortions (the robustness suite)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from vhslab.cli.main import app
from vhslab.data.prompts import TAGS
from vhslab.data.robustness import DISTORTIONS, distort, robustness_suite
from vhslab.data.shape_model import CLASSES, MODEL_FILE, ShapeModel, fit
from vhslab.data.shapes import Scene, SceneObject
from vhslab.world.gold import read_gold


def test_gold_file_covers_every_tag_with_fresh_seeds_and_a_holdout():
    records = read_gold()
    assert len(records) >= 300
    assert len({r.seed for r in records}) == len(records)
    assert min(r.seed for r in records) >= 7_000_000  # far from scoring/extraction seeds
    for split in ("dev", "holdout"):
        chosen = [r for r in records if r.split == split]
        assert {r.tag for r in chosen} == set(TAGS)
        assert all(r.correct is not None or r.ambiguous for r in chosen)
    assert sum(r.split == "holdout" for r in records) >= 180


@pytest.mark.slow
def test_evaluator_agrees_with_the_gold_set():
    import vhslab
    from vhslab.data.evaluate import ShapesEvaluator
    from vhslab.world.gold import gold_report

    world = vhslab.load_world()
    report, disagreements, _ = gold_report(world.pipeline, world.gen_config.resolve(world.pipeline),
                                           ShapesEvaluator(), read_gold())
    assert report["regenerated_identical"] >= 0.99
    for split in ("dev", "holdout"):
        assert report[split]["agreement"] >= 0.95, report[split]
        assert min(report[split]["per_tag"].values()) >= 0.90, report[split]
    assert len(disagreements) == sum(
        round((1 - report[s]["agreement"]) * report[s]["n_counted"]) for s in ("dev", "holdout"))


def test_robustness_suite_agrees_and_rejects_under_every_distortion():
    result = robustness_suite(n=12, seed=3)
    assert set(result["agreement"]) == set(DISTORTIONS)
    assert result["min_agreement"] >= 0.99, result["failures"]
    assert result["min_rejection"] >= 0.99, result["failures"]


def test_distortions_change_pixels_but_keep_objects_apart():
    scene = Scene((SceneObject("triangle", "red", 0.3, 0.3, 0.25), SceneObject("square", "blue", 0.7, 0.7, 0.25)))
    from vhslab.data.shapes import render

    plain = render(scene)
    for kind in DISTORTIONS:
        image = distort(scene, kind, np.random.default_rng(0))
        assert image is not None and image.shape == plain.shape
        assert np.abs(image.astype(int) - plain).sum() > 0, kind


def test_shape_model_refits_the_same_and_refuses_a_foreign_feature_set():
    params = fit(n_per_class=40, seed=1)
    assert params["train"]["accuracy"] > 0.9
    assert fit(n_per_class=40, seed=1)["coef"] == params["coef"]  # every draw is seeded, albumentations' too
    shipped = json.loads(MODEL_FILE.read_text())
    assert shipped["classes"] == list(CLASSES) and shipped["train"]["accuracy"] > 0.97
    with pytest.raises(ValueError, match="rebuild"):
        ShapeModel({**shipped, "features": shipped["features"][:-1]})


@pytest.mark.slow
def test_shipped_shape_model_is_what_its_recipe_gives():
    shipped = json.loads(MODEL_FILE.read_text())
    recipe = shipped["train"]
    refit = fit(recipe["n_per_class"], recipe["seed"], recipe["C"])
    np.testing.assert_allclose(refit["coef"], shipped["coef"], atol=1e-9)


def test_world_gold_cli_names_a_bad_gold_file(tmp_path):
    bad = tmp_path / "gold.jsonl"
    bad.write_text('{"index": 0}\nnot json\n')
    result = CliRunner().invoke(app, ["world", "gold", "--gold", str(bad)])
    assert result.exit_code == 2
    assert "gold.jsonl:1" in result.output
