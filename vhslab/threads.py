"""One place decides torch's CPU thread count.

Every command takes `--threads N` (declared once in `vhslab.cli.common`, set before the command
runs); without it the default is the count measured fastest for the model's size on this machine
(2 cores, shared): one thread below `SMALL_PARAMS` parameters, every core above. The world's models
hold about 3.4M parameters: `vhslab world score` ran at 11.1 images/s with torch's default 2
threads against 112.9 with one (light background load, issue #34; 48-62 against 10-11 under a load
average of 3-5 here), so every command on the world runs on one thread. A command that loads a
larger model calls `fit(model)`, which re-decides the default by its size (never a count given
with --threads). Only training (`vhslab world train --threads`) and the probe sweep set a count
of their own. Timings record `info()`.
"""

from __future__ import annotations

import os

import torch

from vhslab.errors import InputError

# Below this many parameters one thread is fastest here; above, every core. Measured (4 transformer layers
# of width 256-2048 on a batch of 4 x 256 tokens, load average 4-5, 1 against 2 threads): 3.2M params
# 121 against 584 ms, 28M 759 against 1240, 113M 3098 against 3524, 302M 8387 against 10668.
SMALL_PARAMS = 500_000_000
_STATE = {"given": False, "why": "torch's default", "set": None}


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_threads(params: int) -> int:
    """The default for a model of `params` parameters: 1 below SMALL_PARAMS (per-op work too small to
    share; a second thread waits on a busy core), else every core."""
    return 1 if params < SMALL_PARAMS else cores()


def use_threads(threads: int | None = None, params: int = 0) -> int:
    """Set torch's thread count: `threads` when given (--threads; kept by `fit`), else `auto_threads(params)`
    (0: the world's small models). Returns the count."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise InputError(f"--threads is an integer >= 1, got {threads!r}")
        n, why = threads, "--threads"
    else:
        n = auto_threads(params)
        size = f"{params / 1e6:.1f}M parameters" if params else "the world's models"
        why = f"default for {size} ({'< ' if n == 1 else '>= '}{SMALL_PARAMS / 1e6:g}M: {n})"
    torch.set_num_threads(n)
    _STATE.update(given=threads is not None, why=why, set=n)
    return n


def count_params(*models) -> int:
    """Parameters of torch modules, diffusers pipelines (their module components) or plain counts."""
    total = 0
    for m in models:
        if isinstance(m, int):
            total += m
        elif isinstance(m, torch.nn.Module):
            total += sum(p.numel() for p in m.parameters())
        elif hasattr(m, "components"):
            total += count_params(*(c for c in m.components.values() if isinstance(c, torch.nn.Module)))
    return total


def fit(*models) -> int:
    """After loading `models`: the default re-decided by their size, unless --threads chose the count."""
    if _STATE["given"]:
        return torch.get_num_threads()
    return use_threads(None, count_params(*models))


def torch_threads() -> int:
    """The count torch runs with now."""
    return torch.get_num_threads()


def info() -> dict:
    """What a timing records: the thread count it ran with and why."""
    n = torch.get_num_threads()
    why = _STATE["why"] if _STATE["set"] in (None, n) else "set by the command (training)"
    return {"threads": n, "threads_from": why}
