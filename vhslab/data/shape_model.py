"""The shape classifier: multinomial logistic regression on `detect.shape_features`.

Trained on augmented renders: single objects drawn by the renderer, then turned by any
angle, scaled unevenly, sheared, elastically bent and blurred by albumentations (as the
generator's images are), plus a "fragment" class of thin strokes and specks that a person
would not name as any shape. Shipped as `assets/shape_model.json`; rebuild it with
`python -m vhslab.data.shape_model`.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vhslab.data.detect import FEATURES, components, shape_features
from vhslab.data.shapes import BACKGROUND, COLORS, SHAPES, Scene, SceneObject, _fit_unit_box, _star, render

MODEL_FILE = Path(__file__).resolve().parents[1] / "assets" / "shape_model.json"
CLASSES = (*SHAPES, "other")  # other: wisps, strokes and specks
OTHER = len(SHAPES)


def augmenter(strength: float = 1.0):
    """Meaning-preserving distortions of a single object (albumentations), scaled by `strength`."""
    import albumentations as A
    import cv2

    s = strength
    return A.Compose([
        A.Affine(rotate=(-180, 180), scale={"x": (1 - 0.15 * s, 1 + 0.15 * s), "y": (1 - 0.15 * s, 1 + 0.15 * s)},
                 shear=(-8 * s, 8 * s), border_mode=cv2.BORDER_CONSTANT, fill=BACKGROUND, p=1.0),
        A.ElasticTransform(alpha=4 * s, sigma=6, border_mode=cv2.BORDER_CONSTANT, fill=BACKGROUND, p=0.5),
        A.CoarseDropout(num_holes_range=(1, 2), hole_height_range=(0.02, 0.02 + 0.03 * s),
                        hole_width_range=(0.02, 0.02 + 0.03 * s), fill=BACKGROUND, p=0.3),  # small dents
        A.GaussianBlur(sigma_limit=(0.1, 0.2 + 1.0 * s), blur_limit=0, p=0.7),
    ])


def _fragment(rng: np.random.Generator, resolution: int) -> np.ndarray:
    """A thin stroke, a branched wisp or a speck on the background (supersampled like `render`)."""
    ss = 4
    side = resolution * ss
    canvas = Image.new("RGB", (side, side), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    fill = tuple(int(v) for v in list(COLORS.values())[rng.integers(len(COLORS))])
    centre = rng.uniform(0.35, 0.65, 2) * side
    kind = rng.integers(3)
    width = int(rng.uniform(0.8, 2.2) * ss * resolution / 64)
    if kind < 2:  # a polyline stroke, or branches from one point
        for _ in range(int(rng.integers(1, 4)) if kind == 1 else 1):
            pts = [tuple(centre)]
            for _ in range(int(rng.integers(1, 4))):
                step = rng.uniform(0.06, 0.2) * side
                angle = rng.uniform(0, 2 * np.pi)
                pts.append((pts[-1][0] + step * np.cos(angle), pts[-1][1] + step * np.sin(angle)))
            draw.line(pts, fill=fill, width=max(width, 1))
    else:  # a ragged speck
        r = rng.uniform(0.02, 0.035) * side
        angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
        radii = r * rng.uniform(0.3, 1.0, 7)
        draw.polygon([(centre[0] + a * np.cos(t), centre[1] + a * np.sin(t)) for a, t in zip(radii, angles, strict=True)],
                     fill=fill)
    return np.asarray(canvas.resize((resolution, resolution), Image.Resampling.BOX), dtype=np.uint8)


def _draw_polygon(poly: np.ndarray, rng: np.random.Generator, resolution: int) -> np.ndarray:
    """A unit polygon at a random size in the centre, in a random palette colour, drawn like `render`."""
    ss = 4
    side = resolution * ss
    canvas = Image.new("RGB", (side, side), BACKGROUND)
    pts = poly * rng.uniform(0.1, 0.34) * side + side / 2
    fill = tuple(int(v) for v in list(COLORS.values())[rng.integers(len(COLORS))])
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in pts], fill=fill)
    return np.asarray(canvas.resize((resolution, resolution), Image.Resampling.BOX), dtype=np.uint8)


def training_set(n_per_class: int = 600, seed: int = 0, resolution: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Features and class indices of augmented renders (CLASSES order)."""
    rng = np.random.default_rng(seed)
    aug = augmenter()
    names = list(COLORS)
    xs, ys = [], []
    for cls in range(len(CLASSES)):
        got = 0
        while got < n_per_class:
            if cls == OTHER:
                image = _fragment(rng, resolution)
            elif SHAPES[cls] == "star" and rng.random() < 0.5:  # the generator's stars are often thinner
                image = aug(image=_draw_polygon(_fit_unit_box(_star(inner=float(rng.uniform(0.28, 0.45)))),
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
            raise ValueError("shape model: features or classes differ from this version's; rebuild it")
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
    return ShapeModel(json.loads(MODEL_FILE.read_text()))


if __name__ == "__main__":
    params = fit()
    MODEL_FILE.write_text(json.dumps(params))
    print(f"wrote {MODEL_FILE}: training accuracy {params['train']['accuracy']:.4f}")
