"""Zarr activation stores: atomic creation, region-wise batch writes, `written` flags, safe reopen.

The sample dim is preallocated from the deterministic sample list. A batch writes its region
of every variable first and its `written` flags last, so a killed run loses at most the batch
in flight and a re-run rewrites exactly that batch. Nothing here ever deletes store data.
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
import zarr

from vhslab.data.spec import SpecError, validate

BIG = ("hidden", "ae_latent", "image", "vision")  # lazily preallocated, chunked per layer/step


class StoreError(RuntimeError):
    """The store at a path is missing, corrupt, partial or holds other data."""


def create_store(path: str | Path, first: xr.Dataset, n: int, chunk: int, coords: dict, attrs: dict) -> bool:
    """Create the store for `n` samples, shaped like the batch `first`. Atomic: returns False if
    another process created `path` first (the caller then opens it)."""
    path = Path(path)
    data = {}
    encoding = {}
    for name, var in first.data_vars.items():
        shape = (n, *var.shape[1:])
        if name in BIG:
            per = [chunk] + [1 if d in ("step", "layer") else s for d, s in zip(var.dims[1:], shape[1:], strict=True)]
            data[name] = (var.dims, da.zeros(shape, dtype=var.dtype, chunks=tuple(per)))
        else:
            fill = False if var.dtype == bool else ("" if var.dtype.kind in "UOT" else -1)
            data[name] = (var.dims, np.full(shape, fill, dtype=object if var.dtype.kind in "UOT" else var.dtype))
            per = [chunk, *shape[1:]]
        encoding[name] = {"chunks": tuple(per)}
    template = xr.Dataset(data, coords={**first.drop_dims("sample").coords, **coords}, attrs=attrs)
    template["written"] = ("sample", np.zeros(n, bool))
    encoding["written"] = {"chunks": (chunk,)}
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    with quiet_consolidation():
        template.to_zarr(tmp, compute=False, encoding=encoding, consolidated=True)
    try:
        os.rename(tmp, path)
        return True
    except OSError:
        if not path.exists() or not any(path.iterdir()):
            raise
        shutil.rmtree(tmp)  # our own temporary copy only
        return False


def open_store(path: str | Path, only_written: bool = False) -> xr.Dataset:
    """Open a store lazily (dask) and validate it; raise `StoreError` naming what is wrong."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no store at {path}")
    if not (path / "zarr.json").is_file():
        raise StoreError(f"{path} is not a zarr store: zarr.json is missing (partial or foreign directory)")
    try:
        ds = xr.open_zarr(path, consolidated=False)  # each array's own metadata: finds a damaged one
    except Exception as err:  # zarr/xarray raise many types for damaged metadata
        raise StoreError(f"{path}: cannot open as zarr ({type(err).__name__}: {err})") from err
    try:
        validate(ds)
    except SpecError as err:
        raise StoreError(f"{path}: {err}") from err
    if only_written:
        ds = ds.isel(sample=written_mask(ds, path))
    return ds


def written_mask(ds: xr.Dataset, path: str | Path = "") -> np.ndarray:
    """The `written` flags as a numpy bool array; a damaged flag chunk is a `StoreError`."""
    try:
        return np.asarray(ds["written"].values, dtype=bool)
    except Exception as err:
        raise StoreError(f"{path}: the `written` flags cannot be read ({type(err).__name__}: {err})") from err


def write_batch(path: str | Path, batch: xr.Dataset, start: int) -> None:
    """Write `batch` (sample-dim variables only) at samples [start, start + len), then mark it written."""
    region = {"sample": slice(start, start + batch.sizes["sample"])}
    data = batch.drop_vars([c for c in batch.coords])
    data.to_zarr(path, region=region, mode="r+", consolidated=False)
    flags = xr.Dataset({"written": ("sample", np.ones(batch.sizes["sample"], bool))})
    flags.to_zarr(path, region=region, mode="r+", consolidated=False)


def consolidate(path: str | Path) -> None:
    """Rewrite the store's consolidated metadata, so that a plain `xr.open_zarr` reads one file and
    warns about nothing (batch writes never change metadata; this also upgrades older stores)."""
    with quiet_consolidation():
        zarr.consolidate_metadata(str(path))


@contextmanager
def quiet_consolidation():
    """Zarr warns, when writing, that consolidated metadata is not yet in the v3 spec; xarray and
    zarr read it, and reading it is what keeps `xr.open_zarr` silent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        yield
