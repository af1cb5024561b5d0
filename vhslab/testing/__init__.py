"""Test fixtures as a public module (as numpy.testing and xarray.testing): planted stores with a
known signal (here) and tiny real-class models (`vhslab.testing.tiny`, imported from there: it loads
diffusers and transformers), for tests and benchmarks."""

from vhslab.testing.planted import planted_steps_store, planted_store

__all__ = ["planted_steps_store", "planted_store"]
