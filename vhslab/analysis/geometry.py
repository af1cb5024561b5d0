"""Representation geometry across depth: PCA and UMAP of per-layer mean-pooled hidden states,
coloured by a label, and linear CKA between every pair of sites (blocks, `ae_latent`, `vision`).

Linear CKA (Kornblith et al. 2019) is written here: neither scikit-learn nor the rest of our stack
has it, and it is three lines on centred features:
CKA(X, Y) = ||Yc' Xc||_F^2 / (||Xc' Xc||_F ||Yc' Yc||_F).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

LABELS = ("verdict", "tag", "prompt_color", "found_color", "found_class")


class GeometryError(ValueError):
    """Bad input to a geometry study (unknown site or label, too few rows)."""


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two (sample, feature) matrices with the same rows: 1 for the same representation
    up to rotation and isotropic scale, near 0 for unrelated ones."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise GeometryError(f"CKA needs the same >= 2 rows in both, got {x.shape[0]} and {y.shape[0]}")
    x, y = x - x.mean(0), y - y.mean(0)
    cross = np.linalg.norm(y.T @ x) ** 2
    denom = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denom) if denom > 0 else 0.0


def pooled(store: xr.Dataset, sites: list[str], rows: np.ndarray) -> dict[str, np.ndarray]:
    """{site: (row, channel)} token means of each site."""
    from vhslab.probes.data import site_array
    from vhslab.probes.verifier_train import find_site

    out = {}
    for name in sites:
        arr = site_array(store, find_site(store, name)).isel(sample=rows)
        token_dims = [d for d in arr.dims if d not in ("sample",) and "channel" not in d]
        out[name] = np.asarray(arr.mean(token_dims).values, np.float32)
    return out


def label_values(store: xr.Dataset, label: str, rows: np.ndarray) -> np.ndarray:
    """One string per row: the label (for two-item labels, the first item's)."""
    if label not in LABELS or label not in store:
        raise GeometryError(f"unknown label {label!r}; the store offers {[x for x in LABELS if x in store]}")
    values = store[label].isel(sample=rows).values
    if values.ndim == 2:
        values = values[:, 0]
    return np.array([str(v) for v in values], dtype=object)


def _umap(x: np.ndarray, seed: int) -> np.ndarray:
    """2-D UMAP; torch's thread count is put back afterwards (numba's OpenMP start-up resets it, which
    would make later torch results differ in the last bits from a run without UMAP)."""
    import torch
    import umap as umap_lib

    threads = torch.get_num_threads()
    try:
        return umap_lib.UMAP(n_components=2, random_state=seed, n_jobs=1).fit_transform(x)
    finally:
        torch.set_num_threads(threads)


def geometry(store: xr.Dataset, sites: list[str] | None = None, n: int = 1000, *, labels=("verdict", "found_color"),
             umap: bool = True, seed: int = 0) -> xr.Dataset:
    """PCA (2 components, with explained variance) and UMAP of each site's pooled states on n rows,
    labels per row, and the site x site linear CKA matrix."""
    from sklearn.decomposition import PCA

    from vhslab.probes.verifier_sweep import store_sites

    known = [s for s in store_sites(store) if s != "text"]
    sites = known if not sites else list(sites)
    bad = [s for s in sites if s not in known]
    if bad:
        raise GeometryError(f"sites {bad} are not in the store; it has {', '.join(known)}")
    total = store.sizes["sample"]
    if not (isinstance(n, int) and n >= 3):
        raise GeometryError(f"n must be an integer >= 3, got {n!r}")
    rows = np.sort(np.random.default_rng(seed).choice(total, min(n, total), replace=False))
    for label in labels:
        label_values(store, label, rows[:1])
    feats = pooled(store, sites, rows)
    k = len(sites)
    cka = np.ones((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            cka[i, j] = cka[j, i] = linear_cka(feats[sites[i]], feats[sites[j]])
    pca, ratio, emb = [], [], []
    for s in sites:
        p = PCA(2, random_state=seed).fit(feats[s])
        pca.append(p.transform(feats[s]))
        ratio.append(p.explained_variance_ratio_)
        if umap:
            emb.append(_umap(feats[s], seed))
    data = {"cka": (("site", "site_b"), cka), "pca": (("site", "sample", "component"), np.stack(pca)),
            "pca_variance_ratio": (("site", "component"), np.stack(ratio)),
            "row": (("sample",), rows)}
    if umap:
        data["umap"] = (("site", "sample", "component"), np.stack(emb).astype(np.float32))
    for label in labels:
        data[f"label_{label}"] = (("sample",), label_values(store, label, rows))
    ds = xr.Dataset(data, coords={"site": sites, "site_b": sites, "component": [1, 2]})
    ds.attrs.update({"seed": seed, "n": len(rows), "pooling": "token mean"})
    return ds
