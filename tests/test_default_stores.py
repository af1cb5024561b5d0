"""The default stores' cache is keyed by content: a store of another version at the plain path is kept and
this version's goes beside it (never the dead end "holds different data ... Use another --out")."""

from __future__ import annotations

import vhslab.data.default_stores as ds_mod
from vhslab.data.extract import extract
from vhslab.data.store import open_zarr
from vhslab.shapes.suites import load_suite
from vhslab.world import load_world


def test_another_versions_store_is_kept_and_ours_goes_beside_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VHSLAB_CACHE", str(tmp_path))
    monkeypatch.setitem(ds_mod.STORES, "tiny", {"prompts": "train", "n_per_prompt": 1, "seed": 5})
    monkeypatch.setattr(ds_mod, "load_suite", lambda name: load_suite(name)[:3])
    monkeypatch.setattr(ds_mod, "SITES", "ae_latent")
    world = load_world()
    plain = tmp_path / "tiny-x1-seed5.zarr"
    # "another version": the same name written with other settings (here another seed)
    extract(world.pipeline, load_suite("train")[:3], plain, n_per_prompt=1, sites="ae_latent", seed=6,
            gen=world.gen_config, model_id="world", progress=False, verify=False)
    before = open_zarr(plain).attrs["content_key"]
    path = ds_mod.default_store("tiny", progress=False)
    assert path != plain and path.name.startswith("tiny-x1-seed5-") and path.is_dir()
    assert open_zarr(plain).attrs["content_key"] == before  # the other version's store is untouched
    assert open_zarr(path).sizes["sample"] == 3
    assert ds_mod.default_store("tiny", progress=False) == path  # found again, not re-extracted elsewhere
