"""The shape classifier: multinomial logistic regression on `detect.shape_features`.

Trained on augmented renders: single objects drawn by the renderer, then turned by any
angle, scaled unevenly, sheared, elastically bent and blurred by albumentations (as the
generator's images are), plus thinner stars than the renderer's and an "other" class of
wisps, strokes and specks that a person would not name as any shape. Shipped as `assets/shape_model.json`; rebuild it with
`python -m vhslab.shapes.shape_model`.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vhslab.errors import InputError
from vhslab.shapes.detect import FEATURES, components, shape_features
from vhslab.shapes.scenes import BACKGROUND, COLORS, SHAPES, Scene, SceneObject, fit_unit_box, render, star_polygon

MODEL_FILE = Path(__file__).resolve().parents[1] / "assets" / "shape_model.json"
CLASSES = (*SHAPES, "other")  # other: wisps, strokes and specks
OTHER = len(SHAPES)


def augmenter():
    """Meaning-preserving distortions of a single object (albumentations)."""
    import albumentations as A
    import cv2

    return A.Compose([
        A.Affine(rotate=(-180, 180), scale={"x": (0.85, 1.15), "y": (0.85, 1.15)},
                 shear=(-8, 8), border_mode=cv2.BORDER_CONSTANT, fill=BACKGROUND, p=1.0),
        A.ElasticTransform(alpha=4, sigma=6, border_mode=cv2.BORDER_CONSTANT, fill=BACKGROUND, p=0.5),
        A.CoarseDropout(num_holes_range=(1, 2), hole_height_range=(0.02, 0.05),
                        hole_width_range=(0.02, 0.05), fill=BACKGROUND, p=0.3),  # small dents
        A.GaussianBlur(sigma_limit=(0.1, 1.2), blur_limit=0, p=0.7),
    ])


def _supersampled(draw, resolution: int) -> np.ndarray:
    """`draw(ImageDraw, side)` on a background canvas 4x the resolution, box-filtered down like `render`."""
    side = resolution * 4
    canvas = Image.new("RGB", (side, side), BACKGROUND)
    draw(ImageDraw.Draw(canvas), side)
    return np.asarray(canvas.resize((resolution, resolution), Image.Resampling.BOX), dtype=np.uint8)


def _random_fill(rng: np.random.Generator) -> tuple[int, ...]:
    return tuple(int(v) for v in list(COLORS.values())[rng.integers(len(COLORS))])


def _fragment(rng: np.random.Generator, resolution: int) -> np.ndarray:
    """A thin stroke, a branched wisp or a speck on the background."""
    fill = _random_fill(rng)
    side = resolution * 4
    centre = rng.uniform(0.35, 0.65, 2) * side
    kind = rng.integers(3)
    width = int(rng.uniform(0.8, 2.2) * side / 64)
    if kind < 2:  # a polyline stroke, or branches from one point
        strokes = []
        for _ in range(int(rng.integers(1, 4)) if kind == 1 else 1):
            pts = [tuple(centre)]
            for _ in range(int(rng.integers(1, 4))):
                step = rng.uniform(0.06, 0.2) * side
                angle = rng.uniform(0, 2 * np.pi)
                pts.append((pts[-1][0] + step * np.cos(angle), pts[-1][1] + step * np.sin(angle)))
            strokes.append(pts)
        return _supersampled(lambda d, _: [d.line(p, fill=fill, width=max(width, 1)) for p in strokes], resolution)
    r = rng.uniform(0.02, 0.035) * side  # a ragged speck
    angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
    radii = r * rng.uniform(0.3, 1.0, 7)
    speck = [(centre[0] + a * np.cos(t), centre[1] + a * np.sin(t)) for a, t in zip(radii, angles, strict=True)]
    return _supersampled(lambda d, _: d.polygon(speck, fill=fill), resolution)


def _draw_polygon(poly: np.ndarray, rng: np.random.Generator, resolution: int) -> np.ndarray:
    """A unit polygon at a random size in the centre, in a random palette colour."""
    size = rng.uniform(0.1, 0.34)
    fill = _random_fill(rng)
    return _supersampled(lambda d, side: d.polygon([tuple(p) for p in poly * size * side + side / 2], fill=fill),
                         resolution)


def training_set(n_per_class: int = 600, seed: int = 0, resolution: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Features and class indices of augmented renders (CLASSES order)."""
    rng = np.random.default_rng(seed)
    aug = augmenter()
    aug.set_random_seed(seed)  # albumentations draws from its own generator: seed it, or refits differ
    names = list(COLORS)
    xs, ys = [], []
    for cls in range(len(CLASSES)):
        got = 0
        while got < n_per_class:
            if cls == OTHER:
                image = _fragment(rng, resolution)
            elif SHAPES[cls] == "star" and rng.random() < 0.5:  # the generator's stars are often thinner
                image = aug(image=_draw_polygon(fit_unit_box(star_polygon(inner=float(rng.uniform(0.28, 0.45)))),
                                                rng, resolution))["image"]
            else:
                obj = SceneObject(SHAPES[cls], names[rng.integers(len(names))], 0.5, 0.5, float(rng.uniform(0.1, 0.34)))
                image = aug(image=render(Scene((obj,)), resolution))["image"]
            comps = components(image, min_area=max(4, int(0.004 * resolution**2)))
            feats = shape_features(comps[0].alpha) if comps else None
            if feats is None:
                continue
            xs.append(feats)
            ys.append(cls)
            got += 1
    return np.array(xs), np.array(ys)


