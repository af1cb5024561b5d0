"""Probe targets from a store's labels. Each says where its label comes from (`SOURCES`):

- `verdict`: the evaluator's judgement of the image;
- `prompt_class.j`: the class the prompt asked for in slot j (fully given by the text: a control);
- `found_class.j` (the j-th largest object drawn), `found_color.j`, `found_count.j`, `found_relation.j`,
  `present.j` (the prompted class was found): what the evaluator detected in the image;
- `recon.latent` / `recon.image`: the output latent / decoded image, pooled to a grid.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from vhslab.probes.data import ProbeError, as_strings, grid_pool

ITEM_TARGETS = ("prompt_class", "found_class", "present", "found_color", "found_count", "found_relation")
ALIASES = {"class": "prompt_class", "shape": "found_class", "color": "found_color", "colour": "found_color",
           "count": "found_count", "relation": "found_relation", "position": "found_relation"}
KNOWN = ("verdict", *ITEM_TARGETS, "recon", "recon.latent", "recon.image", *ALIASES)
NEEDS = {
    "verdict": ("verdict",),
    "prompt_class": ("prompt_class",),
    "found_class": ("found_class",),
    "present": ("prompt_class", "found_count"),
    "found_color": ("found_color",),
    "found_count": ("found_count",),
    "found_relation": ("found_relation",),
    "recon.latent": ("ae_latent",),
    "recon.image": ("image",),
}
SOURCES = {"verdict": "evaluator", "prompt_class": "prompt", "found_class": "evaluator", "present": "evaluator",
           "found_color": "evaluator", "found_count": "evaluator", "found_relation": "evaluator",
           "recon.latent": "site ae_latent", "recon.image": "site image"}
SELF_SITES = {"recon.latent": "ae_latent", "recon.image": "image"}  # a site that is its own target


def source_of(target: str) -> str:
    """Where a (canonical) target's label comes from: evaluator, prompt, or a site of the store."""
    return SOURCES.get(target, SOURCES.get(target.partition(".")[0], ""))


@dataclass
class Target:
    """One probe target. `rows`: sample positions used; `y`: labels (classification) or
    (rows, cells, outputs) floats (regression, aligned with grid-pooled features)."""

    name: str
    kind: str  # "binary" | "multiclass" | "regression"
    rows: np.ndarray
    y: np.ndarray
    classes: list[str] = field(default_factory=list)

    @property
    def is_classification(self) -> bool:
        """Whether the target is a class label (not a regression value)."""
        return self.kind != "regression"


def _need(ds: xr.Dataset, target: str, base: str) -> None:
    missing = [v for v in NEEDS[base] if v not in ds]
    if missing:
        raise ProbeError(
            f"target {target!r} needs variable(s) {missing}, which the store lacks; "
            f"its variables: {sorted(map(str, ds.data_vars))}"
        )


def _classification(name: str, labels: np.ndarray, rows: np.ndarray, min_per_class: int) -> Target | None:
    """Keep classes with >= min_per_class samples; None if fewer than two classes remain."""
    labels = labels[rows]
    classes, counts = np.unique(labels, return_counts=True)
    keep = classes[counts >= min_per_class]
    if len(keep) < 2:
        return None
    ok = np.isin(labels, keep)
    y = np.searchsorted(keep, labels[ok])
    return Target(name, "binary" if len(keep) == 2 else "multiclass", rows[ok], y, [str(c) for c in keep])


def _item_target(ds: xr.Dataset, base: str, item: int, min_per_class: int, count_max: int) -> Target | None:
    name = f"{base}.{item}"
    if base == "present":
        cls = as_strings(ds["prompt_class"].isel(item=item))
        found = np.asarray(ds["found_count"].isel(item=item).values)
        return _classification(name, np.where(found >= 1, "yes", "no"), np.flatnonzero(cls != ""), min_per_class)
    if base == "found_count":
        found = np.asarray(ds["found_count"].isel(item=item).values).astype(int)
        labels = np.char.zfill(np.minimum(found, count_max).astype(str), 2)  # sortable "00".."05"
        return _classification(name, labels, np.flatnonzero(found >= 0), min_per_class)
    labels = as_strings(ds[base].isel(item=item))
    return _classification(name, labels, np.flatnonzero(labels != ""), min_per_class)


def _recon(ds: xr.Dataset, which: str, grid: int) -> Target:
    if which == "latent":
        arr = ds["ae_latent"].transpose("sample", "ae_token", "ae_channel").data.astype(np.float32)
    else:
        img = ds["image"].transpose("sample", "pix_y", "pix_x", "rgb")
        n, h, w, c = img.shape
        if h != w:
            raise ProbeError(f"recon.image needs a square image, got {h}x{w}")
        arr = img.data.reshape(n, h * w, c).astype(np.float32) / 255.0
    y = np.asarray(grid_pool(arr, grid), np.float32)
    if not np.isfinite(y).all():
        raise ProbeError(f"NaN/inf values in the reconstruction target recon.{which}")
    return Target(f"recon.{which}", "regression", np.arange(y.shape[0]), y)


def canonical(name: str) -> str:
    """A target name with its alias resolved (color.0 -> found_color.0)."""
    base, _, item = name.strip().partition(".")
    base = ALIASES.get(base, base)
    return f"{base}.{item}" if item else base


def build_targets(
    ds: xr.Dataset, names: list[str], *, grid: int = 4, min_per_class: int = 5, count_max: int = 5
) -> list[Target]:
    """Targets for `names` (e.g. verdict, found_color, found_class, found_count, prompt_class, recon;
    `found_color.1` = item 1 only; the aliases color, shape, count, position, class name the same).

    A per-item name without an item expands to every item with a usable target; samples whose
    label is absent are skipped, as are classes with fewer than `min_per_class` samples.
    `grid` is the side of the pooled grid that reconstruction targets use.
    """
    out: list[Target] = []
    for raw in names:
        name = canonical(raw)
        base, _, item = name.partition(".")
        if name not in KNOWN and base not in ITEM_TARGETS:
            raise ProbeError(f"unknown target {raw!r}; known targets: {', '.join(KNOWN)} (per item: found_color.0, ...)")
        if base == "recon":
            which = item or ("latent" if "ae_latent" in ds else "image")
            if not item and "ae_latent" not in ds and "image" not in ds:
                raise ProbeError("target 'recon' needs variable 'ae_latent' or 'image', which the store lacks")
            _need(ds, raw, f"recon.{which}")
            out.append(_recon(ds, which, grid))
            continue
        _need(ds, raw, base)
        if base == "verdict":
            t = _classification("verdict", np.asarray(ds["verdict"].values).astype(int), np.arange(ds.sizes["sample"]), 1)
            if t is None:
                raise ProbeError("target 'verdict' has a single class in this store")
            out.append(t)
            continue
        n_items = ds.sizes.get("item", 0)
        items = [int(item)] if item else list(range(n_items))
        if item and not 0 <= int(item) < n_items:
            raise ProbeError(f"target {raw!r}: the store has items 0..{n_items - 1}")
        found = [t for i in items if (t := _item_target(ds, base, i, min_per_class, count_max)) is not None]
        if not found:
            message = f"target {raw!r} has no usable samples (needs >= 2 classes with >= {min_per_class} samples each)"
            if len(names) == 1:
                raise ProbeError(message)
            warnings.warn(message + "; skipped", stacklevel=2)  # the other targets still run
        out.extend(found)
    return out
