"""Geometry: linear CKA's known values, PCA/UMAP datasets on a planted store, the figure, errors."""

import numpy as np
import pytest

from vhslab.analysis.geometry import GeometryError, cka_matrix, geometry, linear_cka
from vhslab.figures.geometry import plot_geometry
from vhslab.testing.planted import planted_store


def test_linear_cka_known_values():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 8))
    q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q + 5.0) == pytest.approx(1.0)  # rotation, isotropic scale and shift
    assert linear_cka(x, rng.standard_normal((500, 8))) < 0.05
    half = np.concatenate([x[:, :4], rng.standard_normal((500, 4))], 1)
    assert 0.3 < linear_cka(x, half) < 0.7
    with pytest.raises(GeometryError, match="same >= 2 rows"):
        linear_cka(x, x[:10])


@pytest.mark.slow  # >= 15 s on 2 cores: the full suite (CI) runs it
def test_geometry_dataset_on_a_planted_store_and_its_figure():
    import torch

    store = planted_store(200, n_layers=4, signal_layer=2, strength=3.0, seed=1)
    threads = torch.get_num_threads()
    ds = geometry(store, ["block.0", "block.2", "block.3", "ae_latent"], 120, labels=("verdict", "found_color"), umap=True)
    assert torch.get_num_threads() == threads  # UMAP (numba) must not leave torch on another thread count
    cka = ds["cka"].values
    assert cka.shape == (4, 4) and np.allclose(np.diag(cka), 1) and np.allclose(cka, cka.T)
    assert ds["pca"].shape == (4, 120, 2) and ds["umap"].shape == (4, 120, 2)
    assert (ds["pca_variance_ratio"].values[:, 0] >= ds["pca_variance_ratio"].values[:, 1]).all()
    # colour is planted in block 2 only: there the PCA plane is organised by colour, in block 0 it is not
    colour = ds["label_found_color"].values

    def r2(xy):
        between = sum((colour == c).sum() * np.sum((xy[colour == c].mean(0) - xy.mean(0)) ** 2) for c in set(colour))
        return between / np.sum((xy - xy.mean(0)) ** 2)

    assert r2(ds["pca"].sel(site="block.2").values) > 0.5 > 0.25 > r2(ds["pca"].sel(site="block.0").values)
    fig = plot_geometry(ds, "found_color", "pca", ["block.0", "block.2"])
    assert len(fig.axes) >= 3


def test_geometry_errors():
    store = planted_store(40, n_layers=2, seed=2)
    with pytest.raises(GeometryError, match=r"block\.9"):
        geometry(store, ["block.9"], 10, umap=False)
    with pytest.raises(GeometryError, match="unknown label"):
        geometry(store, ["block.0"], 10, labels=("mood",), umap=False)
    with pytest.raises(GeometryError, match=">= 3"):
        geometry(store, ["block.0"], 2, umap=False)


def test_weighted_cka_is_cka_of_the_repeated_rows_and_intervals_hold_the_estimate():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((60, 5)), rng.standard_normal((60, 7))
    y[:, :3] += x[:, :3]
    m = cka_matrix([x, y])
    assert m[0, 1] == pytest.approx(linear_cka(x, y)) and np.allclose(np.diag(m), 1)
    w = rng.integers(0, 3, 60)
    rep = np.repeat(np.arange(60), w)
    assert cka_matrix([x, y], w)[0, 1] == pytest.approx(linear_cka(x[rep], y[rep]))
    store = planted_store(200, n_layers=4, signal_layer=2, strength=3.0, seed=1)
    ds = geometry(store, ["block.0", "block.2", "ae_latent"], 120, umap=False, n_boot=100)
    lo, hi, cka = ds["cka_lower"].values, ds["cka_upper"].values, ds["cka"].values
    assert (lo <= cka + 1e-12).all() and (cka <= hi + 1e-12).all() and (hi - lo)[0, 1] > 0
    assert "cka_random_dit" not in ds and ds.attrs["n_boot"] == 100


@pytest.fixture(scope="module")
def small_world_store(tmp_path_factory, world):
    from vhslab.data.extract import extract
    from vhslab.shapes.suites import load_suite

    prompts = list({s.prompt: s for s in load_suite("geneval-shapes") if s.tag in ("colors", "single_object")}.values())[:12]
    path = tmp_path_factory.mktemp("geometry") / "small.zarr"
    extract(world.pipeline, prompts, path, n_per_prompt=4, sites="block.0,block.1,block.11,ae_latent", seed=1,
            gen=world.gen_config, model_id="world", progress=False)
    from vhslab.probes import open_store

    return open_store(path)


def test_random_dit_control_differs_from_the_trained_dit(small_world_store, world):
    ds = geometry(small_world_store, None, 48, umap=False, n_boot=100, world=world, control_n=40,
                  labels=("verdict",))
    assert ds.attrs["control_n"] == 40 and list(ds.site.values) == ["block.0", "block.1", "block.11", "ae_latent"]
    rnd = ds["cka_random_dit"].values
    assert np.isnan(rnd[3]).all() and np.allclose(np.diag(rnd)[:3], 1)
    for var in ("cka", "cka_random_dit", "cka_minus_random"):
        value, lo, hi = (ds[v].values[:3, :3] for v in (var, f"{var}_lower", f"{var}_upper"))
        assert (lo <= value + 1e-9).all() and (value <= hi + 1e-9).all(), var
    # a random DiT's first two blocks are nearly the same representation (its residual stream barely moves);
    # the trained DiT's are not: the paired difference's interval lies below 0
    assert ds["cka_minus_random_upper"].sel(site="block.0", site_b="block.1") < 0
    assert ds["cka_random_dit"].sel(site="block.0", site_b="block.1") > 0.9 > ds["cka"].sel(site="block.0", site_b="block.1")
    again = geometry(small_world_store, ["block.0", "block.11"], 48, umap=False, n_boot=10, world=world, control_n=40,
                     labels=("verdict",))
    assert again["cka_random_dit"].sel(site="block.0", site_b="block.11") == pytest.approx(
        float(ds["cka_random_dit"].sel(site="block.0", site_b="block.11")))  # seeded: the same random DiT
    with pytest.raises(GeometryError, match="turn the control off"):
        geometry(planted_store(40, n_layers=2, seed=2), ["block.0", "block.1"], 10, umap=False, world=world)
