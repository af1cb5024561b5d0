"""vhslab: latent verifiers on diffusion transformers."""

__version__ = "0.1.0"


def load_world(*args, **kwargs):
    """The embedded world (see `vhslab.world.load_world`)."""
    from vhslab.world import load_world as _load

    return _load(*args, **kwargs)


def load_verifier(path=None, *, kind: str | None = None):
    """A saved LatentVerifier: a shipped one by `kind` (`vhs`, the default: the production verifier on
    block 10; `text`: the same LLM without visual tokens; `vision`: the standard decode + CLIP path;
    `ae`: on the autoencoder latent) or the one saved at `path`, which must then be of `kind` if given
    (a clear error otherwise, before anything is loaded)."""
    from pathlib import Path

    from vhslab.verifier.model import LatentVerifier

    shipped = {"vhs": "verifier", "text": "verifier_text", "vision": "verifier_vision", "ae": "verifier_ae"}
    if kind is not None and kind not in shipped:
        raise ValueError(f"unknown verifier kind {kind!r}; kinds: {', '.join(shipped)}")
    if path is None:
        path = Path(__file__).parent / "assets" / shipped[kind or "vhs"]
        if not path.is_dir():
            raise FileNotFoundError(f"no shipped verifier at {path}; train one with `vhslab verifier train --out DIR`")
    return LatentVerifier.from_pretrained(path, kind=kind)
