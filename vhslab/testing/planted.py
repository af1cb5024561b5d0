"""Planted activation stores (docs/dataset_spec.md) with known signals, for tests and benchmarks.

Signals: the verdict is linear in layer `signal_layer` only; the found colour of item 0 is
linear in layer `color_layer`; the output latent is a linear map of the last layer's tokens.
Everything else is Gaussian noise, and the verdict is independent of the prompt.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from vhslab.data.spec import SPEC_VERSION
from vhslab.errors import InputError
from vhslab.shapes.prompts import PromptSpec
from vhslab.trace.site import Site
from vhslab.version import __version__

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
CLASSES = ("cube", "sphere", "cone", "torus", "cylinder", "pyramid")
RELATIONS = ("left of", "right of", "above", "below")


def _prompts(n_prompts: int, rng: np.random.Generator) -> list[dict]:
    out = []
    for p in range(n_prompts):
        tag = TAGS[p % len(TAGS)]
        a, b = rng.choice(CLASSES, 2, replace=False)
        items = [{"class": a, "count": 1}]
        if tag == "counting":
            items[0]["count"] = int(rng.integers(2, 5))
        if tag in ("colors", "color_attr"):
            items[0]["color"] = str(rng.choice(COLORS))
        if tag in ("two_object", "position", "color_attr"):
            items.append({"class": b, "count": 1})
        if tag == "color_attr":
            items[1]["color"] = str(rng.choice(COLORS))
        if tag == "position":
            items[1]["position"] = [str(rng.choice(RELATIONS)), 0]
        words = " and ".join(f"{i['count']} {i.get('color', '')} {i['class']}".replace("  ", " ") for i in items)
        if tag == "position":
            words = f"a {b} {items[1]['position'][0]} a {a}"
        out.append({"tag": tag, "prompt": f"a photo of {words}", "include": items})
    return out


def _labels(prompts: list[dict], pidx: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """What each sample's prompt asks (prompt_*) and what a detector "found" (found_*: noisy copies), per item."""
    n_samples = len(pidx)
    p_class = np.full((n_samples, 2), "", dtype="<U16")
    p_color, p_rel, f_color, f_rel, f_class = (p_class.copy() for _ in range(5))
    p_count = np.full((n_samples, 2), -1, np.int16)
    f_count = p_count.copy()
    for s in range(n_samples):
        for i, it in enumerate(prompts[pidx[s]]["include"]):
            p_class[s, i], p_count[s, i] = it["class"], it["count"]
            p_color[s, i] = it.get("color", "")
            p_rel[s, i] = it.get("position", [""])[0]
            f_count[s, i] = max(0, it["count"] + int(rng.integers(-1, 2)))
            f_class[s, i] = it["class"] if rng.random() < 0.7 else rng.choice(CLASSES)
            if f_count[s, i] > 0:
                f_color[s, i] = it["color"] if "color" in it and rng.random() < 0.5 else rng.choice(COLORS)
                if p_rel[s, i]:
                    f_rel[s, i] = rng.choice(RELATIONS)
    return {"prompt_class": p_class, "prompt_color": p_color, "prompt_relation": p_rel, "prompt_count": p_count,
            "found_class": f_class, "found_count": f_count, "found_color": f_color, "found_relation": f_rel}


