"""The shapes world's evaluator: detect objects, then apply GenEval's rules exactly.

Detection: each pixel takes the nearest of the ten colours or the background when it is
clearly nearer to it than to any other (a ratio test, so anti-aliased edges and muddy
pixels are left out); connected components of each colour are objects; a component's
shape comes from its extent, solidity, aspect ratio and centroid offset, compared with
prototypes measured on rendered shapes. A blob far from every prototype, or between two,
gets a low confidence and is not counted.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from vhslab.data.geneval import Detection, Verdict, judge
from vhslab.data.prompts import PromptSpec
from vhslab.data.shapes import BACKGROUND, COLORS, SHAPES, SIZE_RANGE, Scene, SceneObject, check_vocabulary, render

PALETTE = np.array([*COLORS.values(), BACKGROUND], dtype=np.float32)  # index 10 = background
COLOR_NAMES = tuple(COLORS)
FEATURE_FLOOR = np.array([0.03, 0.03, 0.08, 0.02])  # extent, solidity, aspect, centroid offset
BLUR_RADII = (0.0, 0.0, 0.5, 0.8)  # pixels at 64x64
UNKNOWN_DISTANCE = 4.0  # beyond this many scales from every prototype a blob is "unknown"


class Evaluator(Protocol):
    """Anything that judges an image against a GenEval prompt (a detector-based one for real
    images plugs in here)."""

    def evaluate(self, image: np.ndarray, spec: PromptSpec) -> Verdict: ...


def check_image(image) -> np.ndarray:
    """Return the image as an HxWx3 uint8 array or raise ValueError saying what is wrong."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"image: expected dtype uint8, got {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image: expected shape HxWx3, got {arr.shape}")
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise ValueError(f"image: {arr.shape[0]}x{arr.shape[1]} is too small to judge")
    return arr


def segment_colors(image: np.ndarray, ratio: float = 0.5) -> np.ndarray:
    """Per-pixel palette index (0-9 colours, 10 background), -1 where no colour is clear."""
    pix = image.reshape(-1, 1, 3).astype(np.float32)
    dist = ((pix - PALETTE[None]) ** 2).sum(-1)  # squared distances
    rows = np.arange(len(dist))
    first = dist.argmin(1)
    d1 = dist[rows, first]
    dist[rows, first] = np.inf
    d2 = dist.min(1)
    labels = np.where(d1 < (ratio**2) * d2, first, -1)
    return labels.reshape(image.shape[:2])


def shape_features(mask: np.ndarray) -> np.ndarray:
    """(extent, solidity, aspect, centroid offset) of a binary component cropped to its box."""
    h, w = mask.shape
    area = mask.sum()
    ys = np.nonzero(mask)[0]
    edge = mask & ~ndimage.binary_erosion(mask)  # the hull only needs boundary pixels
    ey, ex = np.nonzero(edge)
    corners = np.concatenate([np.stack([ex + dx, ey + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    try:
        hull_area = ConvexHull(corners.astype(np.float64)).volume
    except QhullError:
        hull_area = float(area)
    offset = (ys.mean() + 0.5 - h / 2) / h
    return np.array([area / (h * w), area / hull_area, w / h, offset])


@lru_cache(maxsize=8)
def shape_prototypes(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-shape feature mean and scale (shapes x features), measured on seeded renders of
    random sizes, colours, sub-pixel positions and blur (generated images are soft), at this
    resolution."""
    rng = np.random.default_rng(0)
    means, scales = [], []
    for shape in SHAPES:
        feats = []
        for i in range(64):
            color = COLOR_NAMES[i % len(COLOR_NAMES)]
            size = float(rng.uniform(0.9 * SIZE_RANGE[0], 1.05 * SIZE_RANGE[1]))
            obj = SceneObject(shape, color, float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.4, 0.6)), size)
            image = render(Scene((obj,)), resolution)
            blur = BLUR_RADII[i % len(BLUR_RADII)] * resolution / 64
            if blur:
                image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(blur)))
            labels = segment_colors(image)
            ci = COLOR_NAMES.index(color)
            (sl,) = ndimage.find_objects((labels == ci).astype(np.int32))
            feats.append(shape_features(labels[sl] == ci))
        feats = np.array(feats)
        means.append(feats.mean(0))
        scales.append(np.maximum(1.5 * feats.std(0), FEATURE_FLOOR))
    return np.array(means), np.array(scales)


class ShapesEvaluator:
    """Detector + GenEval rules for shapes-world images (any square or rectangular size).

    threshold: minimal shape confidence for a detection to count (GenEval: 0.3);
    counting_threshold: the stricter one used for counting prompts (GenEval: 0.9).
    """

    def __init__(
        self,
        threshold: float = 0.5,
        counting_threshold: float = 0.7,
        min_area_fraction: float = 0.004,
        color_ratio: float = 0.5,
    ) -> None:
        self.threshold = threshold
        self.counting_threshold = counting_threshold
        self.min_area_fraction = min_area_fraction
        self.color_ratio = color_ratio

    def detect(self, image, threshold: float | None = None) -> list[Detection]:
        """All colour components above the minimal area, with shape, colour and confidence;
        `accepted` marks those whose confidence reaches the threshold."""
        image = check_image(image)
        threshold = self.threshold if threshold is None else threshold
        h, w = image.shape[:2]
        protos = shape_prototypes(min(h, w))
        min_area = max(4, int(self.min_area_fraction * h * w))
        labels = segment_colors(image, self.color_ratio)
        detections = []
        structure = np.ones((3, 3), dtype=bool)
        for ci in np.unique(labels):
            if ci < 0 or ci == len(COLOR_NAMES):
                continue
            comp, _ = ndimage.label(labels == ci, structure)
            for k, sl in enumerate(ndimage.find_objects(comp), start=1):
                mask = comp[sl] == k
                area = int(mask.sum())
                if area < min_area:
                    continue
                cls, conf = self._classify(shape_features(mask), protos)
                box = (float(sl[1].start), float(sl[0].start), float(sl[1].stop), float(sl[0].stop))
                detections.append(
                    Detection(cls, COLOR_NAMES[ci], box, conf, area, cls is not None and conf >= threshold)
                )
        return sorted(detections, key=lambda d: -d.confidence)

    @staticmethod
    def _classify(feats: np.ndarray, protos: tuple[np.ndarray, np.ndarray]) -> tuple[str | None, float]:
        means, scales = protos
        d2 = (((feats - means) / scales) ** 2).sum(1)
        logits = np.append(-0.5 * d2, -0.5 * UNKNOWN_DISTANCE**2)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        best = int(np.argmax(probs))
        if best == len(SHAPES):
            return None, float(probs[best])
        return SHAPES[best], float(probs[best])

    def evaluate(self, image, spec: PromptSpec) -> Verdict:
        check_vocabulary(spec)
        threshold = self.counting_threshold if spec.tag == "counting" else self.threshold
        return judge(spec, self.detect(image, threshold))


def summarize(tags: list[str], correct: list[bool]) -> dict:
    """GenEval's summary: mean correctness per tag, overall = mean of the tag means."""
    if len(tags) != len(correct):
        raise ValueError(f"tags ({len(tags)}) and correct ({len(correct)}) differ in length")
    per_tag: dict[str, list[bool]] = {}
    for tag, ok in zip(tags, correct):  # noqa: B905 (lengths checked above, with a clearer message)
        per_tag.setdefault(tag, []).append(bool(ok))
    means = {tag: float(np.mean(v)) for tag, v in per_tag.items()}
    overall = float(np.mean(list(means.values()))) if means else float("nan")
    return {"overall": overall, "per_tag": means, "n": len(correct)}
