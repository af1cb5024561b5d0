"""vhslab: latent verifiers on diffusion transformers."""

__version__ = "0.1.0"
