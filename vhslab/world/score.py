"""GenEval-style scores of a generator on a prompt suite: one sample (Bo1) and oracle Best-of-N."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from vhslab.errors import InputError, MissingError
from vhslab.pipeline import GenConfig, make_samples
from vhslab.pixels import to_uint8
from vhslab.shapes.evaluate import ShapesEvaluator, overall_score, summarize
from vhslab.shapes.prompts import PromptSpec
from vhslab.stats import interval, meaning_draws


def generate(pipe, prompts: list[str], seeds: list[int], gen: GenConfig) -> np.ndarray:
    """Images (B, H, W, 3) uint8 from one batched pipeline call, one seeded generator per image."""
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    with torch.no_grad():
        out = pipe(prompt=prompts, generator=generators, output_type="np", **gen.call_kwargs(pipe))
    return to_uint8(out.images)


def tag_score_ci(tags, meanings, correct, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> list[float]:
    """Percentile CI of GenEval's overall score (mean of tag means) from a bootstrap that resamples
    distinct prompt meanings within each tag (rows of one meaning share their fate), not rows."""
    reps = overall_score(tags, correct, meaning_draws(tags, meanings, n_boot, seed))
    return interval(reps, level)


def score_generator(pipe, suite: list[PromptSpec], n_per_prompt: int = 4, gen: GenConfig | None = None,
                    seed: int = 0, batch_size: int = 64, evaluator=None, progress: bool = True,
                    keep_images: bool = False) -> dict:
    """Bo1 (mean over the n samples of each prompt) and oracle Best-of-n (any sample correct),
    overall (mean of tag means) and per tag, with 95% intervals over distinct prompt meanings, and
    images generated+decoded per second. Counts say how many distinct prompts the numbers rest on."""
    gen = (gen or GenConfig()).resolve(pipe)
    evaluator = evaluator or ShapesEvaluator()
    samples = make_samples(suite, n_per_prompt, seed)
    correct = np.zeros(len(samples), bool)
    images = [] if keep_images else None
    gen_seconds = 0.0
    with tqdm(total=len(samples), desc="score", disable=not progress, dynamic_ncols=True) as bar:
        for i in range(0, len(samples), batch_size):
            batch = samples[i:i + batch_size]
            start = time.perf_counter()
            imgs = generate(pipe, [s.spec.prompt for s in batch], [s.seed for s in batch], gen)
            gen_seconds += time.perf_counter() - start
            for s, img in zip(batch, imgs, strict=True):
                correct[s.sample_id] = evaluator.evaluate(img, s.spec).correct
            if keep_images:
                images.extend(imgs)
            bar.update(len(batch))
    per_prompt = correct.reshape(len(suite), n_per_prompt)
    tags = [s.tag for s in suite]
    bo1 = summarize([s.spec.tag for s in samples], correct.tolist())
    oracle = summarize(tags, per_prompt.any(axis=1).tolist())
    meanings = [s.meaning for s in suite]
    result = {
        "n_prompts": len(suite), "n_distinct_prompts": len({s.prompt for s in suite}),
        "n_meanings": len(set(meanings)), "n_per_prompt": n_per_prompt, "seed": seed,
        "guidance_scale": gen.guidance_scale, "evaluator": evaluator.describe() if hasattr(evaluator, "describe") else "",
        "bo1": {"overall": bo1["overall"], "per_tag": bo1["per_tag"],
                "ci": tag_score_ci([s.spec.tag for s in samples], [s.spec.meaning for s in samples], correct, seed=seed)},
        f"oracle_bo{n_per_prompt}": {"overall": oracle["overall"], "per_tag": oracle["per_tag"],
                                     "ci": tag_score_ci(tags, meanings, per_prompt.any(axis=1), seed=seed)},
        "images_per_s": len(samples) / gen_seconds,
    }
    if keep_images:
        result["images"] = np.stack(images)
        result["correct"] = correct
    return result


@dataclass
class WorldScore:
    """What `score_world` found: the report `vhslab world score --json` prints (`to_json()`)."""

    report: dict

    def to_json(self) -> dict:
        """The report as plain JSON values (`score_generator`'s)."""
        return self.report


def score_world(world, suite: list[PromptSpec], n_per_prompt: int = 4, guidance_scale: float | None = None,
                seed: int = 0, generator: str = "student", steps: int | None = None) -> WorldScore:
    """`vhslab world score`: `score_generator` of a loaded world's generator on `suite`, at the world's
    generation defaults (its guidance scale unless `guidance_scale` is given). `generator`: "student"
    (the one-step SANA-Sprint pipeline) or "teacher" (the multi-step flow-matching pipeline, its
    default steps unless `steps` is given)."""
    if generator not in ("student", "teacher"):
        raise InputError(f"--generator is 'student' or 'teacher', got {generator!r}")
    if generator == "teacher" and world.teacher is None:
        raise MissingError("this world ships no teacher (no teacher/model_index.json in its folder)")
    if generator == "student" and steps not in (None, 1):
        raise InputError(f"the student is a one-step generator; --steps {steps} applies to the teacher only")
    pipe, gen = (world.pipeline, world.gen_config) if generator == "student" else (world.teacher, world.teacher_gen_config)
    if guidance_scale is not None:
        gen = replace(gen, guidance_scale=guidance_scale)
    if steps is not None:
        gen = replace(gen, steps=steps)
    report = score_generator(pipe, suite, n_per_prompt, gen, seed)
    return WorldScore({"generator": generator, "steps": gen.steps, **report})
