"""Reading an activation store for probing: checks, sites, and pooled features of one site at a time."""

from __future__ import annotations

import warnings
from pathlib import Path

import dask
import numpy as np
import xarray as xr

from vhslab.data.spec import SpecError, validate
from vhslab.data.store import StoreError, open_zarr, written_mask
from vhslab.errors import InputError
from vhslab.trace.site import Site


class ProbeError(InputError):
    """Bad input to a probe sweep (unknown target, missing layer or variable, NaNs...)."""


def open_store(path: str | Path, allow_incomplete: bool = False, steps: bool = False) -> xr.Dataset:
    """Open a store lazily (dask) via `vhslab.data.store` and check it. A store whose extraction did not
    finish is refused unless `allow_incomplete` (then only its `written` rows are kept, with a warning, and
    every result rests on those: their count is `ds.sizes["sample"]`). A multi-step store keeps its steps with
    `steps`, else it is cut to its last step (`check_store`)."""
    try:
        ds = open_zarr(path)
    except (StoreError, FileNotFoundError) as exc:
        raise ProbeError(str(exc)) from exc
    if "written" in ds:
        written = written_mask(ds)
        if not written.all():
            what = f"{path}: its extraction did not finish ({int(written.sum())} of {written.size} samples written)"
            if not allow_incomplete:
                raise ProbeError(f"{what}; rerun `vhslab extract` with the same arguments to finish it, or pass "
                                 "--allow-incomplete to use the written samples only")
            warnings.warn(f"{what}: results rest on the {int(written.sum())} written samples", stacklevel=2)
    return check_store(ds, validated=True, steps=steps)


def check_store(ds: xr.Dataset, validated: bool = False, steps: bool = False) -> xr.Dataset:
    """Validate against the dataset spec (`vhslab.data.spec.validate`), then what probing needs. A
    multi-step store is cut to its last step unless `steps` (then it keeps every step)."""
    if not validated:
        try:
            validate(ds)
        except SpecError as exc:
            raise ProbeError(str(exc)) from exc
    for name in ("prompt", "tag"):
        if name not in ds.coords and name not in ds:
            raise ProbeError(f"the store lacks the coord {name!r} (needed to split by prompt)")
    if "sample" not in ds.dims:
        raise ProbeError("the store has no 'sample' dim")
    if "step" in ds.dims and not steps:  # multi-step stores: probe the last step
        ds = step_view(ds, int(ds["step"].values[-1]))
    if "written" in ds:
        keep = written_mask(ds)
        if not keep.any():
            raise ProbeError("no sample of the store is written")
        if not keep.all():
            ds = ds.isel(sample=np.flatnonzero(keep))
    if "verdict" in ds:
        try:
            lost = int((np.asarray(ds["verdict"].values) < 0).sum())
        except Exception as err:
            raise StoreDamaged(f"the verdict labels cannot be read ({type(err).__name__}); {REPAIR}") from None
        if lost:
            raise StoreDamaged(f"{lost} written samples have no verdict (a lost chunk); {REPAIR}")
    return ds


def step_view(ds: xr.Dataset, step: int) -> xr.Dataset:
    """A multi-step store at one stored step as a one-step store: `hidden` (sample, layer, token, channel),
    without the step-only variables x_t and x0_hat (their sites exist only at a step) and the step's scalar
    coords, so its site `block.k` is `block.k@step<step>` of the store."""
    view = ds.sel(step=step)
    return view.drop_vars([v for v in ("x_t", "x0_hat", "step", "sigma", "timestep") if v in view.variables])


REPAIR = "`vhslab inspect STORE --verify` names the damaged chunks and `vhslab extract` with the store's arguments rewrites them"


class StoreDamaged(RuntimeError):
    """The store's data cannot be read as written (a fault, not bad input)."""


