"""Batched generation through the real pipeline, streaming captured sites to a zarr store.

    from vhslab.data.extract import extract
    extract(pipe, load_suite("train"), "train.zarr", n_per_prompt=4, sites="all")
    ds = open_zarr("train.zarr", only_written=True)   # lazy (dask)

    # a multi-step pipeline: a (step x block) grid, the noisy latent and the clean estimate per step
    extract(teacher, prompts, "grid.zarr", gen=gen, steps=[0, 2, 4], layers=[3, 7], x_t=True, x0_hat=True)
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from vhslab.data.grid import Grid, check_grid, with_layers
from vhslab.data.spec import DTYPES, N_ITEMS, SPEC_VERSION, content_key
from vhslab.data.store import (
    StoreError,
    StoreInputError,
    consolidate,
    create_store,
    open_zarr,
    write_batch,
    written_mask,
)
from vhslab.data.verify import verify_store
from vhslab.errors import InputError
from vhslab.pipeline import GenConfig, Sample, config_hash, generator_fingerprint, make_samples, weights_hash
from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.phrasing import caption_detections, check_prompts
from vhslab.shapes.prompts import PromptSpec
from vhslab.trace.site import Site, find_transformer, parse_sites
from vhslab.trace.trace import Trace, VisionFn, trace
from vhslab.version import __version__


class Evaluator(Protocol):
    """What `extract` needs of an evaluator: a verdict (with `.correct`) of an image for a prompt."""

    def evaluate(self, image: np.ndarray, spec: PromptSpec) -> Any:
        """The verdict of `image` (uint8, H x W x 3) for `spec`."""


def check_output(out: Path) -> None:
    """The store path: an existing store (checked on open), or a new path in a writable folder."""
    if out.exists() and not out.is_dir():
        raise StoreInputError(f"{out} exists and is a file, not an activation store; nothing was changed")
    if out.exists() and not (out / "zarr.json").is_file() and any(out.iterdir()):
        raise StoreInputError(f"{out} exists and is not an activation store (no zarr.json); nothing was changed")
    parent = out.parent if str(out.parent) else Path(".")
    if not out.exists():
        parent.mkdir(parents=True, exist_ok=True)
    if not os.access(out if out.exists() else parent, os.W_OK):
        raise StoreInputError(f"cannot write to {out if out.exists() else parent} (permission denied); nothing was computed")


def describe_evaluator(evaluator: Evaluator) -> dict:
    """Name, version and thresholds of an evaluator (its `describe()`), part of a store's content
    key so that a resumed store never mixes label definitions. Without `describe()`: the class and
    its plain attributes."""
    if hasattr(evaluator, "describe"):
        return dict(evaluator.describe())
    plain = {k: v for k, v in getattr(evaluator, "__dict__", {}).items() if isinstance(v, (bool, int, float, str))}
    return {"name": f"{type(evaluator).__module__}.{type(evaluator).__qualname__}", **plain}


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int]:
    """"i/n" -> (i, n); None -> this process's rank under `accelerate launch`, else (0, 1)."""
    if shard is None:
        # torchrun / `accelerate launch` set RANK and WORLD_SIZE, MPI launchers their own; the
        # shards never talk to each other, so no process group is needed.
        for rank_var, size_var in (("RANK", "WORLD_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
                                   ("PMI_RANK", "PMI_SIZE")):
            if int(os.environ.get(size_var, "1")) > 1:
                return int(os.environ[rank_var]), int(os.environ[size_var])
        return 0, 1
    if isinstance(shard, str):
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise InputError(f"--shard must look like i/n (e.g. 0/2), got {shard!r}") from None
    else:
        i, n = shard
    if not 0 <= i < n:
        raise InputError(f"shard {i}/{n}: need 0 <= i < n")
    return i, n


def _prompt_labels(spec: PromptSpec) -> dict[str, list]:
    out: dict[str, list] = {"prompt_class": [], "prompt_color": [], "prompt_relation": [], "prompt_count": []}
    for j in range(N_ITEMS):
        item = spec.include[j] if j < len(spec.include) else None
        out["prompt_class"].append(item.cls if item else "")
        out["prompt_color"].append((item.color or "") if item else "")
        out["prompt_relation"].append(item.position[0] if item and item.position else "")
        out["prompt_count"].append(item.count if item else -1)
    return out


def _found_labels(spec: PromptSpec, verdict: Any) -> dict[str, list]:
    """What the evaluator found: per include item its count, colour and relation; `found_class[j]`
    is the class of the j-th largest accepted detection, whatever the prompt asked for."""
    out: dict[str, list] = {"found_class": [], "found_count": [], "found_color": [], "found_relation": []}
    drawn = sorted((d for d in getattr(verdict, "detections", []) if d.accepted and d.cls), key=lambda d: -d.area)
    out["found_class"] = [drawn[j].cls if j < len(drawn) else "" for j in range(N_ITEMS)]
    items = list(getattr(verdict, "items", []))
    for j in range(N_ITEMS):
        f = items[j] if j < len(items) and j < len(spec.include) else None
        out["found_count"].append(f.found_count if f else -1)
        out["found_color"].append((f.found_color or "") if f else "")
        out["found_relation"].append((f.found_relation or "") if f else "")
    return out


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def _latents(t: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h*w, C), tokens row-major."""
    return t.flatten(2).transpose(1, 2)


def _batch_dataset(batch: list[Sample], cap: Trace, sites: list[Site], evaluator: Evaluator, grid: Grid) -> xr.Dataset:
    """One batch as a Dataset with the store's variables (sample dim first)."""
    b = len(batch)
    images = cap.last("image")
    verdicts = [evaluator.evaluate(img, s.spec) for img, s in zip(images, batch, strict=True)]
    data: dict[str, Any] = {}
    blocks = [s.index for s in sites if s.is_block]
    step = ("step",) if grid.multi else ()
    if blocks:
        # (B, T, C) per (step, block): the trace keeps the conditional rows of a guidance batch
        # (diffusers concatenates [uncond, cond]); [-b:] also holds for a bare 2B batch.
        per = torch.stack([torch.stack([cap.last(Site.block(k, n))[-b:] for k in blocks]) for n in grid.at])
        hidden = _as_numpy(per.permute(2, 0, 1, 3, 4))  # (B, S, L, T, C)
        data["hidden"] = (("sample", *step, "layer", "token", "channel"), hidden if grid.multi else hidden[:, 0])
    for kind in grid.latents:
        per = torch.stack([_latents(cap.last(Site(kind, step=n))) for n in grid.steps])  # (S, B, tokens, C)
        values = _as_numpy(per.transpose(0, 1))
        data[kind] = (("sample", *step, "latent_token", "latent_channel"), values if grid.multi else values[:, 0])
    if Site("ae_latent") in sites:
        data["ae_latent"] = (("sample", "ae_token", "ae_channel"), _as_numpy(cap.last("ae_latent")[-b:]))
    if Site("image") in sites:
        data["image"] = (("sample", "pix_y", "pix_x", "rgb"), images)
    if Site("vision") in sites:
        data["vision"] = (("sample", "vision_token", "vision_channel"), _as_numpy(cap.last("vision")))
    labels = [{**_prompt_labels(s.spec), **_found_labels(s.spec, v)} for s, v in zip(batch, verdicts, strict=True)]
    for name in labels[0]:
        values = np.array([lab[name] for lab in labels], dtype=np.int16 if "count" in name else object)
        data[name] = (("sample", "item"), values)
    data["verdict"] = ("sample", np.array([bool(v.correct) for v in verdicts], dtype=np.int8))
    data["caption"] = ("sample", np.array([caption_detections(getattr(v, "detections", [])) for v in verdicts], object))
    return xr.Dataset(data)


def _store_coords(samples: list[Sample], sites: list[Site], num_blocks: int, grid: tuple[int, int], steps: Grid,
                  cap: Trace) -> dict:
    blocks = [s.index for s in sites if s.is_block]
    coords: dict[str, Any] = {
        "sample_id": ("sample", np.array([s.sample_id for s in samples], np.int64)),
        "prompt": ("sample", np.array([s.spec.prompt for s in samples], dtype=object)),
        "meaning": ("sample", np.array([s.spec.meaning for s in samples], dtype=object)),
        "tag": ("sample", np.array([s.spec.tag for s in samples], dtype=object)),
        "seed": ("sample", np.array([s.seed for s in samples], np.int64)),
        "prompt_index": ("sample", np.array([s.prompt_index for s in samples], np.int64)),
    }
    if blocks:
        rows, cols = grid
        coords["layer"] = ("layer", np.array(blocks, np.int64))
        coords["depth"] = ("layer", np.array(blocks, np.float64) / num_blocks)
        coords["site"] = ("layer", np.array([str(Site.block(i)) for i in blocks], dtype=object))
        coords["token_row"] = ("token", np.repeat(np.arange(rows, dtype=np.int64), cols))
        coords["token_col"] = ("token", np.tile(np.arange(cols, dtype=np.int64), rows))
    if steps.multi and (blocks or steps.latents):
        at = list(steps.steps)
        coords["step"] = ("step", np.array(at, np.int64))
        if len(cap.sigmas) > max(at):  # the scheduler's sigma and timestep at each stored step
            coords["sigma"] = ("step", np.array([cap.sigmas[n] for n in at], np.float64))
            coords["timestep"] = ("step", np.array([cap.timesteps[n] for n in at], np.float64))
    return coords


def _check_grid(pipe, site_list, layers, steps, gen, x_t, x0_hat) -> tuple[list[Site], Grid]:
    """The blocks (`layers` replacing those of `sites`) and the step grid, checked before any compute."""
    site_list = with_layers(site_list, layers, pipe)
    step_grid = check_grid(steps, gen.steps, x_t, x0_hat, pipe)
    if not site_list and not step_grid.latents:
        raise InputError("nothing to capture: no block, no other site, and neither x_t nor x0_hat")
    return site_list, step_grid


def _check_call(pipe, prompts, sites, dtype, batch_size, vision, shard, evaluator) -> tuple[list[Site], tuple[int, int], Evaluator]:
    """Options, sites, shard and evaluator, checked before any compute; each prompt against the
    evaluator's `check_prompt` (warnings)."""
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    site_list = parse_sites(sites, pipe, vision)  # fails before any compute
    shard_of = parse_shard(shard)
    evaluator = ShapesEvaluator() if evaluator is None else evaluator
    if hasattr(evaluator, "check_prompt"):  # every prompt, all errors at once, before any compute
        for message in check_prompts(list(prompts), evaluator.check_prompt):
            warnings.warn(message, stacklevel=3)
    return site_list, shard_of, evaluator


def _identity(pipe, prompts, n_per_prompt, seed, site_list, dtype, gen, evaluator, model_id, batch_size,
              grid: Grid) -> tuple[str, dict]:
    """The store's content key and attributes."""
    judge = describe_evaluator(evaluator)
    generator = generator_fingerprint(pipe, weights_hash(pipe))
    names = [str(s) for s in site_list]
    key = content_key(  # the generator's fingerprint, not config_hash: that holds the folder it was loaded from
        evaluator=judge, generator=generator, prompts=[s.to_json() for s in prompts], n_per_prompt=n_per_prompt,
        seed=seed, sites=names, dtype=dtype, gen=gen.to_dict(), **grid.key(),
    )
    attrs = {
        "spec_version": SPEC_VERSION,
        "model_id": str(model_id or getattr(pipe, "name_or_path", None) or type(pipe).__name__),
        "pipeline": type(pipe).__name__,
        "config_hash": config_hash(pipe),
        "generator": generator,  # verifiers refuse a store of another generator
        "num_blocks": len(find_transformer(pipe).transformer_blocks),
        "sites": ",".join(names),
        "dtype": dtype,
        "vhslab_version": __version__,
        "content_key": key,
        "evaluator": json.dumps(judge, sort_keys=True),
        "sample_chunk": batch_size,
        "generation": str(gen.to_dict()),
    }
    return key, attrs


def _resume(out: Path, key: str, n_samples: int, batch_size: int, verify: bool):
    """(the existing store or None, written mask, chunk size, repaired chunks): an existing store must
    hold this call's data; with `verify`, its lost or damaged chunks are marked to be written again."""
    done, chunk, repaired, ds = np.zeros(n_samples, bool), batch_size, [], None
    if out.exists():
        ds = open_zarr(out)
        if ds.attrs["content_key"] != key:
            raise StoreInputError(
                f"{out} holds different data (content key {ds.attrs['content_key']} != {key}: model, prompts, "
                "seeds, sites, dtype, generation settings or evaluator differ). Use another --out; nothing was changed."
            )
        done = written_mask(ds, out)
        chunk = int(ds.attrs["sample_chunk"])  # batches stay aligned with the store's chunks
        if verify:  # lost or damaged chunks: their batches are generated and written again
            for damage in verify_store(out, ds, chunk, done):
                done[damage.samples[0] : damage.samples[1]] = False
                repaired.append(str(damage))
    return ds, done, chunk, repaired


def _write_chunk(pipe, out, samples, c, chunk, ds, site_list, gen, dtype, vision, evaluator, key, attrs, step_grid) -> int:
    """Generate chunk `c`, capture and label it, write it (creating the store on first write); its bytes."""
    batch = samples[c * chunk : (c + 1) * chunk]
    generators = [torch.Generator(device="cpu").manual_seed(s.seed) for s in batch]
    with torch.no_grad(), trace(pipe, step_grid.reads(site_list), calls=gen.steps, dtype=getattr(torch, dtype), stop=False,
                                vision=vision) as cap:
        pipe(prompt=[s.spec.prompt for s in batch], generator=generators, output_type="pt", **gen.call_kwargs(pipe))
    ds_batch = _batch_dataset(batch, cap, site_list, evaluator, step_grid)
    if ds is not None and "caption" not in ds:  # resuming a store from before captions: keep its layout
        ds_batch = ds_batch.drop_vars("caption")
    if not out.exists():
        dit = find_transformer(pipe)
        patch = getattr(dit.config, "patch_size", 1) or 1
        grid = (gen.height // (pipe.vae_scale_factor * patch), gen.width // (pipe.vae_scale_factor * patch))
        steps = step_grid
        coords = _store_coords(samples, site_list, len(dit.transformer_blocks), grid, steps, cap)
        create_store(out, ds_batch, len(samples), chunk, coords, attrs)
        if open_zarr(out).attrs["content_key"] != key:  # another process created it first
            raise StoreError(f"{out} was created concurrently with different data")
    write_batch(out, ds_batch, c * chunk)
    return sum(v.nbytes for v in ds_batch.data_vars.values())


def extract(
    pipe: Any,
    prompts: Sequence[PromptSpec],
    out: str | Path,
    *,
    n_per_prompt: int = 1,
    sites: str | Site | Sequence[str | Site] = "all",
    seed: int = 0,
    batch_size: int = 8,
    dtype: str = "float16",
    gen: GenConfig | None = None,
    evaluator: Evaluator | None = None,
    vision: VisionFn | None = None,
    shard: str | tuple[int, int] | None = None,
    model_id: str | None = None,
    progress: bool = True,
    verify: bool = True,
    steps: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    x_t: bool = False,
    x0_hat: bool = False,
) -> dict[str, Any]:
    """Generate `n_per_prompt` candidates per prompt, capture `sites`, label each image with
    `evaluator` (default `ShapesEvaluator`) and write this shard's samples into the store `out`.

    The (step x block) grid of a multi-step pipeline: `steps` (default all) x the blocks (`layers`
    replaces those of `sites`), as `hidden` (sample, step, layer, token, channel) with the scheduler's
    `sigma`/`timestep` on the step dim; `x_t` / `x0_hat` add the latent entering each captured step and
    the clean-latent estimate there (sample, step, latent_token, latent_channel). Exactly that grid.

    Everything is checked before any compute: options, every prompt (against the evaluator's
    `check_prompt`), the output path. Re-running the same call skips samples already written and,
    with `verify`, first finds lost or damaged chunks (`vhslab.data.verify`) and writes them again;
    a store made from different model/prompts/seeds/sites/dtype/generation settings/evaluator is
    refused. Returns a summary dict (`repaired`: the damaged chunks found and rewritten).
    """
    t0 = time.perf_counter()
    out = Path(out)
    site_list, (rank, world), evaluator = _check_call(pipe, prompts, sites, dtype, batch_size, vision, shard, evaluator)
    gen = (gen or GenConfig()).resolve(pipe)
    site_list, step_grid = _check_grid(pipe, site_list, layers, steps, gen, x_t, x0_hat)
    check_output(out)
    samples = make_samples(list(prompts), n_per_prompt, seed)
    key, attrs = _identity(pipe, prompts, n_per_prompt, seed, site_list, dtype, gen, evaluator, model_id, batch_size, step_grid)
    ds, done, chunk, repaired = _resume(out, key, len(samples), batch_size, verify)
    n_chunks = math.ceil(len(samples) / chunk)
    mine = [c for c in range(n_chunks) if c % world == rank]
    todo = [c for c in mine if not done[c * chunk : (c + 1) * chunk].all()]
    size = lambda c: min(chunk, len(samples) - c * chunk)  # noqa: E731
    n_mine, n_todo = sum(map(size, mine)), sum(map(size, todo))
    bytes_written = 0
    bar = tqdm(total=n_mine, initial=n_mine - n_todo, unit="sample", desc=f"extract {out.name}",
               disable=not progress, file=sys.stderr)
    for c in todo:
        bytes_written += _write_chunk(pipe, out, samples, c, chunk, ds, site_list, gen, dtype, vision, evaluator, key, attrs,
                                      step_grid)
        bar.update(size(c))
    bar.close()
    if todo and out.exists():
        consolidate(out)
    elapsed = time.perf_counter() - t0
    final = open_zarr(out) if out.exists() else None
    written = written_mask(final, out) if final is not None else done
    verdicts = final["verdict"].values[written] if final is not None and written.any() else np.array([])
    return {
        "out": str(out),
        "shard": f"{rank}/{world}",
        "samples_total": len(samples),
        "samples_written": int(written.sum()),
        "samples_this_run": n_todo,
        "skipped": n_mine - n_todo,
        "sites": [str(s) for s in site_list], "steps": list(step_grid.steps), "latents": list(step_grid.latents),
        "accuracy": float(verdicts.mean()) if verdicts.size else None,
        "elapsed_s": round(elapsed, 3),
        "samples_per_s": round(n_todo / elapsed, 2),
        "mb_per_s": round(bytes_written / 1e6 / elapsed, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "content_key": key,
        "repaired": repaired,
    }
