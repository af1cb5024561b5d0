"""The activation-store spec (docs/dataset_spec.md): names, content key and `validate`."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import xarray as xr

from vhslab.errors import InputError
from vhslab.trace.site import Site

SPEC_VERSION = 2
N_ITEMS = 2  # GenEval prompts have at most two include items
DTYPES = {"float16": "float16", "bfloat16": "float32", "float32": "float32"}  # requested -> stored
REQUIRED_ATTRS = ("spec_version", "model_id", "config_hash", "num_blocks", "sites", "dtype", "vhslab_version",
                  "content_key", "evaluator")
SAMPLE_COORDS = {"sample_id": "i", "prompt": "str", "meaning": "str", "tag": "str", "seed": "i", "prompt_index": "i"}
LABELS = {
    "written": "bool",
    "verdict": "int8",
    "prompt_class": "str",
    "prompt_color": "str",
    "prompt_relation": "str",
    "prompt_count": "int16",
    "found_class": "str",
    "found_count": "int16",
    "found_color": "str",
    "found_relation": "str",
}
STEP_VARS = ("x_t", "x0_hat")  # (sample, [step,] latent_token, latent_channel): the latent and clean estimate per step
SITE_VARS = {  # site -> (variable, dims after `sample` and the optional `step`)
    "ae_latent": ("ae_latent", ("ae_token", "ae_channel")),
    "image": ("image", ("pix_y", "pix_x", "rgb")),
    "vision": ("vision", ("vision_token", "vision_channel")),
}


class SpecError(InputError):
    """A dataset does not follow the activation-store spec; the message lists every problem."""


def content_key(**parts: Any) -> str:
    """Stable hash of what determines the data (model, prompts, seeds, sites, dtype, generation, evaluator)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _kind_ok(arr: xr.DataArray, kind: str) -> bool:
    if kind == "str":
        return arr.dtype.kind in "UOT"
    if kind == "i":
        return arr.dtype.kind in "iu"
    return arr.dtype == np.dtype(kind)


def _step_problems(ds: xr.Dataset, step: tuple[str, ...]) -> list[str]:
    """The step dim's coords (`step` int; `sigma`, `timestep` float, optional: older multi-step stores
    lack them) and the x_t / x0_hat variables."""
    problems = []
    if step and ("step" not in ds.coords or ds["step"].dims != ("step",) or not _kind_ok(ds["step"], "i")):
        problems.append("coord 'step' missing or not (step,) int")
    for name in ("sigma", "timestep"):
        if name in ds.coords and (ds[name].dims != ("step",) or ds[name].dtype.kind != "f"):
            problems.append(f"coord {name!r} is not (step,) float")
    for var in STEP_VARS:
        if var in ds and ds[var].dims != ("sample", *step, "latent_token", "latent_channel"):
            problems.append(f"variable {var!r} is not {('sample', *step, 'latent_token', 'latent_channel')}")
    return problems


def validate(ds: xr.Dataset) -> None:
    """Raise `SpecError` listing every way `ds` departs from the spec. Reads no chunk data."""
    problems: list[str] = []
    missing = [a for a in REQUIRED_ATTRS if a not in ds.attrs]
    if missing:
        raise SpecError(f"missing attrs: {', '.join(missing)} (not a vhslab activation store?)")
    if ds.attrs["spec_version"] != SPEC_VERSION:
        raise SpecError(
            f"spec_version {ds.attrs['spec_version']} != {SPEC_VERSION}: written by an older vhslab"
            " (v2 added meaning, found_class, the evaluator and SeedSequence seeds); extract it again"
        )
    if ds.attrs["dtype"] not in DTYPES:
        problems.append(f"attr dtype {ds.attrs['dtype']!r} not one of {sorted(DTYPES)}")
    if "sample" not in ds.dims:
        problems.append("no `sample` dim")
    for name, kind in {**SAMPLE_COORDS}.items():
        if name not in ds.coords or ds[name].dims != ("sample",) or not _kind_ok(ds[name], kind):
            problems.append(f"coord {name!r} missing or not (sample,) {kind}")
    for name, kind in LABELS.items():
        want = ("sample",) if name in ("written", "verdict") else ("sample", "item")
        if name not in ds.data_vars or ds[name].dims != want or not _kind_ok(ds[name], kind):
            problems.append(f"variable {name!r} missing or not {want} {kind}")
    if "caption" in ds and (ds["caption"].dims != ("sample",) or not _kind_ok(ds["caption"], "str")):
        problems.append("variable 'caption' is not (sample,) str")  # optional: stores before it lack it
    if "checksum" in ds and (ds["checksum"].dims != ("sample", "checked") or ds["checksum"].dtype != np.uint32
                             or "checked" not in ds.coords):
        problems.append("variable 'checksum' is not (sample, checked) uint32 with a coord 'checked'")
    sites = [s for s in str(ds.attrs["sites"]).split(",") if s]
    step = ("step",) if "step" in ds.dims else ()
    stored = DTYPES.get(ds.attrs["dtype"], "float32")
    blocks = [site.index for site in map(Site.parse, sites) if site.is_block]
    if blocks:
        want = ("sample", *step, "layer", "token", "channel")
        if "hidden" not in ds or ds["hidden"].dims != want:
            problems.append(f"variable 'hidden' missing or its dims are not {want}")
        elif ds["hidden"].dtype != np.dtype(stored):
            problems.append(f"hidden dtype {ds['hidden'].dtype} != {stored} (attr dtype {ds.attrs['dtype']})")
        if "layer" not in ds.coords or list(ds["layer"].values) != blocks:
            problems.append(f"coord 'layer' does not list the block sites {blocks}")
        else:
            num = int(ds.attrs["num_blocks"])
            if "depth" not in ds.coords or not np.allclose(ds["depth"].values, np.array(blocks) / num):
                problems.append("coord 'depth' != layer / num_blocks")
            if "site" not in ds.coords or list(ds["site"].values) != [str(Site.block(i)) for i in blocks]:
                problems.append("coord 'site' does not name each layer's block site")
        for name in ("token_row", "token_col"):
            if name not in ds.coords or ds[name].dims != ("token",):
                problems.append(f"coord {name!r} missing or not (token,)")
    elif "hidden" in ds:
        problems.append("variable 'hidden' present but no block site in attr sites")
    for site, (var, dims) in SITE_VARS.items():
        want = ("sample", *dims)
        if site in sites and (var not in ds or ds[var].dims != want):
            problems.append(f"site {site!r} requested but variable {var!r} missing or not {want}")
        elif site not in sites and var in ds:
            problems.append(f"variable {var!r} present but site {site!r} not in attr sites")
    if "image" in ds and ds["image"].dtype != np.uint8:
        problems.append("image is not uint8")
    problems += _step_problems(ds, step) + [f"{var} dtype {ds[var].dtype} != {stored}" for var in ("ae_latent", "vision", *STEP_VARS)
                                            if var in ds and ds[var].dtype != np.dtype(stored)]
    if problems:
        raise SpecError("dataset does not follow the spec:\n  - " + "\n  - ".join(problems))
