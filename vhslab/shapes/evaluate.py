"""The shapes world's evaluator: detect objects, then apply GenEval's rules exactly.

Detection (`vhslab.shapes.detect`) does not depend on the palette: every object that differs
from the background is found, its colour named as the nearest of GenEval's ten (CIEDE2000),
its shape classified from rotation-invariant descriptors by a classifier trained on
augmented renders (`vhslab.shapes.shape_model`); a blob the classifier calls a fragment, or
calls nothing with confidence, is not counted. Validated on the gold set of generated images
judged by eye (docs/evaluator.md).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from vhslab.errors import InputError
from vhslab.shapes.detect import components, name_color, shape_features, split_by_colour
from vhslab.shapes.geneval import Detection, Verdict, judge
from vhslab.shapes.prompts import PromptSpec
from vhslab.shapes.scenes import check_vocabulary
from vhslab.shapes.shape_model import CLASSES, OTHER, shipped_model

EVALUATOR_VERSION = "2"  # 1: palette segmentation + prototype distances; 2: palette-free detection


class Evaluator(Protocol):
    """Anything that judges an image against a GenEval prompt (a detector-based one for real
    images plugs in here)."""

    def evaluate(self, image: np.ndarray, spec: PromptSpec) -> Verdict:
        """The verdict of `image` (uint8, H x W x 3) for `spec`."""


def check_image(image) -> np.ndarray:
    """Return the image as an HxWx3 uint8 array or raise InputError saying what is wrong."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise InputError(f"image: expected dtype uint8, got {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"image: expected shape HxWx3, got {arr.shape}")
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise InputError(f"image: {arr.shape[0]}x{arr.shape[1]} is too small to judge")
    return arr


class ShapesEvaluator:
    """Detector + GenEval rules for shapes-world images (any square or rectangular size).

    threshold: minimal shape confidence for a detection to count (GenEval's detector: 0.3);
    counting_threshold: the one for counting prompts (GenEval's detector uses a stricter 0.9; here
    the same 0.5 matched the people best, docs/evaluator.md);
    min_area_fraction: smaller blobs are specks, never objects.
    """

    name = "shapes"
    version = EVALUATOR_VERSION

    def __init__(self, threshold: float = 0.5, counting_threshold: float = 0.5,
                 min_area_fraction: float = 0.004) -> None:
        self.threshold = threshold
        self.counting_threshold = counting_threshold
        self.min_area_fraction = min_area_fraction

    def describe(self) -> dict:
        """Name, version and thresholds: what defines its labels."""
        return {"name": self.name, "version": self.version, "threshold": self.threshold,
                "counting_threshold": self.counting_threshold, "min_area_fraction": self.min_area_fraction}

    def detect(self, image, threshold: float | None = None) -> list[Detection]:
        """Every foreground object above the minimal area, with shape (None for a fragment),
        colour, their confidences and box; `accepted` marks shapes whose confidence reaches
        the threshold. Most confident first."""
        image = check_image(image)
        threshold = self.threshold if threshold is None else threshold
        h, w = image.shape[:2]
        min_area = max(4, int(self.min_area_fraction * h * w))
        detections = []
        for comp in components(image, min_area):
            found = self._classify(comp, threshold)
            if not found.accepted:  # two touching objects of two colours: keep the parts if each is a shape
                parts = [self._classify(part, threshold) for part in split_by_colour(comp, min_area)]
                if parts and all(p.accepted for p in parts):
                    detections.extend(parts)
                    continue
            detections.append(found)
        return sorted(detections, key=lambda d: -d.confidence)

    @staticmethod
    def _classify(comp, threshold: float) -> Detection:
        feats = shape_features(comp.alpha)
        cls, conf = None, 0.0
        if feats is not None:
            p = shipped_model().proba(feats)
            best = int(np.argmax(p))
            cls, conf = (None if best == OTHER else CLASSES[best]), float(p[best])
        color, color_conf = name_color(comp.lab)
        return Detection(cls, color, comp.box, conf, comp.area, cls is not None and conf >= threshold, color_conf)

    @staticmethod
    def check_prompt(spec: PromptSpec) -> None:
        """Raise PromptError if the world cannot render or judge this prompt (unknown shape or
        colour, too many objects): callers check every prompt before any compute."""
        check_vocabulary(spec)

    def evaluate(self, image, spec: PromptSpec) -> Verdict:
        """GenEval's verdict on `image` for `spec` (the counting threshold for counting prompts); PromptError for words outside the world."""
        check_vocabulary(spec)
        threshold = self.counting_threshold if spec.tag == "counting" else self.threshold
        return judge(spec, self.detect(image, threshold))


def summarize(tags: list[str], correct: list[bool]) -> dict:
    """GenEval's summary: mean correctness per tag, overall = mean of the tag means."""
    if len(tags) != len(correct):
        raise InputError(f"tags ({len(tags)}) and correct ({len(correct)}) differ in length")
    per_tag: dict[str, list[bool]] = {}
    for tag, ok in zip(tags, correct):  # noqa: B905 (lengths checked above, with a clearer message)
        per_tag.setdefault(tag, []).append(bool(ok))
    means = {tag: float(np.mean(v)) for tag, v in per_tag.items()}
    overall = float(np.mean(list(means.values()))) if means else float("nan")
    return {"overall": overall, "per_tag": means, "n": len(correct)}


def overall_score(tags, values, weights: np.ndarray | None = None):
    """GenEval's overall score (mean of tag means); with bootstrap `weights`, one value per replicate."""
    tags, values = np.asarray(tags), np.asarray(values, float)
    uniq = np.unique(tags)
    if weights is None:
        return float(np.mean([values[tags == t].mean() for t in uniq]))
    return np.mean([(weights[:, tags == t] @ values[tags == t]) / weights[:, tags == t].sum(1) for t in uniq], axis=0)
