import numpy as np
import pytest

from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.phrasing import caption_detections, caption_scene, parse_prompt, prompt_text
from vhslab.shapes.prompts import PromptError
from vhslab.shapes.scenes import BACKGROUND, COLORS, Scene, SceneObject, render, sample_free_scene, sample_scene
from vhslab.shapes.suites import load_suite


def test_render_is_uint8_antialiased_and_configurable():
    scene = Scene((SceneObject("circle", "red", 0.5, 0.5, 0.3),))
    img = render(scene)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == BACKGROUND
    assert tuple(img[32, 32]) == COLORS["red"]
    colours = {tuple(p) for p in img.reshape(-1, 3)}
    assert len(colours) > 2  # anti-aliased edge pixels are mixtures
    assert render(scene, 96).shape == (96, 96, 3)
    # the coverage-weighted area of the circle matches pi r^2 within 2 %
    bg, red = np.array(BACKGROUND, float), np.array(COLORS["red"], float)
    coverage = ((bg - img) @ (bg - red)) / ((bg - red) @ (bg - red))
    expected = np.pi * (0.15 * 64) ** 2
    assert abs(coverage.sum() - expected) / expected < 0.02


def test_unknown_vocabulary_is_named():
    with pytest.raises(PromptError, match=r"shape"):
        Scene((SceneObject("dog", "red", 0.5, 0.5, 0.3),))
    with pytest.raises(PromptError, match=r"include\[0\].class: unknown shape 'dog'"):
        parse_prompt("a photo of a dog")
    with pytest.raises(PromptError, match=r"include\[0\].color: unknown colour 'teal'"):
        parse_prompt("a photo of a teal circle")
    with pytest.raises(PromptError, match=r"include\[0\].count"):
        parse_prompt("a photo of zero circles")
    with pytest.raises(PromptError, match="cannot read"):
        parse_prompt("a photo of a very big circle")


def test_parse_prompt_reads_geneval_phrasing():
    spec = parse_prompt("a photo of a blue star right of a green square")
    assert spec.tag == "position"
    assert spec.include[0].cls == "square" and spec.include[0].color == "green"
    assert spec.include[1].position == ("right of", 0) and spec.include[1].color == "blue"
    counting = parse_prompt("a photo of three stars")
    assert counting.tag == "counting" and counting.exclude[0].count == 4
    assert parse_prompt("a photo of an orange circle and a red square").tag == "color_attr"
    for spec in load_suite("geneval-shapes") + load_suite("train"):
        assert parse_prompt(spec.prompt) == spec
        assert prompt_text(spec) == spec.prompt


def test_every_sampled_scene_satisfies_its_prompt_by_the_evaluator():
    rng = np.random.default_rng(0)
    evaluator = ShapesEvaluator()
    suite = load_suite("geneval-shapes") + load_suite("train")
    for spec in suite:
        scene = sample_scene(spec, rng)
        assert sum(it.count for it in spec.include) == len(scene.objects)
        verdict = evaluator.evaluate(render(scene), spec)
        assert verdict.correct, (spec.prompt, verdict.reasons)


def test_sampler_rejects_unsatisfiable_prompts():
    from vhslab.shapes.prompts import Item, PromptSpec

    spec = PromptSpec("counting", "x", (Item("circle", 3),), (Item("circle", 2),))
    with pytest.raises(PromptError, match="unsatisfiable"):
        sample_scene(spec, np.random.default_rng(0))
    with pytest.raises(PromptError, match="at most 5"):
        sample_scene(PromptSpec("counting", "x", (Item("circle", 4), Item("star", 2))), np.random.default_rng(0))


def test_free_scenes_and_captions_describe_what_is_there():
    rng = np.random.default_rng(1)
    evaluator = ShapesEvaluator()
    for _ in range(100):
        scene = sample_free_scene(rng)
        assert 1 <= len(scene.objects) <= 4
        caption = caption_scene(scene)
        assert caption.startswith("a photo of ")
        # the re-caption from detections matches the caption of a left-to-right ordered scene
        # (detected boxes are whole pixels: ties in x go top to bottom)
        ordered = Scene(tuple(sorted(scene.objects, key=lambda o: (round(o.box[0] * 64), o.box[1]))))
        detections = evaluator.detect(render(scene))
        assert caption_detections(detections) == caption_scene(ordered)
        # and the caption, read back as a prompt, is satisfied by the scene (GenEval ranks a
        # class's detections by confidence, so a class in two colours may fail by its rule)
        spec = parse_prompt(caption)
        if len({it.cls for it in spec.include}) == len(spec.include):
            assert evaluator.evaluate(render(scene), spec).correct, caption