def token_dims(da: xr.DataArray) -> tuple[str, str]:
    """The names of a site array's token and channel dims (`token`/`channel`, or ones ending so)."""
    tok = "token" if "token" in da.dims else next(d for d in da.dims if d.endswith("token"))
    ch = "channel" if "channel" in da.dims else next(d for d in da.dims if d.endswith("channel"))
    return tok, ch


def as_strings(values) -> np.ndarray:
    """Any array of labels (a DataArray or values, any str or object dtype) as a numpy str array of its shape."""
    arr = np.asarray(getattr(values, "values", values))
    return np.array([str(v) for v in arr.ravel()]).reshape(arr.shape)


def grid_pool(x, grid: int):
    """(sample, token, channel) row-major square token grid -> (sample, g*g, channel) block means.

    Works lazily on dask arrays as well as on numpy arrays; g = min(grid, side).
    """
    n, t, c = x.shape
    side = round(t**0.5)
    if side * side != t:
        raise ProbeError(f"{t} tokens are not a square grid; cannot pool to {grid}x{grid}")
    g = min(grid, side)
    f = side // g
    cut = f * g  # drop a ragged border when the side is not a multiple of the grid
    x = x.reshape(n, side, side, c)[:, :cut, :cut]
    return x.reshape(n, g, f, g, f, c).mean(axis=(2, 4)).reshape(n, g * g, c)


def site_array(ds: xr.DataArray | xr.Dataset, site: Site) -> xr.DataArray:
    """The lazy (sample, token, channel) array of one site; at a step of a multi-step store (`block.k@stepN`,
    `x_t@stepN`, `x0_hat@stepN`) that step's slice."""
    at = {"step": site.step} if site.step is not None and "step" in ds.dims else {}
    if site.is_block:
        return ds["hidden"].sel(layer=site.index, **at)
    return ds[site.kind if at else str(site)].sel(**at)


def site_features(ds: xr.Dataset, site: Site, grids: tuple[int, ...] = ()) -> dict:
    """Read one site once: {"mean": (sample, channel)} plus, per g in `grids`, {g: (sample, g*g, channel)}
    token features mean-pooled to a g x g grid. Raises ProbeError on non-finite values."""
    arr = site_array(ds, site)
    tok, ch = token_dims(arr)
    data = arr.transpose("sample", tok, ch).data.astype(np.float32)  # dask: one site, chunk by chunk
    keys = ["mean", *dict.fromkeys(g for g in grids if g)]
    lazy = [data.mean(axis=1)] + [grid_pool(data, g) for g in keys[1:]]
    try:
        computed = dask.compute(*lazy)
    except Exception as err:  # a codec error: a damaged chunk file
        raise StoreDamaged(f"site {site} cannot be read ({type(err).__name__}); {REPAIR}") from None
    feats = {k: np.asarray(v, np.float32) for k, v in zip(keys, computed, strict=True)}
    bad = ~np.isfinite(feats["mean"]).all(axis=1)
    if bad.any():
        ids = np.asarray(ds["sample_id"].values)[bad][:5] if "sample_id" in ds.coords else np.flatnonzero(bad)[:5]
        raise StoreDamaged(
            f"{int(bad.sum())} sample(s) have NaN/inf features at site {site} "
            f"(sample_id e.g. {[int(i) for i in ids]}: a lost chunk reads as NaN); {REPAIR}"
        )
    return feats


def site_statistics(ds: xr.Dataset, site: Site, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and variance of a site over samples (`rows`, default all) and tokens, computed
    chunk by chunk (dask), so memory does not grow with the store: a verifier's normalisation."""
    arr = site_array(ds, site)
    if rows is not None:
        arr = arr.isel(sample=np.asarray(rows))
    tok, ch = token_dims(arr)
    data = arr.transpose("sample", tok, ch).data.astype(np.float64)
    mean, sq = dask.compute(data.mean(axis=(0, 1)), (data**2).mean(axis=(0, 1)))
    mean, sq = np.asarray(mean), np.asarray(sq)
    return mean.astype(np.float32), np.maximum(sq - mean**2, 0).astype(np.float32)
