"""Training data for the world's generator: scenes drawn for GenEval-style prompts of every tag
(and free scenes), each with a caption: the prompt itself or the scene's full description."""

from __future__ import annotations

import numpy as np

from vhslab.data.phrasing import caption_scene
from vhslab.data.prompts import TAGS
from vhslab.data.shapes import render, sample_free_scene, sample_scene
from vhslab.data.suites import prompt_space

FREE_SCENE_SHARE = 0.15
PROMPT_CAPTION_SHARE = 0.5  # else the scene's full caption (with every colour)


def training_pool(n: int, seed: int, resolution: int = 64, progress=None) -> tuple[np.ndarray, list[str]]:
    """n images (n, H, W, 3) uint8 and their captions, reproducible from the seed."""
    rng = np.random.default_rng(seed)
    spaces = {tag: prompt_space(tag) for tag in TAGS}
    images = np.empty((n, resolution, resolution, 3), np.uint8)
    captions = []
    for i in range(n):
        if rng.random() < FREE_SCENE_SHARE:
            scene = sample_free_scene(rng)
            caption = caption_scene(scene)
        else:
            space = spaces[TAGS[rng.integers(len(TAGS))]]
            spec = space[rng.integers(len(space))]
            scene = sample_scene(spec, rng)
            caption = spec.prompt if rng.random() < PROMPT_CAPTION_SHARE else caption_scene(scene)
        images[i] = render(scene, resolution)
        captions.append(caption)
        if progress is not None and i % 1000 == 0:
            progress(min(1000, n - i))
    return images, captions
