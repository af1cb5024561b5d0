"""vhslab: latent verifiers on diffusion transformers."""

__version__ = "0.1.0"


def load_world(*args, **kwargs):
    """The embedded world (see `vhslab.world.load_world`)."""
    from vhslab.world import load_world as _load

    return _load(*args, **kwargs)
