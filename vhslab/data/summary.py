"""A store at a glance: what `vhslab inspect` prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vhslab.data.store import open_zarr, written_mask
from vhslab.data.verify import verify_store


def summarize_store(path: Path, verify: bool = False) -> dict[str, Any]:
    """A short summary of a store (reads only the small label variables; `verify` reads it all
    and lists lost or damaged chunks)."""
    ds = open_zarr(path)
    written = written_mask(ds, path)
    verdict = ds["verdict"].values[written]
    labelled = verdict >= 0  # -1: a lost verdict chunk
    tags = ds["tag"].values[written][labelled]
    verdict = verdict[labelled]
    nbytes = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    out = {
        "path": str(path),
        "pipeline": ds.attrs.get("pipeline", ""),
        "model_id": ds.attrs["model_id"],
        "sites": ds.attrs["sites"],
        "dtype": ds.attrs["dtype"],
        "evaluator": ds.attrs.get("evaluator", ""),
        "dims": {k: int(v) for k, v in ds.sizes.items()},
        "samples": int(ds.sizes["sample"]),
        "written": int(written.sum()),
        "written_without_verdict": int((~labelled).sum()),
        "accuracy": float(verdict.mean()) if verdict.size else None,
        "accuracy_by_tag": {str(t): float(verdict[tags == t].mean()) for t in np.unique(tags)},
        "disk_mb": round(nbytes / 1e6, 3),
        "content_key": ds.attrs["content_key"],
    }
    if verify:
        out["damaged"] = [str(d) for d in verify_store(path, ds, int(ds.attrs["sample_chunk"]), written)]
    return out


__all__ = ["summarize_store"]
