"""Resuming a verifier's training: the checkpoint, a `vhslab.statefile` keyed by the run's settings."""

from __future__ import annotations

from pathlib import Path

import vhslab.statefile as statefile
from vhslab.verifier.model import VerifierError

CHECKPOINT = "checkpoint.safetensors"  # a `vhslab.statefile`: safetensors + a JSON skeleton, never a pickle
OLD_CHECKPOINT = "checkpoint.pt"  # earlier versions' pickle: refused, never loaded


def save_checkpoint(path, identity: dict, acc, state: dict) -> None:
    """Save a training state with the settings it belongs to (main process; every process waits)."""
    if path is not None and acc.is_main_process:
        statefile.save(path, {**state, "identity": identity})  # atomic: a killed run leaves the previous one whole
    acc.wait_for_everyone()


def load_checkpoint(path, identity: dict) -> dict | None:
    """The state saved at `path` (None: none yet), refused when of other settings or an old pickle."""
    if path is None:
        return None
    path = Path(path)
    old = path.with_name(path.name.replace(CHECKPOINT, OLD_CHECKPOINT))
    if old != path and old.exists():
        raise VerifierError(f"{old} is a pickle checkpoint of an earlier vhslab; it is never loaded (a pickle can "
                            "run code): remove it to start over")
    if not path.is_file():
        return None
    state = statefile.load(path)
    if state.get("identity") != identity:
        raise VerifierError(f"{path} is a checkpoint of other training settings, store or site; remove it or use "
                            "another output folder")
    return state


__all__ = ["CHECKPOINT", "OLD_CHECKPOINT", "load_checkpoint", "save_checkpoint"]
