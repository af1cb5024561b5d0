import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from vhslab.cli.main import app
from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.phrasing import parse_prompt

runner = CliRunner()


def test_world_render_writes_a_scene_that_satisfies_the_prompt(tmp_path):
    out = tmp_path / "x.png"
    prompt = "a photo of a blue star left of a red circle"
    result = runner.invoke(app, ["world", "render", prompt, "-o", str(out), "--seed", "3"])
    assert result.exit_code == 0, result.output
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == (64, 64, 3)
    assert ShapesEvaluator().evaluate(image, parse_prompt(prompt)).correct


def test_world_render_names_unknown_words(tmp_path):
    result = runner.invoke(app, ["world", "render", "a photo of a teal circle", "-o", str(tmp_path / "y.png")])
    assert result.exit_code == 2
    assert "teal" in result.output
    assert not (tmp_path / "y.png").exists()


def test_world_check_json_last_line_meets_the_bar():
    result = runner.invoke(app, ["world", "check", "--n", "30", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("agreement", "rejection", "images_per_s"):
        assert set(report[key]["per_tag"]) == {"single_object", "two_object", "counting", "colors",
                                               "position", "color_attr"}
    assert report["agreement"]["overall"] >= 0.995
    assert min(report["rejection"]["per_tag"].values()) >= 0.99
    assert report["images_per_s"]["overall"] > 0
