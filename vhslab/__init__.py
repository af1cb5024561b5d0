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

from vhslab.analysis.attribution import attribute
from vhslab.data.extract import extract
from vhslab.errors import InputError, MissingError, VhslabError
from vhslab.probes import open_store, run_sweep
from vhslab.search import best_of_n, load_cost_model, noise_search
from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.phrasing import parse_prompt
from vhslab.shapes.suites import load_suite
from vhslab.trace.site import Site
from vhslab.trace.trace import trace
from vhslab.verifier.load import load_verifier
from vhslab.verifier.model import LatentVerifier
from vhslab.version import __version__
from vhslab.world import load_world

__all__ = [
    "InputError",
    "LatentVerifier",
    "MissingError",
    "ShapesEvaluator",
    "Site",
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
    "trace",
]
