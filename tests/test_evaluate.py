import numpy as np
import pytest

from vhslab.shapes.evaluate import ShapesEvaluator, summarize
from vhslab.shapes.geneval import Detection, judge, relative_position
from vhslab.shapes.phrasing import parse_prompt
from vhslab.shapes.scenes import BACKGROUND, Scene, SceneObject, render

EV = ShapesEvaluator()


def obj(shape, color, cx, cy, size=0.24):
    return SceneObject(shape, color, cx, cy, size)


def judged(prompt, *objects):
    return EV.evaluate(render(Scene(objects)), parse_prompt(prompt))


def test_detector_finds_shape_colour_box_and_confidence():
    scene = Scene((obj("circle", "red", 0.25, 0.25), obj("square", "blue", 0.75, 0.25),
                   obj("triangle", "green", 0.25, 0.75), obj("star", "yellow", 0.75, 0.75)))
    dets = EV.detect(render(scene))
    assert sorted((d.cls, d.color) for d in dets) == [("circle", "red"), ("square", "blue"),
                                                       ("star", "yellow"), ("triangle", "green")]
    assert all(d.accepted and d.confidence > 0.9 for d in dets)
    square = next(d for d in dets if d.cls == "square")
    assert square.center == pytest.approx((0.75 * 64, 0.25 * 64), abs=1.0)
    assert square.box[2] - square.box[0] == pytest.approx(0.24 * 64, abs=1.5)


def test_include_and_colour_rules():
    assert judged("a photo of a red circle", obj("circle", "red", 0.5, 0.5)).correct
    v = judged("a photo of a red circle", obj("circle", "blue", 0.5, 0.5))
    assert not v.correct and "red circle" in v.reasons[0]
    assert v.items[0].found_count == 1 and v.items[0].found_color == "blue"
    assert not judged("a photo of a circle", obj("square", "red", 0.5, 0.5)).correct
    assert not judged("a photo of a circle", ).correct  # empty image
    # extra objects of other classes do not matter
    assert judged("a photo of a star", obj("star", "white", 0.3, 0.3), obj("square", "red", 0.7, 0.7)).correct
    two = judged("a photo of a red circle and a blue square", obj("circle", "red", 0.3, 0.3), obj("square", "blue", 0.7, 0.7))
    assert two.correct
    swapped = judged("a photo of a red circle and a blue square", obj("circle", "blue", 0.3, 0.3), obj("square", "red", 0.7, 0.7))
    assert not swapped.correct and len(swapped.reasons) == 2


def test_counting_rule_with_exclude():
    pts = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]
    three = [obj("star", "pink", x, y, 0.22) for x, y in pts[:3]]
    assert judged("a photo of three stars", *three).correct
    assert not judged("a photo of three stars", *three[:2]).correct
    four = [*three, obj("star", "green", *pts[3], 0.22)]
    v = judged("a photo of three stars", *four)
    assert not v.correct and v.reasons == ["expected star<4, found 4"]
    assert v.items[0].found_count == 4


def test_relative_position_matches_geneval_rule():
    # boxes (x0, y0, x1, y1); A 10 wide, B 10 wide, centres 20 apart on x
    a, b = (0, 0, 10, 10), (20, 0, 30, 10)
    assert relative_position(a, b) == {"left of"}
    assert relative_position(b, a) == {"right of"}
    # shrink: offset 20 - 0.1*(10+10)=18 -> normalised 0.9 on x; dy 0 -> left only
    # centres close: offset 1 on x, shrink 2 -> nothing left: no relation
    assert relative_position((0, 0, 10, 10), (1, 0, 11, 10)) == set()
    # diagonal at 45 degrees: components 0.707*... after shrink both below 0.5 -> no relation,
    # or both above it -> two relations
    assert relative_position((0, 0, 2, 2), (100, 100, 102, 102)) == {"left of", "above"}
    # normalisation uses the *unshrunk* offset: dx=10, dy=10, dims 20 each -> shrink 4 per axis
    # -> (6, 6)/14.14 = 0.42 per axis: no relation at all
    assert relative_position((0, 0, 20, 20), (10, 10, 30, 30)) == set()
    # exactly at the threshold is not a relation (strict inequality)
    # dx: |offset| 10, dims 0 -> component 10/|(10, 10*sqrt(3))| = 0.5
    assert "left of" not in relative_position((0, 0, 0, 0), (10, 10 * np.sqrt(3), 10, 10 * np.sqrt(3)))
    assert "below" in relative_position((0, 20, 10, 30), (0, 0, 10, 10))


