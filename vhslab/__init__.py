"""vhslab: latent verifiers on diffusion transformers."""

__version__ = "0.1.0"


def load_world(*args, **kwargs):
    """The embedded world (see `vhslab.world.load_world`)."""
    from vhslab.world import load_world as _load

    return _load(*args, **kwargs)


def load_verifier(path=None, *, text: bool = False):
    """A saved LatentVerifier: the shipped production verifier (`text=True`: the shipped text-only
    verifier, the same LLM without visual tokens) or the one saved at `path`."""
    from pathlib import Path

    from vhslab.probes.verifier import LatentVerifier

    if path is None:
        path = Path(__file__).parent / "assets" / ("verifier_text" if text else "verifier")
        if not path.is_dir():
            raise FileNotFoundError(f"no shipped verifier at {path}; train one with `vhslab verifier train --out DIR`")
    return LatentVerifier.from_pretrained(path)
