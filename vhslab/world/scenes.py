"""Training data for the world's generator: scenes drawn for GenEval-style prompts of every tag
(and free scenes), each with a caption: the prompt itself or the scene's full description."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os

import numpy as np

from vhslab.shapes.phrasing import caption_scene
from vhslab.shapes.prompts import TAGS
from vhslab.shapes.scenes import render, sample_free_scene, sample_scene
from vhslab.shapes.suites import prompt_space

FREE_SCENE_SHARE = 0.15
PROMPT_CAPTION_SHARE = 0.5  # else the scene's full caption (with every colour)
RENDER_CHUNK = 1000


def _scenes(n: int, seed: int):
    """(scene, caption) pairs in the pool's order, drawn from one RNG stream."""
    rng = np.random.default_rng(seed)
    spaces = {tag: prompt_space(tag) for tag in TAGS}
    for _ in range(n):
        if rng.random() < FREE_SCENE_SHARE:
            scene = sample_free_scene(rng)
            yield scene, caption_scene(scene)
        else:
            space = spaces[TAGS[rng.integers(len(TAGS))]]
            spec = space[rng.integers(len(space))]
            scene = sample_scene(spec, rng)
            yield scene, spec.prompt if rng.random() < PROMPT_CAPTION_SHARE else caption_scene(scene)


def _render_chunk(job: tuple[list, int]) -> np.ndarray:
    scenes, resolution = job
    return np.stack([render(scene, resolution) for scene in scenes])


def training_pool(n: int, seed: int, resolution: int = 64, progress=None,
                  workers: int | None = None) -> tuple[np.ndarray, list[str]]:
    """n images (n, H, W, 3) uint8 and their captions, reproducible from the seed.

    Scenes are drawn in order from one RNG stream; rendering (two thirds of the time) runs in
    `workers` processes (default: up to 8 cores) while the next scenes are drawn, with the same
    result as one process."""
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    images = np.empty((n, resolution, resolution, 3), np.uint8)
    captions: list[str] = []

    def jobs():
        items = _scenes(n, seed)
        while chunk := list(itertools.islice(items, RENDER_CHUNK)):
            captions.extend(caption for _, caption in chunk)
            yield [scene for scene, _ in chunk], resolution

    with contextlib.ExitStack() as stack:
        if workers > 1 and n >= 4 * RENDER_CHUNK:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers))  # spawn: safe beside CUDA
            blocks = pool.imap(_render_chunk, jobs())
        else:
            blocks = map(_render_chunk, jobs())
        done = 0
        for block in blocks:
            images[done:done + len(block)] = block
            done += len(block)
            if progress is not None:
                progress(len(block))
    return images, captions
