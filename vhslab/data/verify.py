"""Per-sample checksums of a store's rows, and the check that finds lost or damaged chunks.

Every batch writes, beside its data, a CRC32 per (sample, variable) of the values it wrote
(`checksum`, dims sample x checked). Reading a row back and hashing it tells a lost chunk (it
reads as the fill value) or a corrupted one (it does not decode, or decodes to other values)
from data. zarr has no per-chunk checksum of its own that survives a deleted file, hence this.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

CHECKSUM = "checksum"
NOT_CHECKED = ("written", CHECKSUM)


def checked_vars(ds: xr.Dataset) -> list[str]:
    """The sample-dim data variables a checksum covers, in a fixed order."""
    return sorted(str(n) for n, v in ds.data_vars.items() if "sample" in v.dims and n not in NOT_CHECKED)


def row_checksums(ds: xr.Dataset, names: list[str]) -> np.ndarray:
    """(sample, len(names)) uint32: CRC32 of each sample's values of each variable (numpy data)."""
    n = ds.sizes["sample"]
    out = np.zeros((n, len(names)), np.uint32)
    for j, name in enumerate(names):
        values = np.asarray(ds[name].transpose("sample", ...).values)
        for i in range(n):
            out[i, j] = _crc(values[i])
    return out


def _crc(row: np.ndarray) -> int:
    row = np.asarray(row)  # a (sample,) string variable gives bare str rows
    if row.dtype.kind in "OUT":  # strings: their text, not their in-memory layout
        return zlib.crc32("\x1f".join(str(v) for v in np.ravel(row)).encode())
    return zlib.crc32(np.ascontiguousarray(row).tobytes())


@dataclass(frozen=True)
class Damage:
    """A sample chunk of one variable that is lost or damaged, with the chunk files that hold it."""

    variable: str
    chunk: int
    samples: tuple[int, int]  # [start, stop)
    reason: str
    files: tuple[str, ...]

    def __str__(self) -> str:
        where = ", ".join(self.files[:4]) + (f" (+{len(self.files) - 4} more)" if len(self.files) > 4 else "")
        return f"{self.variable} chunk {self.chunk} (samples {self.samples[0]}-{self.samples[1] - 1}): {self.reason} [{where}]"


def chunk_files(path: Path, variable: str, chunk: int) -> tuple[list[str], list[str]]:
    """(all chunk files, missing ones) of `variable` that hold sample chunk `chunk`, store-relative."""
    arr = zarr.open_array(str(path / variable), mode="r")
    grid = [range(-(-s // c)) for s, c in zip(arr.shape[1:], arr.chunks[1:], strict=True)]
    keys = [f"{variable}/{arr.metadata.encode_chunk_key((chunk, *rest))}" for rest in itertools.product(*grid)]
    return keys, [k for k in keys if not (path / k).is_file()]


def verify_store(path: str | Path, ds: xr.Dataset, chunk: int, written: np.ndarray) -> list[Damage]:
    """Every damaged (variable, sample chunk) among the `written` rows (`vhslab.data.store.written_mask`,
    which also survives a damaged flag chunk), read chunk by chunk."""
    path = Path(path)
    names = [str(v) for v in ds["checked"].values]
    damage: list[Damage] = []
    for c in range(-(-ds.sizes["sample"] // chunk)):
        lo, hi = c * chunk, min((c + 1) * chunk, ds.sizes["sample"])
        if not written[lo:hi].any():
            continue
        part = ds.isel(sample=slice(lo, hi))
        stored = None
        if chunk_files(path, CHECKSUM, c)[1]:
            damage.append(_damage(path, CHECKSUM, c, lo, hi, "lost"))
        else:
            try:
                stored = np.asarray(part[CHECKSUM].values)
            except Exception as err:  # any codec error: the checksum chunk itself is damaged
                damage.append(_damage(path, CHECKSUM, c, lo, hi, f"cannot be decoded ({type(err).__name__})"))
        for j, name in enumerate(names):
            try:
                got = row_checksums(part[[name]].load(), [name])[:, 0]
            except Exception as err:
                damage.append(_damage(path, name, c, lo, hi, f"cannot be decoded ({type(err).__name__})"))
                continue
            if stored is not None:
                bad = np.flatnonzero((got != stored[:, j]) & written[lo:hi])
                if bad.size:
                    damage.append(_damage(path, name, c, lo, hi, f"{bad.size} row(s) differ from their checksum"))
    return damage


def _damage(path: Path, name: str, c: int, lo: int, hi: int, reason: str) -> Damage:
    files, missing = chunk_files(path, name, c)
    if missing:
        reason += f"; {len(missing)} chunk file(s) missing"
    return Damage(name, c, (lo, hi), reason, tuple(missing or files))
