"""What a verifier command loads: a saved or shipped verifier, the LLM it wraps, the stores it reads."""

from __future__ import annotations

from pathlib import Path

from vhslab.data.default_stores import default_store
from vhslab.errors import InputError, MissingError
from vhslab.probes import open_store
from vhslab.schemas import read_json
from vhslab.verifier.model import LatentVerifier
from vhslab.world import load_world
from vhslab.world.llm_train import load_tokenizer

ASSETS = Path(__file__).parents[1] / "assets"
SHIPPED = {"vhs": "verifier", "text": "verifier_text", "vision": "verifier_vision", "ae": "verifier_ae"}
RECIPE_RUNS = ASSETS / "verifier_runs"  # the shipped verifier's recipe: its training runs (other seeds)


def load_verifier(path=None, *, kind: str | None = None) -> LatentVerifier:
    """A saved LatentVerifier: a shipped one by `kind` (`vhs`, the default: the production verifier on
    block 10; `text`: the same LLM without visual tokens; `vision`: the standard decode + CLIP path;
    `ae`: on the autoencoder latent) or the one saved at `path`, which must then be of `kind` if given
    (a clear error otherwise, before anything is loaded)."""
    if kind is not None and kind not in SHIPPED:
        raise InputError(f"unknown verifier kind {kind!r}; kinds: {', '.join(SHIPPED)}")
    if path is None:
        path = ASSETS / SHIPPED[kind or "vhs"]
        if not path.is_dir():
            raise MissingError(f"no shipped verifier at {path}; train one with `vhslab verifier train --out DIR`")
    return LatentVerifier.from_pretrained(path, kind=kind)


def named_verifier(name: str, kind: str | None = None) -> LatentVerifier:
    """`load_verifier` of a command's verifier argument: 'default' (the shipped one of `kind`) or a folder."""
    return load_verifier(None if name == "default" else name, kind=kind)


def store_or_default(path: Path | None, name: str, progress: bool = True, option: str = "--data",
                     allow_incomplete: bool = False):
    """The store at `path` (or the world's default store `name`, extracted on first use); an unusable one
    is named by `option`."""
    try:
        return open_store(path if path is not None else default_store(name, progress), allow_incomplete=allow_incomplete)
    except ValueError as err:
        raise InputError(f"{option} {path if path is not None else name}: {err}") from None


def folder_tokenizer(folder: str | Path):
    """A model folder's tokenizer. A bare `tokenizers` one (the world's word-level tokenizer, saved with
    tokenizer_class TokenizersBackend) loads as saved: AutoTokenizer would follow config.json's
    model_type (qwen2) and rebuild a byte-level BPE from its vocabulary, which maps words to wrong ids."""
    from transformers import AutoTokenizer

    config = Path(folder) / "tokenizer_config.json"
    raw = read_json(config) if config.is_file() else {}
    cls = raw.get("tokenizer_class") if isinstance(raw, dict) else None
    if cls in ("TokenizersBackend", "PreTrainedTokenizerFast"):
        return load_tokenizer(folder)
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def load_llm(llm: str | None, option: str = "--llm"):
    """(LLM, tokenizer): the world's, or any transformers causal LM folder (an incomplete one is refused,
    named by `option`)."""
    if llm is None:
        world = load_world()
        return world.llm, world.tokenizer
    from transformers import AutoModelForCausalLM

    if not (Path(llm) / "config.json").is_file():
        raise MissingError(f"{option} {llm}: not a transformers model folder (config.json missing)")
    try:
        return AutoModelForCausalLM.from_pretrained(llm, local_files_only=True, use_safetensors=True), folder_tokenizer(llm)
    except OSError as err:  # transformers' word for an incomplete model folder (no weights, ...)
        raise MissingError(f"{option} {llm}: {str(err).strip().splitlines()[0]}") from None


__all__ = ["folder_tokenizer", "load_llm", "load_verifier", "named_verifier", "store_or_default"]
