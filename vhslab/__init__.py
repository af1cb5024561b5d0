"""vhslab: latent verifiers on diffusion transformers.

The names a study needs, from their rooms (see README, "Python tour"):

    import vhslab
    world = vhslab.load_world()
    vhslab.extract(world.pipeline, vhslab.load_suite("train")[:8], "s.zarr", gen=world.gen_config)
    res = vhslab.run_sweep(vhslab.open_store("s.zarr"))
    verifier = vhslab.load_verifier()
    vhslab.best_of_n(world.pipeline, verifier, "a photo of a red circle", 4, gen=world.gen_config)
"""

from __future__ import annotations

from pathlib import Path

from vhslab.analysis.attribution import attribute
from vhslab.data.extract import extract
from vhslab.errors import InputError, MissingError, VhslabError
from vhslab.probes import open_store, run_sweep
from vhslab.search import best_of_n, load_cost_model, noise_search
from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.phrasing import parse_prompt
from vhslab.shapes.prompts import load_suite
from vhslab.verifier.model import LatentVerifier
from vhslab.version import __version__
from vhslab.world import load_world

# added when helper A's branch lands (vhslab/trace/site.py, vhslab/trace/trace.py):
# from vhslab.trace.site import Site
# from vhslab.trace.trace import trace

SHIPPED_VERIFIERS = {"vhs": "verifier", "text": "verifier_text", "vision": "verifier_vision", "ae": "verifier_ae"}


# helper C moves this into vhslab/verifier; then it is imported from there like the names above.
def load_verifier(path: str | Path | None = None, *, kind: str | None = None) -> LatentVerifier:
    """A saved LatentVerifier: a shipped one by `kind` (`vhs`, the default: the production verifier on
    block 10; `text`: the same LLM without visual tokens; `vision`: the standard decode + CLIP path;
    `ae`: on the autoencoder latent) or the one saved at `path`, which must then be of `kind` if given
    (a clear error otherwise, before anything is loaded)."""
    if kind is not None and kind not in SHIPPED_VERIFIERS:
        raise InputError(f"unknown verifier kind {kind!r}; kinds: {', '.join(SHIPPED_VERIFIERS)}")
    if path is None:
        path = Path(__file__).parent / "assets" / SHIPPED_VERIFIERS[kind or "vhs"]
        if not path.is_dir():
            raise MissingError(f"no shipped verifier at {path}; train one with `vhslab verifier train --out DIR`")
    return LatentVerifier.from_pretrained(path, kind=kind)


__all__ = [
    "InputError",
    "LatentVerifier",
    "MissingError",
    "ShapesEvaluator",
    "VhslabError",
    "__version__",
    "attribute",
    "best_of_n",
    "extract",
    "load_cost_model",
    "load_suite",
    "load_verifier",
    "load_world",
    "noise_search",
    "open_store",
    "parse_prompt",
    "run_sweep",
    # "Site", "trace": added when helper A's branch lands
]
