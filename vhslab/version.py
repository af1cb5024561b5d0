"""The package's version, in a module of its own so that any module may read it without importing `vhslab`."""

__version__ = "0.1.0"

__all__ = ["__version__"]