def _activations(rng: np.random.Generator, shape: tuple[int, int, int, int], verdict: np.ndarray, found_color: np.ndarray,
                 signal_layer: int, color_layer: int, strength: float, ae_channels: int, chunk_samples: int, seed: int):
    """(hidden (sample, layer, token, channel), ae_latent (sample, token, ae_channel)), lazy: Gaussian noise,
    the verdict's direction added in `signal_layer` and the found colour's mean in `color_layer`."""
    n_samples, n_layers, n_tokens, n_channels = shape
    # Directions of the planted signals, in channel space.
    w_verdict = rng.standard_normal(n_channels)
    w_verdict /= np.linalg.norm(w_verdict)
    color_ids = np.array([COLORS.index(c) if c else -1 for c in found_color])
    color_means = rng.standard_normal((len(COLORS), n_channels)) * strength
    color_shift = np.where(color_ids[:, None] >= 0, color_means[color_ids], 0.0)
    ae_map = rng.standard_normal((n_channels, ae_channels)) / n_channels**0.5

    chunks = (chunk_samples, 1, n_tokens, n_channels)
    layers = []
    for layer in range(n_layers):
        noise = da.random.default_rng(seed * 1000 + layer).standard_normal(
            (n_samples, 1, n_tokens, n_channels), chunks=chunks, dtype=np.float32
        )
        shift = np.zeros((n_samples, 1, 1, n_channels), np.float32)
        if layer == signal_layer:
            shift[:, 0, 0] += strength * (2.0 * verdict - 1)[:, None] * w_verdict
        if layer == color_layer:
            shift[:, 0, 0] += color_shift
        layers.append(noise + da.from_array(shift, chunks=(chunk_samples, 1, 1, n_channels)))
    hidden = da.concatenate(layers, axis=1)
    ae = da.einsum("stc,ce->ste", hidden[:, -1], ae_map.astype(np.float32))
    ae = ae + 0.3 * da.random.default_rng(seed + 7).standard_normal(ae.shape, chunks=ae.chunksize, dtype=np.float32)
    return hidden, ae


def _coords(prompts: list[dict], meanings: list[str], pidx: np.ndarray, per_prompt: int, n_layers: int,
            n_tokens: int) -> dict:
    """The store's coordinates: per sample (prompt, meaning, tag, seed...), per layer and per token (grid row, column)."""
    n_samples = len(pidx)
    side = round(n_tokens**0.5)
    rows, cols = np.divmod(np.arange(n_tokens), side)
    return {
        "sample_id": ("sample", np.arange(n_samples, dtype=np.int64)),
        "prompt": ("sample", np.array([prompts[p]["prompt"] for p in pidx])),
        "meaning": ("sample", np.array([meanings[p] for p in pidx])),
        "tag": ("sample", np.array([prompts[p]["tag"] for p in pidx])),
        "seed": ("sample", np.arange(n_samples, dtype=np.int64) % per_prompt),
        "prompt_index": ("sample", pidx.astype(np.int64)),
        "layer": ("layer", np.arange(n_layers, dtype=np.int64)),
        "depth": ("layer", np.arange(n_layers) / n_layers),
        "site": ("layer", np.array([str(Site.block(i)) for i in range(n_layers)])),
        "token_row": ("token", rows.astype(np.int64)),
        "token_col": ("token", cols.astype(np.int64)),
    }


