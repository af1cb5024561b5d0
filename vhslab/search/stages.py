"""What the cost bench times: `Stages`, each a callable of the batch size, and the card they run on."""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class Stages:
    """What a search pays for, each a callable of the batch size (inputs prepared outside the timing)."""

    name: str
    card: str
    dtype: str
    num_blocks: int
    block: int  # the VHS verifier's block
    run: dict[str, Callable[[int], Callable[[], object]]]  # stage -> (batch -> a call with prepared inputs)
    device: str = "cpu"
    # once per call: "prompt_encode" and "pipeline_call" (a pipeline call of one candidate to the final latent);
    # none (real sizes, no pipeline): the per-call stages are 0
    per_call: dict[str, Callable[[], object]] = field(default_factory=dict)
    params: int = 0  # of every model timed (the default thread count follows it)


def card_name(device: str) -> str:
    """The GPU's name, or the CPU's model and torch's thread count."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as f:
        cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    return f"CPU: {cpu}, {torch.get_num_threads()} threads"


__all__ = ["Stages", "card_name"]
