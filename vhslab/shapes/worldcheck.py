"""Self-check of the shapes world: true scenes must pass, perturbed scenes must fail."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.prompts import TAGS, PromptSpec
from vhslab.shapes.scenes import COLORS, SHAPES, Scene, SceneObject, render, sample_scene, separated, with_object
from vhslab.shapes.suites import load_suite


def _other(options, *exclude):
    return [o for o in options if o not in exclude]


def _add_object(scene: Scene, shape: str, rng: np.random.Generator) -> Scene | None:
    """The scene plus one more `shape`, as large as its smallest object; None if it does not fit.
    Not `shapes.place`: these draws fix the autoencoder stages' evaluation scenes
    (`reconstruction_agreement`), so the recorded agreements stay comparable."""
    size = min(o.size for o in scene.objects)
    for _ in range(500):
        cx, cy = rng.uniform(size / 2 + 0.03, 1 - size / 2 - 0.03, 2)
        new = SceneObject(shape, str(rng.choice(list(COLORS))), float(cx), float(cy), size)
        if all(separated(new, o) for o in scene.objects):
            return Scene((*scene.objects, new))
    return None


def perturbations(spec: PromptSpec, scene: Scene, rng: np.random.Generator) -> dict[str, Scene]:
    """Edits of a correct scene that make it wrong for `spec`, those that apply to its tag:
    drop an object, change a colour, change a count, change a shape, break the relation."""
    objs = scene.objects
    dropped = int(rng.integers(len(objs)))
    out = {"drop_object": Scene(tuple(o for i, o in enumerate(objs) if i != dropped))}
    coloured = [i for i, o in enumerate(objs) if any(it.cls == o.shape and it.color for it in spec.include)]
    if coloured:
        i = int(rng.choice(coloured))
        out["change_color"] = with_object(scene, i, color=str(rng.choice(_other(COLORS, objs[i].color))))
    if spec.tag == "counting":
        more = _add_object(scene, spec.include[0].cls, rng)
        if more is not None:
            out["change_count"] = more
    if spec.tag in ("single_object", "two_object"):
        i = int(rng.integers(len(objs)))
        wanted = {it.cls for it in spec.include}
        out["change_shape"] = with_object(scene, i, shape=str(rng.choice(_other(SHAPES, *wanted))))
    if spec.tag == "position":
        a, b = objs[0], objs[1]
        out["break_relation"] = Scene((replace(a, cx=b.cx, cy=b.cy), replace(b, cx=a.cx, cy=a.cy)))
    return out


def world_check(n: int = 200, resolution: int = 64, seed: int = 0, suite: list[PromptSpec] | None = None,
                progress=None) -> dict:
    """Render n true scenes per tag from the evaluation prompts, perturb each, judge all.

    Returns agreement (true scenes judged correct), rejection (perturbed judged wrong) and
    images rendered+evaluated per second, overall (mean of tags) and per tag, plus a few failures.
    """
    suite = suite or load_suite("geneval-shapes")
    evaluator = ShapesEvaluator()
    evaluator.detect(render(Scene(())), None)  # build the shape prototypes outside the timing
    rng = np.random.default_rng(seed)
    agreement, rejection, speed, failures = {}, {}, {}, []
    for tag in TAGS:
        specs = [s for s in suite if s.tag == tag]
        if not specs:
            continue
        ok, rejected, n_perturbed, n_images, elapsed = 0, 0, 0, 0, 0.0
        for k in range(n):
            spec = specs[k % len(specs)]
            scene = sample_scene(spec, rng)
            start = time.perf_counter()
            verdict = evaluator.evaluate(render(scene, resolution), spec)
            elapsed += time.perf_counter() - start
            n_images += 1
            ok += verdict.correct
            if not verdict.correct and len(failures) < 20:
                failures.append({"tag": tag, "prompt": spec.prompt, "kind": "true", "reasons": verdict.reasons})
            for name, bad in perturbations(spec, scene, rng).items():
                start = time.perf_counter()
                verdict = evaluator.evaluate(render(bad, resolution), spec)
                elapsed += time.perf_counter() - start
                n_images += 1
                n_perturbed += 1
                rejected += not verdict.correct
                if verdict.correct and len(failures) < 20:
                    failures.append({"tag": tag, "prompt": spec.prompt, "kind": name})
            if progress is not None:
                progress()
        agreement[tag] = ok / n
        rejection[tag] = rejected / max(n_perturbed, 1)
        speed[tag] = n_images / elapsed

    def summary(per_tag):
        return {"overall": float(np.mean(list(per_tag.values()))), "per_tag": per_tag}

    return {
        "n_per_tag": n,
        "resolution": resolution,
        "agreement": summary(agreement),
        "rejection": summary(rejection),
        "images_per_s": summary(speed),
        "failures": failures,
    }
