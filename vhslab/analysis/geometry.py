"""Representation geometry across depth: PCA and UMAP of per-layer mean-pooled hidden states,
coloured by a label, and linear CKA between every pair of sites (blocks, `ae_latent`, `vision`) with a
cluster-bootstrap interval (prompt meanings resampled) and, as a control, the same CKA for a randomly
initialised DiT of the same shape run on the same prompts and noise (what depth alone gives: a random
network's blocks are also similar to their neighbours).

Linear CKA (Kornblith et al. 2019) is written here: neither scikit-learn nor the rest of our stack
has it, and it is three lines on centred features:
CKA(X, Y) = ||Yc' Xc||_F^2 / (||Xc' Xc||_F ||Yc' Yc||_F).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from vhslab.errors import InputError
from vhslab.figures.geometry import plot_geometry
from vhslab.pipeline import weights_hash
from vhslab.probes.data import as_strings, site_array
from vhslab.search.generation import initial_noise
from vhslab.stats import cluster_draws
from vhslab.trace.site import Site, find_site, find_transformer, store_sites
from vhslab.trace.trace import trace

LABELS = ("verdict", "tag", "prompt_color", "found_color", "found_class")


class GeometryError(InputError):
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


def cka_matrix(feats: list[np.ndarray], weights: np.ndarray | None = None) -> np.ndarray:
    """(site, site) linear CKA of (row, feature) matrices with the same rows; `weights` (row
    multiplicities, e.g. one bootstrap draw) give exactly the CKA of the rows repeated that often."""
    w = np.ones(len(feats[0])) if weights is None else np.asarray(weights, np.float64)
    keep = w > 0
    w = w[keep] / w[keep].sum()
    centred = []
    for x in feats:
        x = np.asarray(x, np.float64)[keep]
        centred.append((x - w @ x) * np.sqrt(w)[:, None])
    norms = [np.linalg.norm(a.T @ a) for a in centred]
    k = len(feats)
    out = np.ones((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            denom = norms[i] * norms[j]
            out[i, j] = out[j, i] = np.linalg.norm(centred[j].T @ centred[i]) ** 2 / denom if denom > 0 else 0.0
    return out


def cka_bootstrap(feats: list[np.ndarray], clusters, n_boot: int = 200, seed: int = 0) -> np.ndarray:
    """(n_boot, site, site) CKA on cluster-bootstrap draws of the rows (whole `clusters` resampled)."""
    mult, g = cluster_draws(np.asarray(clusters), n_boot, seed)
    return np.stack([cka_matrix(feats, m[g]) for m in mult])


def spread_interval(reps: np.ndarray, point: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """95% interval of `point` from bootstrap replicates' spread around their own mean. A draw repeats
    rows, and repeated rows raise CKA (near 0 most: unrelated sites look related), so the replicates
    sit above the estimate and their plain percentiles can miss it; their spread is what they measure."""
    centred = reps - reps.mean(0)
    return (point + np.percentile(centred, (1 - level) / 2 * 100, 0),
            point + np.percentile(centred, (1 + level) / 2 * 100, 0))


def check_control(world, store: xr.Dataset, sites: list[str]) -> list[str]:
    """The block sites the random-DiT control covers, or a clear error (before any compute) if it cannot run."""
    blocks = [s for s in sites if Site.parse(s).is_block]
    if len(blocks) < 2:
        raise GeometryError(f"the random-DiT control needs at least two block sites, got {sites}")
    here, stored = weights_hash(world.pipeline), str(store.attrs.get("generator", "")).rpartition("-")[2]
    if stored != here:  # weights only: the config hash also holds the folder the model was loaded from
        raise GeometryError(f"the random-DiT control regenerates the store's rows with the world's generator (weights "
                            f"{here}); this store holds generator {store.attrs.get('generator')!r}'s states: turn the control off")
    return blocks


def random_dit_pooled(world, store: xr.Dataset, rows: np.ndarray, sites: list[str], seed: int = 0,
                      batch_size: int = 16) -> dict[str, np.ndarray]:
    """{block site: (row, channel)} token means of a randomly initialised DiT of the world's shape (seeded),
    run on the store rows' prompts and noise seeds, captured as the store's extraction does. The store must
    come from the world's generator (its rows are regenerated)."""
    import torch

    pipe = world.pipeline
    blocks = check_control(world, store, sites)
    dit = find_transformer(pipe)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        rnd = type(dit).from_config(dit.config).eval()
    if rnd.dtype != dit.dtype:
        rnd = rnd.to(dit.dtype)
    rpipe = type(pipe)(**{**pipe.components, "transformer": rnd})
    rpipe.set_progress_bar_config(disable=True)
    gen = world.gen_config.resolve(pipe)
    prompts, seeds = as_strings(store["prompt"].values[rows]), store["seed"].values[rows]
    out = {s: [] for s in blocks}
    for lo in range(0, len(rows), batch_size):
        part = slice(lo, lo + batch_size)
        noise = initial_noise(pipe, [int(x) for x in seeds[part]], gen)
        with torch.no_grad(), trace(rpipe, blocks, calls=gen.steps, dtype=torch.float32) as cap:
            rpipe(prompt=list(prompts[part]), latents=noise, output_type="latent", **gen.call_kwargs(pipe))
        for s in blocks:
            out[s].append(cap.last(s).mean(1).numpy())
    return {s: np.concatenate(v) for s, v in out.items()}


