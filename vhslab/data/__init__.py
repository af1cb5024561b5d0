"""Activation stores (docs/dataset_spec.md): their spec, writing, opening and verification.

Extraction (`vhslab.data.extract.extract`) and the world's default stores
(`vhslab.data.default_stores.default_store`) are imported from their modules: they load the
diffusion pipeline's libraries, which opening a store does not need."""

from vhslab.data.spec import SPEC_VERSION, SpecError, content_key, validate
from vhslab.data.store import (
    StoreError,
    StoreInputError,
    consolidate,
    create_store,
    open_zarr,
    write_batch,
    written_mask,
)
from vhslab.data.verify import Damage, verify_store

__all__ = [
    "SPEC_VERSION", "Damage", "SpecError", "StoreError", "StoreInputError", "consolidate", "content_key",
    "create_store", "open_zarr", "validate", "verify_store", "write_batch", "written_mask",
]
