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
from vhslab.data.verify import CHECKSUM, checked_vars, row_checksums
from vhslab.errors import InputError, MissingError

BIG = ("hidden", "x_t", "x0_hat", "ae_latent", "image", "vision")  # lazily preallocated, chunked per layer/step


class StoreError(RuntimeError):
    """The store at a path is corrupt or partial (a fault)."""


class StoreInputError(StoreError, InputError):
    """The output path is wrong for a store: it holds other data, is no store, or is not writable."""


def create_store(path: str | Path, first: xr.Dataset, n: int, chunk: int, coords: dict, attrs: dict) -> bool:
    """Create the store for `n` samples, shaped like the batch `first`. Atomic: returns False if
    another process created `path` first (the caller then opens it)."""
    path = Path(path)
    remove_stale_temporaries(path)
    data = {}
    encoding = {}
    for name, var in first.data_vars.items():
        shape = (n, *var.shape[1:])
        if name in BIG:
            per = [chunk] + [1 if d in ("step", "layer") else s for d, s in zip(var.dims[1:], shape[1:], strict=True)]
            data[name] = (var.dims, da.zeros(shape, dtype=var.dtype, chunks=tuple(per)))
        else:
            data[name] = (var.dims, np.full(shape, _fill(var.dtype), dtype=object if var.dtype.kind in "UOT" else var.dtype))
            per = [chunk, *shape[1:]]
        # a lost chunk reads as the fill value: NaN, or -1 where -1 is no label; the checksums catch the rest
        encoding[name] = {"chunks": tuple(per), "fill_value": _fill(var.dtype)}
    names = checked_vars(first)
    template = xr.Dataset(data, coords={**first.drop_dims("sample").coords, **coords, "checked": np.array(names, dtype=object)}, attrs=attrs)
    template["written"] = ("sample", np.zeros(n, bool))
    template[CHECKSUM] = (("sample", "checked"), np.zeros((n, len(names)), np.uint32))
    encoding["written"] = {"chunks": (chunk,)}
    encoding[CHECKSUM] = {"chunks": (chunk, len(names))}
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


def _fill(dtype: np.dtype):
    if dtype.kind == "b":
        return False
    if dtype.kind in "UOT":
        return ""
    if dtype.kind == "f":
        return np.nan
    return 0 if dtype == np.uint8 else -1


def remove_stale_temporaries(path: Path) -> None:
    """Remove `.{name}.tmp-{pid}-*` folders that a killed `create_store` of this path left behind
    (only those of processes that are gone: ours are named after our pid)."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-")[0])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            continue


def open_zarr(path: str | Path, only_written: bool = False) -> xr.Dataset:
    """Open a store's zarr folder lazily (dask) and validate it against the spec; raise `StoreError` naming
    what is wrong. The checked store for probing and verifiers is `vhslab.probes.open_store`."""
    path = Path(path)
    if not path.exists():
        raise MissingError(f"no store at {path}")
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
    """The `written` flags as a numpy bool array. A lost flag chunk reads as not written (its
    batch is written again); an undecodable one too, when the store's chunking is known."""
    try:
        return np.asarray(ds["written"].values, dtype=bool)
    except Exception as err:
        chunk = int(ds.attrs.get("sample_chunk", 0))
        if not chunk:
            raise StoreError(f"{path}: the `written` flags cannot be read ({type(err).__name__}: {err})") from err
    out = np.zeros(ds.sizes["sample"], bool)
    for lo in range(0, len(out), chunk):
        try:
            out[lo : lo + chunk] = np.asarray(ds["written"].isel(sample=slice(lo, lo + chunk)).values, bool)
        except Exception:  # damaged: these rows count as unwritten and are generated again
            out[lo : lo + chunk] = False
    return out


def write_batch(path: str | Path, batch: xr.Dataset, start: int) -> None:
    """Write `batch` (sample-dim variables only) and its row checksums at samples [start, start + len),
    then mark it written. Non-finite values are refused before anything is written."""
    for name, var in batch.data_vars.items():
        if var.dtype.kind == "f" and not np.isfinite(var.values).all():
            raise StoreError(
                f"samples {start}-{start + batch.sizes['sample'] - 1}: {name} holds NaN/Inf values "
                "(a diverged generation or bad settings, e.g. a NaN guidance scale); nothing of this batch was written"
            )
    region = {"sample": slice(start, start + batch.sizes["sample"])}
    data = batch.drop_vars([c for c in batch.coords])
    names = checked_vars(data)
    data[CHECKSUM] = (("sample", "checked"), row_checksums(data, names))
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
