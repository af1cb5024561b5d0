"""The evaluator's robustness suite: scenes with known truth, distorted by albumentations.

Each scene of an evaluation prompt is drawn by the renderer, then one meaning-preserving
distortion is applied (not by the renderer: by an augmentation library, as a generator's
artefacts would come): every object turned by any angle, scaled unevenly, bent elastically or
recoloured to an off-palette shade of its colour (each object distorted on its own and put back
at its place, so relations hold, redrawn if it would touch another), or the whole image blurred. True scenes must still be judged
correct (agreement); the self-check's wrong edits of the same scene (`worldcheck.perturbations`),
distorted the same way, must still be judged wrong (rejection).
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage

from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.prompts import TAGS, PromptSpec
from vhslab.shapes.scenes import BACKGROUND, Scene, SceneObject, render, sample_scene
from vhslab.shapes.suites import load_suite
from vhslab.shapes.worldcheck import perturbations

DISTORTIONS = ("rotate", "anisotropic_scale", "elastic", "off_palette", "blur")


def _transform(kind: str):
    """The albumentations transform of one distortion (blur acts on the whole image, the others
    on one object at a time)."""
    import albumentations as A
    import cv2

    border = {"border_mode": cv2.BORDER_CONSTANT, "fill": BACKGROUND}
    return {
        "rotate": lambda: A.Affine(rotate=(-180, 180), p=1.0, **border),
        "anisotropic_scale": lambda: A.Affine(scale={"x": (0.85, 1.15), "y": (0.85, 1.15)}, p=1.0, **border),
        "elastic": lambda: A.ElasticTransform(alpha=3, sigma=5, p=1.0, **border),
        "off_palette": lambda: A.HueSaturationValue(hue_shift_limit=3, sat_shift_limit=20, val_shift_limit=15, p=1.0),
        "blur": lambda: A.GaussianBlur(sigma_limit=(0.3, 1.0), blur_limit=0, p=1.0),
    }[kind]()


def distort(scene: Scene, kind: str, rng: np.random.Generator, resolution: int = 64) -> np.ndarray | None:
    """The scene rendered, with distortion `kind` (DISTORTIONS) applied by albumentations; None if
    no draw of it keeps every object apart (the scene would change meaning: objects touch)."""
    transform = _transform(kind)
    transform.set_random_seed(int(rng.integers(2**31)))
    if kind == "blur":
        return transform(image=render(scene, resolution))["image"]
    canvas = np.empty((resolution, resolution, 3), np.uint8)
    canvas[:] = BACKGROUND
    taken = np.zeros((resolution, resolution), bool)
    for obj in scene.objects:
        patch = render(Scene((SceneObject(obj.shape, obj.color, 0.5, 0.5, obj.size),)), resolution)
        dy, dx = round((obj.cy - 0.5) * resolution), round((obj.cx - 0.5) * resolution)
        for _ in range(20):  # a turned triangle reaches past its box: redraw until it touches no other object
            out = transform(image=patch)["image"]
            # recolouring keeps the object's pixels; geometric transforms move them (the fill is the background)
            own = np.any((patch if kind == "off_palette" else out) != BACKGROUND, axis=-1)
            own = np.roll(own, (dy, dx), axis=(0, 1))
            if not (ndimage.binary_dilation(own, np.ones((3, 3), bool)) & taken).any():
                break
        else:
            return None
        canvas[own] = np.roll(out, (dy, dx), axis=(0, 1))[own]
        taken |= own
    return canvas


def robustness_suite(n: int = 100, seed: int = 0, suite: list[PromptSpec] | None = None,
                     evaluator=None, progress=None) -> dict:
    """Agreement and rejection per distortion and tag, over n scenes per tag and distortion."""
    suite = suite or load_suite("geneval-shapes")
    evaluator = evaluator or ShapesEvaluator()
    rng = np.random.default_rng(seed)
    result: dict = {"n_per_tag": n, "agreement": {}, "rejection": {}, "failures": []}
    start = time.perf_counter()
    n_images = 0
    for kind in DISTORTIONS:
        result["agreement"][kind], result["rejection"][kind] = {}, {}
        for tag in TAGS:
            specs = [s for s in suite if s.tag == tag]
            ok = rejected = n_wrong = 0
            for _ in range(n):
                while True:  # a scene whose distorted objects cannot stay apart is drawn again
                    spec = specs[int(rng.integers(len(specs)))]
                    scene = sample_scene(spec, rng)
                    image = distort(scene, kind, rng)
                    wrong_scenes = perturbations(spec, scene, rng)
                    wrong_images = {name: distort(bad, kind, rng) for name, bad in wrong_scenes.items()}
                    if image is not None and all(v is not None for v in wrong_images.values()):
                        break
                verdict = evaluator.evaluate(image, spec)
                ok += verdict.correct
                if not verdict.correct and len(result["failures"]) < 30:
                    result["failures"].append({"distortion": kind, "prompt": spec.prompt, "kind": "true",
                                               "reasons": verdict.reasons})
                n_images += 1 + len(wrong_images)
                for name, bad_image in wrong_images.items():
                    wrong = evaluator.evaluate(bad_image, spec)
                    n_wrong += 1
                    rejected += not wrong.correct
                    if wrong.correct and len(result["failures"]) < 30:
                        result["failures"].append({"distortion": kind, "prompt": spec.prompt, "kind": name})
                if progress is not None:
                    progress()
            result["agreement"][kind][tag] = ok / n
            result["rejection"][kind][tag] = rejected / max(n_wrong, 1)
    for key in ("agreement", "rejection"):
        result[f"min_{key}"] = min(v for per_tag in result[key].values() for v in per_tag.values())
    result["images_per_s"] = n_images / (time.perf_counter() - start)
    return result