def pooled(store: xr.Dataset, sites: list[str], rows: np.ndarray) -> dict[str, np.ndarray]:
    """{site: (row, channel)} token means of each site."""
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


def _clusters(store: xr.Dataset, rows: np.ndarray) -> np.ndarray:
    """What a bootstrap resamples: prompt meanings where the store has them, else prompts."""
    name = "meaning" if "meaning" in store else "prompt"
    return np.array([str(v) for v in store[name].values[rows]], dtype=object)


def geometry(store: xr.Dataset, sites: list[str] | None = None, n: int = 1000, *, labels=("verdict", "found_color"),
             umap: bool = True, seed: int = 0, n_boot: int = 200, world=None, control_n: int = 64) -> xr.Dataset:
    """PCA (2 components, with explained variance) and UMAP of each site's pooled states on n rows,
    labels per row, and the site x site linear CKA matrix with its 95% cluster-bootstrap interval
    (`cka_lower`, `cka_upper`). With `world` (the store's generator), the control: `cka_random_dit`
    (block sites only) on `control_n` of the rows for a randomly initialised DiT of the same shape
    (seed `seed`), with its interval and the paired difference trained - random on the same rows."""
    from sklearn.decomposition import PCA

    known = [str(s) for s in store_sites(store)]
    sites = known if not sites else list(sites)
    bad = [s for s in sites if s not in known]
    if bad:
        raise GeometryError(f"sites {bad} are not in the store; it has {', '.join(known)}")
    total = store.sizes["sample"]
    if not (isinstance(n, int) and n >= 3):
        raise GeometryError(f"n must be an integer >= 3, got {n!r}")
    if not (isinstance(n_boot, int) and n_boot >= 1) or (world is not None and not (isinstance(control_n, int) and control_n >= 3)):
        raise GeometryError(f"n_boot must be >= 1 and control_n >= 3, got {n_boot!r} and {control_n!r}")
    rows = np.sort(np.random.default_rng(seed).choice(total, min(n, total), replace=False))
    for label in labels:
        label_values(store, label, rows[:1])
    if world is not None:
        check_control(world, store, sites)
    feats = pooled(store, sites, rows)
    cka = cka_matrix([feats[s] for s in sites])
    reps = cka_bootstrap([feats[s] for s in sites], _clusters(store, rows), n_boot, seed)
    pca, ratio, emb = [], [], []
    for s in sites:
        p = PCA(2, random_state=seed).fit(feats[s])
        pca.append(p.transform(feats[s]))
        ratio.append(p.explained_variance_ratio_)
        if umap:
            emb.append(_umap(feats[s], seed))
    pair = ("site", "site_b")
    lower, upper = spread_interval(reps, cka)
    data = {"cka": (pair, cka), "cka_lower": (pair, lower), "cka_upper": (pair, upper),
            "pca": (("site", "sample", "component"), np.stack(pca)),
            "pca_variance_ratio": (("site", "component"), np.stack(ratio)), "row": (("sample",), rows)}
    if umap:
        data["umap"] = (("site", "sample", "component"), np.stack(emb).astype(np.float32))
    for label in labels:
        data[f"label_{label}"] = (("sample",), label_values(store, label, rows))
    attrs = {"seed": seed, "n": len(rows), "pooling": "token mean", "n_boot": n_boot,
             "interval": f"95%, the spread of {n_boot} bootstrap draws of the {'prompt meanings' if 'meaning' in store else 'prompts'} "
                         "around their mean, centred on the estimate (see spread_interval)"}
    if world is not None:
        data.update(_control(world, store, rows, sites, feats, min(control_n, len(rows)), n_boot, seed))
        attrs.update({"control": "randomly initialised DiT of the same shape, same prompts and noise", "control_seed": seed,
                      "control_n": min(control_n, len(rows))})
    index = [Site.parse(s).index if Site.parse(s).is_block else -1 for s in sites]  # figures get ints, not names
    ds = xr.Dataset(data, coords={"site": sites, "site_b": sites, "component": [1, 2], "site_block": ("site", index)})
    ds.attrs.update(attrs)
    return ds