def fit(n_per_class: int = 600, seed: int = 0, C: float = 1.0) -> dict:
    """Fit the classifier (standardised quadratic features, sklearn's LogisticRegression)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    x, y = training_set(n_per_class, seed)
    poly = PolynomialFeatures(2, include_bias=False).fit(x)
    scaler = StandardScaler().fit(poly.transform(x))
    clf = LogisticRegression(C=C, max_iter=5000).fit(scaler.transform(poly.transform(x)), y)
    return {
        "classes": list(CLASSES), "features": list(FEATURES), "powers": poly.powers_.tolist(),
        "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
        "coef": clf.coef_.tolist(), "intercept": clf.intercept_.tolist(),
        "train": {"n_per_class": n_per_class, "seed": seed, "C": C, "accuracy": float(clf.score(
            scaler.transform(poly.transform(x)), y))},
    }


class ShapeModel:
    """The fitted classifier, applied in numpy (sklearn's per-call overhead is larger than the
    whole computation for one object; the JSON keeps it independent of sklearn's pickles)."""

    def __init__(self, params: dict) -> None:
        if tuple(params["features"]) != FEATURES or tuple(params["classes"]) != CLASSES:
            raise InputError("shape model: features or classes differ from this version's; rebuild it")
        self.powers = np.array(params["powers"])
        self.mean, self.scale = np.array(params["mean"]), np.array(params["scale"])
        self.coef, self.intercept = np.array(params["coef"]), np.array(params["intercept"])

    def proba(self, feats: np.ndarray) -> np.ndarray:
        """Class probabilities (CLASSES order) of one feature vector."""
        z = (np.prod(feats[None, :] ** self.powers, axis=1) - self.mean) / self.scale
        logits = self.coef @ z + self.intercept
        p = np.exp(logits - logits.max())
        return p / p.sum()


@cache
def shipped_model() -> ShapeModel:
    """The shape classifier shipped with the package (`assets/shape_model.json`)."""
    return ShapeModel(json.loads(MODEL_FILE.read_text()))


if __name__ == "__main__":
    params = fit()
    MODEL_FILE.write_text(json.dumps(params))
    print(f"wrote {MODEL_FILE}: training accuracy {params['train']['accuracy']:.4f}")