def test_position_rule_end_to_end():
    prompt = "a photo of a star left of a circle"
    assert judged(prompt, obj("star", "red", 0.2, 0.5), obj("circle", "blue", 0.8, 0.5)).correct
    v = judged(prompt, obj("star", "red", 0.8, 0.5), obj("circle", "blue", 0.2, 0.5))
    assert not v.correct and v.items[1].found_relation == "right of"
    # vertically stacked, a small x offset: the shrink removes it
    assert not judged(prompt, obj("star", "red", 0.45, 0.2), obj("circle", "blue", 0.5, 0.8)).correct
    # missing reference: no target
    v = judged(prompt, obj("star", "red", 0.2, 0.5))
    assert not v.correct and any("circle" in r for r in v.reasons)


def test_judge_uses_top_count_detections_by_confidence():
    spec = parse_prompt("a photo of a red circle")
    dets = [Detection("circle", "blue", (0, 0, 10, 10), 0.9), Detection("circle", "red", (20, 0, 30, 10), 0.8)]
    assert not judge(spec, dets).correct  # GenEval checks only the most confident circle
    dets[1] = Detection("circle", "red", (20, 0, 30, 10), 0.95)
    assert judge(spec, dets).correct
    rejected = [Detection("circle", "red", (0, 0, 10, 10), 0.4, accepted=False)]
    assert not judge(spec, rejected).correct


def test_fragments_are_not_counted_and_off_palette_objects_are_found():
    img = np.full((64, 64, 3), BACKGROUND, np.uint8)
    img[10:14, 5:60] = (220, 20, 30)  # a thin red bar: no shape of the world
    img[30:50, 30:50] = (237, 80, 15)  # a block halfway between red and orange
    dets = EV.detect(img)
    bar = next(d for d in dets if d.box[1] == 10)
    block = next(d for d in dets if d.box[1] == 30)
    assert bar.cls is None and not bar.accepted
    assert block.accepted and block.cls == "square" and block.color in ("red", "orange")
    assert block.color_confidence < 0.9  # named, but as the in-between shade it is
    assert EV.evaluate(img, parse_prompt("a photo of a square")).correct  # no colour asked: colour does not matter
    assert not EV.evaluate(img, parse_prompt("a photo of a blue square")).correct
    # two same-colour circles that touch merge into a blob that is no circle
    merged = render(Scene((obj("circle", "red", 0.4, 0.5, 0.3), obj("circle", "red", 0.62, 0.5, 0.3))))
    assert not EV.evaluate(merged, parse_prompt("a photo of two circles")).correct
    # a blurred scene still reads as itself
    from PIL import Image, ImageFilter

    sharp = render(Scene((obj("square", "green", 0.5, 0.5, 0.3),)))
    blurry = np.asarray(Image.fromarray(sharp).filter(ImageFilter.GaussianBlur(1.0)))
    assert EV.evaluate(blurry, parse_prompt("a photo of a green square")).correct
    noisy = np.clip(sharp + np.random.default_rng(0).normal(0, 40, sharp.shape), 0, 255).astype(np.uint8)
    assert not EV.evaluate(noisy, parse_prompt("a photo of two squares")).correct


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((64, 64), np.uint8), "HxWx3"),
    (np.zeros((64, 64, 4), np.uint8), "HxWx3"),
    (np.zeros((64, 64, 3), np.float32), "uint8"),
    (np.zeros((4, 4, 3), np.uint8), "too small"),
])
def test_bad_images_are_named(bad, msg):
    with pytest.raises(ValueError, match=msg):
        EV.evaluate(bad, parse_prompt("a photo of a circle"))


def test_summary_is_mean_of_tag_means():
    s = summarize(["a", "a", "a", "a", "b"], [True, True, True, False, False])
    assert s["per_tag"] == {"a": 0.75, "b": 0.0}
    assert s["overall"] == pytest.approx(0.375)
    with pytest.raises(ValueError):
        summarize(["a"], [])


def test_other_resolutions_are_judged():
    scene = Scene((obj("triangle", "orange", 0.3, 0.5, 0.3), obj("square", "purple", 0.75, 0.5, 0.3)))
    spec = parse_prompt("a photo of an orange triangle left of a purple square")
    for res in (48, 96, 128):
        assert EV.evaluate(render(scene, res), spec).correct, res
