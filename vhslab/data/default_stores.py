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

from vhslab.data.extract import describe_evaluator, extract
from vhslab.data.spec import content_key
from vhslab.data.store import StoreInputError
from vhslab.errors import InputError
from vhslab.pipeline import generator_fingerprint, weights_hash
from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.suites import load_suite
from vhslab.version import __version__
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


def world_content(world) -> dict:
    """What determines any data the world makes: its generator's weights, the evaluator, the generation
    settings and vhslab's version (the parts of a cache key shared by the default stores and the Best-of-N pool)."""
    return {"generator": generator_fingerprint(world.pipeline, weights_hash(world.pipeline)),
            "evaluator": describe_evaluator(ShapesEvaluator()), "gen": world.gen_config.to_dict(), "version": __version__}


def default_store(name: str, progress: bool = True) -> Path:
    """Path of the world's store `name` (see STORES), extracted (or completed) first if needed.

    The cache is keyed by content, so that versions coexist: the plain path
    `{name}-x{n}-seed{s}.zarr` is used while it holds this version's data; a store there written by
    another version (another generator, evaluator or generation setting) is left as it is and this
    version's store goes beside it, in `{name}-x{n}-seed{s}-{key}.zarr` (`key`: a hash of the world's
    weights, the evaluator and the store's settings). Never a dead end."""
    if name not in STORES:
        raise InputError(f"unknown default store {name!r}; known: {', '.join(STORES)}")
    spec = STORES[name]
    stem = f"{name}-x{spec['n_per_prompt']}-seed{spec['seed']}"
    world = load_world()
    cache_dir().mkdir(parents=True, exist_ok=True)
    prompts = load_suite(spec["prompts"])
    key = content_key(**world_content(world), rows=[p.to_json() for p in prompts], sites=SITES, **spec)
    keyed = cache_dir() / f"{stem}-{key}.zarr"
    path = keyed if keyed.exists() else cache_dir() / f"{stem}.zarr"
    for _ in range(2):
        try:  # a complete store is only checked (its content key: a store of other data is refused, not used)
            extract(world.pipeline, prompts, path, n_per_prompt=spec["n_per_prompt"], sites=SITES, seed=spec["seed"],
                    gen=world.gen_config, vision=world.vision, model_id="world", progress=progress, verify=False)
            return path
        except StoreInputError as err:
            if path == keyed or "holds different data" not in str(err):
                raise
            path = keyed  # another version's store: ours goes beside it
    return path
