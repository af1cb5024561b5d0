"""Geometry: linear CKA's known values, PCA/UMAP datasets on a planted store, the figure, errors."""

import numpy as np
import pytest

from vhslab.analysis.geometry import GeometryError, geometry, linear_cka
from vhslab.figures.geometry import plot_geometry
from vhslab.probes.planted import planted_store


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