def planted_store(
    n_samples: int = 400,
    n_layers: int = 6,
    n_tokens: int = 16,
    n_channels: int = 32,
    *,
    per_prompt: int = 4,
    signal_layer: int = 3,
    color_layer: int | None = None,
    strength: float = 0.5,
    ae_channels: int = 8,
    image_px: int = 0,
    dtype: str = "float16",
    chunk_samples: int = 256,
    seed: int = 0,
) -> xr.Dataset:
    """A lazy (dask) planted store: `hidden` (sample, layer, token, channel), `ae_latent`, labels.

    `n_tokens` must be a square (a row-major latent grid); `image_px > 0` adds an `image`.
    """
    side = round(n_tokens**0.5)
    if side * side != n_tokens:
        raise InputError(f"n_tokens={n_tokens} is not a square grid")
    color_layer = signal_layer if color_layer is None else color_layer
    rng = np.random.default_rng(seed)
    n_prompts = -(-n_samples // per_prompt)
    prompts = _prompts(n_prompts, rng)
    meanings = [PromptSpec.from_json(p).meaning for p in prompts]
    pidx = np.arange(n_samples) // per_prompt
    verdict = (rng.random(n_samples) < 0.6).astype(np.int8)

    labels = _labels(prompts, pidx, rng)
    f_class, f_color = labels["found_class"], labels["found_color"]
    shape = (n_samples, n_layers, n_tokens, n_channels)
    hidden, ae = _activations(rng, shape, verdict, f_color[:, 0], signal_layer, color_layer, strength, ae_channels,
                              chunk_samples, seed)
    data = {
        "hidden": (("sample", "layer", "token", "channel"), hidden.astype(dtype)),
        "ae_latent": (("sample", "ae_token", "ae_channel"), ae.astype(dtype)),
        "verdict": ("sample", verdict),
        **{name: (("sample", "item"), labels[name]) for name in (
            "prompt_class", "prompt_color", "prompt_relation", "prompt_count",
            "found_class", "found_count", "found_color", "found_relation")},
        "written": ("sample", np.ones(n_samples, bool)),
        "caption": ("sample", np.array([" ".join(f"a photo of a {f_color[s, 0]} {f_class[s, 0]}".split())
                                        for s in range(n_samples)])),  # what a detector "saw"
    }
    sites = [str(Site.block(i)) for i in range(n_layers)] + ["ae_latent"]
    if image_px:
        rep = image_px // side
        img = ae[:, :, :3].reshape(n_samples, side, side, 3)
        img = da.repeat(da.repeat(img, rep, axis=1), rep, axis=2)
        img = (128 + 40 * da.clip(img, -3, 3)).astype(np.uint8).rechunk((chunk_samples, -1, -1, -1))
        data["image"] = (("sample", "pix_y", "pix_x", "rgb"), img)
        sites.append("image")
    coords = _coords(prompts, meanings, pidx, per_prompt, n_layers, n_tokens)
    attrs = {
        "spec_version": SPEC_VERSION,
        "evaluator": "planted",
        "model_id": "planted",
        "config_hash": f"planted-{seed}",
        "num_blocks": n_layers,
        "sites": ",".join(sites),
        "dtype": dtype,
        "vhslab_version": __version__,
        "content_key": f"planted-{seed}-{n_samples}-{n_layers}-{n_tokens}-{n_channels}",
    }
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    for name, var in ds.variables.items():  # variable-length strings (zarr v3 has a spec for them)
        if var.dtype.kind == "U":
            ds[name] = var.astype(object)
    return ds


def _disjoint_prompts(n_prompts: int, rng: np.random.Generator, exclude: set[str]) -> tuple[list[dict], list[str]]:
    """`n_prompts` planted prompts none of whose meanings is in `exclude` (redrawn until enough)."""
    prompts: list[dict] = []
    for _ in range(100):
        for p in _prompts(n_prompts, rng):
            if PromptSpec.from_json(p).meaning not in exclude and len(prompts) < n_prompts:
                prompts.append(p)
        if len(prompts) == n_prompts:
            return prompts, [PromptSpec.from_json(p).meaning for p in prompts]
    raise InputError(f"cannot draw {n_prompts} planted prompts outside the {len(exclude)} excluded meanings")


def planted_steps_store(
    n_samples: int = 240,
    steps: tuple[int, ...] = (0, 2, 4, 6),
    n_layers: int = 4,
    n_tokens: int = 16,
    n_channels: int = 16,
    *,
    num_steps: int = 8,
    per_prompt: int = 4,
    signal_step: int = 4,
    signal_layer: int = 2,
    strength: float = 0.5,
    ae_channels: int = 4,
    exclude_meanings=(),
    signal_seed: int = 0,
    dtype: str = "float32",
    chunk_samples: int = 64,
    seed: int = 0,
) -> xr.Dataset:
    """A planted multi-step store (the step contract): `hidden` (sample, step, layer, token, channel) with
    coords `step`, `layer` and, on `step`, `sigma` (flow matching: 1 - step / num_steps) and `timestep`;
    `x_t`, `x0_hat` (sample, step, latent_token, latent_channel); `ae_latent`; labels as `planted_store`.

    The signal sits at exactly one cell (`signal_step`, `signal_layer`): the verdict's direction, the
    found colour (item 0) and the state the output latent is a linear map of; every other cell is
    Gaussian noise. The directions come from `signal_seed`, the samples from `seed`, so two stores with the
    same `signal_seed` share the signal; `exclude_meanings` (e.g. another store's `meaning` values) keeps
    their prompt meanings disjoint (a train / test pair).
    """
    side = round(n_tokens**0.5)
    if side * side != n_tokens:
        raise InputError(f"n_tokens={n_tokens} is not a square grid")
    if signal_step not in steps or not 0 <= signal_layer < n_layers:
        raise InputError(f"the signal cell (step {signal_step}, block {signal_layer}) is not in steps {list(steps)} "
                         f"x blocks 0..{n_layers - 1}")
    rng = np.random.default_rng(seed)
    n_prompts = -(-n_samples // per_prompt)
    prompts, meanings = _disjoint_prompts(n_prompts, rng, {str(m) for m in np.asarray(exclude_meanings).ravel()})
    pidx = np.arange(n_samples) // per_prompt
    verdict = (rng.random(n_samples) < 0.6).astype(np.int8)
    labels = _labels(prompts, pidx, rng)
    sig = np.random.default_rng(10_000 + signal_seed)
    w_verdict = sig.standard_normal(n_channels)
    w_verdict /= np.linalg.norm(w_verdict)
    color_means = sig.standard_normal((len(COLORS), n_channels)) * strength
    ae_map = sig.standard_normal((n_channels, ae_channels)) / n_channels**0.5
    color_ids = np.array([COLORS.index(c) if c else -1 for c in labels["found_color"][:, 0]])
    hidden = rng.standard_normal((n_samples, len(steps), n_layers, n_tokens, n_channels)).astype(np.float32)
    shift = strength * (2.0 * verdict - 1)[:, None] * w_verdict + np.where(color_ids[:, None] >= 0, color_means[color_ids], 0)
    cell = hidden[:, list(steps).index(signal_step), signal_layer]
    cell += shift[:, None, :].astype(np.float32)
    ae = cell @ ae_map + 0.3 * rng.standard_normal((n_samples, n_tokens, ae_channels))
    x_t = rng.standard_normal((n_samples, len(steps), n_tokens, ae_channels))
    sigma = 1.0 - np.asarray(steps, float) / num_steps
    x0_hat = ae[:, None] + sigma[None, :, None, None] * rng.standard_normal(x_t.shape)
    lazy = lambda a, dims: (dims, da.from_array(a.astype(dtype), chunks=(chunk_samples, *a.shape[1:])))  # noqa: E731
    data = {
        "hidden": lazy(hidden, ("sample", "step", "layer", "token", "channel")),
        "x_t": lazy(x_t, ("sample", "step", "latent_token", "latent_channel")),
        "x0_hat": lazy(x0_hat, ("sample", "step", "latent_token", "latent_channel")),
        "ae_latent": lazy(ae, ("sample", "ae_token", "ae_channel")),
        "verdict": ("sample", verdict),
        **{name: (("sample", "item"), labels[name]) for name in labels},
        "written": ("sample", np.ones(n_samples, bool)),
        "caption": ("sample", np.array([" ".join(f"a photo of a {labels['found_color'][s, 0]} "
                                                 f"{labels['found_class'][s, 0]}".split()) for s in range(n_samples)])),
    }
    coords = {**_coords(prompts, meanings, pidx, per_prompt, n_layers, n_tokens),
              "step": ("step", np.asarray(steps, np.int64)), "sigma": ("step", sigma),
              "timestep": ("step", sigma * 1000.0)}
    attrs = {"spec_version": SPEC_VERSION, "evaluator": "planted", "model_id": "planted-steps",
             "config_hash": f"planted-steps-{seed}", "num_blocks": n_layers, "num_inference_steps": num_steps,
             "sites": ",".join([str(Site.block(i)) for i in range(n_layers)] + ["ae_latent"]), "dtype": dtype,
             "vhslab_version": __version__,
             "content_key": f"planted-steps-{seed}-{signal_seed}-{n_samples}-{len(steps)}-{n_layers}-{n_channels}"}
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    for name, var in ds.variables.items():
        if var.dtype.kind == "U":
            ds[name] = var.astype(object)
    return ds
