"""The embedded world's standard activation stores, extracted once into a cache folder.

`verifier-train`: the `train` suite x 16 candidates (seed 0), every block, `ae_latent`, `vision`,
with the evaluator's labels and captions; `verifier-test`: `geneval-shapes` x 4 candidates of
seed 1, the same sites; `verifier-dev`: the same prompts x 4 candidates of seed 3, for choosing
recipes on test-like prompts (its candidates are never reported). `train` and `geneval-shapes` share
no prompt meaning, and every candidate's noise comes from SeedSequence([seed, j, sha256(prompt)]),
so no test candidate's seed was used in training or in choosing.
The cache folder is `$VHSLAB_CACHE` (default `~/.cache/vhslab`); an interrupted extraction resumes.
"""

from __future__ import annotations

import os
from pathlib import Path

from vhslab.data.extract import extract
from vhslab.errors import InputError
from vhslab.shapes.suites import load_suite
from vhslab.world import load_world

STORES = {
    "verifier-train": {"prompts": "train", "n_per_prompt": 16, "seed": 0},
    "verifier-test": {"prompts": "geneval-shapes", "n_per_prompt": 4, "seed": 1},
    "verifier-dev": {"prompts": "geneval-shapes", "n_per_prompt": 4, "seed": 3},
}
SITES = "all,ae_latent,vision"


def cache_dir() -> Path:
    """The cache folder of the default stores: `$VHSLAB_CACHE`, else `~/.cache/vhslab`."""
    return Path(os.environ.get("VHSLAB_CACHE") or Path.home() / ".cache" / "vhslab")


def default_store(name: str, progress: bool = True) -> Path:
    """Path of the world's store `name` (see STORES), extracted (or completed) first if needed."""
    if name not in STORES:
        raise InputError(f"unknown default store {name!r}; known: {', '.join(STORES)}")
    spec = STORES[name]
    path = cache_dir() / f"{name}-x{spec['n_per_prompt']}-seed{spec['seed']}.zarr"
    path.parent.mkdir(parents=True, exist_ok=True)
    world = load_world()
    # a complete store is only checked (content key: a store of other data there is refused, not used)
    extract(world.pipeline, load_suite(spec["prompts"]), path, n_per_prompt=spec["n_per_prompt"], sites=SITES,
            seed=spec["seed"], gen=world.gen_config, vision=world.vision, model_id="world", progress=progress,
            verify=False)
    return path