def _control(world, store, rows, sites, feats, control_n, n_boot, seed) -> dict:
    """The random-DiT CKA (NaN for non-block sites), its interval, and trained - random on the same rows."""
    pick = np.sort(np.random.default_rng([seed, 7]).choice(len(rows), control_n, replace=False))
    blocks = [s for s in sites if Site.parse(s).is_block]
    rnd = random_dit_pooled(world, store, rows[pick], blocks, seed)
    idx = [sites.index(b) for b in blocks]
    clusters = _clusters(store, rows[pick])
    r_reps = cka_bootstrap([rnd[b] for b in blocks], clusters, n_boot, seed)
    t_reps = cka_bootstrap([feats[b][pick] for b in blocks], clusters, n_boot, seed)  # same draws: paired
    r_cka = cka_matrix([rnd[b] for b in blocks])
    diff = cka_matrix([feats[b][pick] for b in blocks]) - r_cka
    out = {}
    for name, point, reps in (("cka_random_dit", r_cka, r_reps), ("cka_minus_random", diff, t_reps - r_reps)):
        for suffix, sub in zip(("", "_lower", "_upper"), (point, *spread_interval(reps, point)), strict=True):
            full = np.full((len(sites), len(sites)), np.nan)
            full[np.ix_(idx, idx)] = sub
            out[name + suffix] = (("site", "site_b"), full)
    return out


@dataclass
class GeometryResult:
    """What `geometry_study` computed: the geometry dataset `ds`, the label points are coloured by and the
    embedding drawn (`label`, `umap`); `to_json()` is what `vhslab geometry --json` prints, `plot()` the
    CKA heatmap and the embeddings of a few sites."""

    ds: xr.Dataset
    label: str = "verdict"
    umap: bool = True

    def to_json(self) -> dict:
        """The sites, the CKA matrix with its intervals, PCA explained variance and (with the control) the
        random DiT's CKA and the trained - random difference over the block sites, rounded to 3 places."""
        ds, names = self.ds, self.sites()
        result = {"n": ds.attrs["n"], "sites": names, "interval": ds.attrs["interval"], **_pairs(ds, names, "cka"),
                  "pca_variance_ratio": {s: [round(float(x), 3) for x in ds["pca_variance_ratio"].sel(site=s).values]
                                         for s in names}}
        if "cka_random_dit" in ds:
            blocks = [s for s in names if Site.parse(s).is_block]
            sub = ds.sel(site=blocks, site_b=blocks)
            result["random_dit"] = {"n": ds.attrs["control_n"], "seed": ds.attrs["control_seed"], "what": ds.attrs["control"],
                                    **_pairs(sub, blocks, "cka_random_dit"), **_pairs(sub, blocks, "cka_minus_random")}
        return result

    def sites(self) -> list[str]:
        """The dataset's sites, as strings."""
        return [str(s) for s in self.ds.site.values]

    def plot(self):
        """The CKA heatmap and the embeddings of the first, middle block, `ae_latent` and `vision` (those
        present; else the first three sites) (`vhslab.figures.geometry.plot_geometry`)."""
        names = self.sites()
        wanted = (str(Site.block(0)), str(Site.block(len(names) // 2)), "ae_latent", "vision")
        shown = [s for s in names if s in wanted] or names[:3]
        return plot_geometry(self.ds, self.label, "umap" if self.umap else "pca", shown)


def _pairs(ds, names: list[str], var: str) -> dict:
    """{var: {a: {b: value}}, var_ci: {a: {b: [lower, upper]}}} of a (site, site_b) matrix and its interval."""
    value, lo, hi = (ds[v].values for v in (var, f"{var}_lower", f"{var}_upper"))
    return {var: {a: {b: round(float(value[i, j]), 3) for j, b in enumerate(names)} for i, a in enumerate(names)},
            f"{var}_ci": {a: {b: [round(float(lo[i, j]), 3), round(float(hi[i, j]), 3)] for j, b in enumerate(names)}
                          for i, a in enumerate(names)}}


def geometry_study(store: xr.Dataset, sites: list[str] | None = None, n: int = 1000, label: str = "verdict", *,
                   umap: bool = True, seed: int = 0, n_boot: int = 200, world=None, control_n: int = 64) -> GeometryResult:
    """`vhslab geometry`: `geometry` of `store` with points labelled by verdict and `label`, the random-DiT
    control when `world` is given."""
    ds = geometry(store, sites, n, labels=tuple(dict.fromkeys(["verdict", label])), umap=umap, seed=seed, n_boot=n_boot,
                  world=world, control_n=control_n)
    return GeometryResult(ds, label, umap)
