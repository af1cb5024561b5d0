"""Shared plumbing of the world's training stages: device, the one training loop, resumable
checkpoints, finished-stage detection, learning-rate schedule and progress bar.

A stage folder holds `train_config.json` (written first), `checkpoint.safetensors` while training
(model + optimizer + step + RNG, a `vhslab.statefile` replaced atomically; never a pickle) and, once
finished, the saved model and `metrics.json` (written last: its presence marks the stage as done).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import torch

import vhslab.statefile as statefile
from vhslab.errors import InputError
from vhslab.outputs import write_json_atomic
from vhslab.schemas import read_json, read_run_record

CHECKPOINT = "checkpoint.safetensors"
OLD_CHECKPOINT = "checkpoint.pt"  # the pickle format of earlier versions: refused, never loaded
METRICS = "metrics.json"
CONFIG = "train_config.json"


def pick_device(device: str | torch.device | None) -> torch.device:
    """`device`, or CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def finished_metrics(out_dir: Path) -> dict | None:
    """The saved metrics of a finished stage, or None."""
    path = Path(out_dir) / METRICS
    if path.exists():
        return read_json(path)  # invalid JSON names the file
    return None


def check_config(out_dir: Path, config, seed: int, name: str = CONFIG, key: str = "config") -> None:
    """Record the config (a dataclass) and seed in `out_dir/name`, or refuse to resume a folder
    trained with another. Fields added to the config class since the folder was written take
    their defaults (each the recipe's earlier behaviour)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    record = json.loads(json.dumps({"seed": seed, key: dataclasses.asdict(config)}))
    path = out_dir / name
    if path.exists():
        old = read_run_record(path, type(config), key)  # checked by the config's schema; added fields take their defaults
        if old != record:
            raise InputError(f"{out_dir} holds a run with another seed or config ({path}); use a fresh folder or delete it")
        return
    path.write_text(json.dumps(record, indent=1) + "\n")


def save_checkpoint(out_dir: Path, model, optimizer, step: int, extra: dict | None = None) -> None:
    """Save model, optimizer, step and RNG states (and `extra`) to `out_dir` as a state file (`vhslab.statefile`)."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "extra": extra or {},
    }
    statefile.save(Path(out_dir) / CHECKPOINT, state)


def load_checkpoint(out_dir: Path, model, optimizer) -> tuple[int, dict]:
    """Restore model, optimizer and RNG from the stage's checkpoint; returns (step, extra), (0, {}) if none."""
    refuse_old_checkpoint(out_dir)
    path = Path(out_dir) / CHECKPOINT
    if not path.exists():
        return 0, {}
    state = statefile.load(path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["step"]), state.get("extra", {})


def refuse_old_checkpoint(out_dir: Path) -> None:
    """Refuse a folder that holds an earlier version's pickle checkpoint (it is never loaded)."""
    old = Path(out_dir) / OLD_CHECKPOINT
    if old.exists():
        raise statefile.StateFileError(f"{old} is a pickle checkpoint of an earlier vhslab; it is never loaded (a "
                                       "pickle can run code): remove it to start the stage over")


def finish(out_dir: Path, metrics: dict) -> dict:
    """Write metrics.json (marks the stage done) and drop the training checkpoint."""
    out_dir = Path(out_dir)
    write_json_atomic(out_dir / METRICS, metrics, indent=1)  # a save point of vhslab.outputs' fault injection
    (out_dir / CHECKPOINT).unlink(missing_ok=True)
    return metrics


def lr_at(step: int, total: int, warmup: int, base: float, final_frac: float = 0.05) -> float:
    """Linear warm-up then cosine decay to `final_frac * base`."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def progress_bar(total: int, initial: int, desc: str, enabled: bool):
    """A tqdm bar (disabled when not `enabled`)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=True, leave=False)


def folder_megabytes(out_dir: Path, suffix: str = ".safetensors") -> float:
    """Size of the saved weights (the training checkpoint not counted)."""
    return sum(p.stat().st_size for p in Path(out_dir).glob(f"*{suffix}") if p.name != CHECKPOINT) / 2**20


LOSS_READ_EVERY = 50  # steps between reading the losses back (one device sync) and updating the bar


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """What `train_steps` reads of a stage's config (VisionTrainConfig and LLMTrainConfig have it too)."""

    steps: int
    lr: float
    warmup: int
    checkpoint_every: int


def train_steps(out_dir: Path, model, optimizer, config, loss_at, desc: str, progress: bool = True,
                stop_after: int | None = None, after_step=None, *, clip: float | None = 1.0,
                final_frac: float = 0.05, state: dict | None = None) -> tuple[int, float, list[float]]:
    """Every stage's training loop: resume from the checkpoint, `loss_at(step)` the batch loss,
    warm-up + cosine learning rate down to `final_frac` of `config.lr`, gradient clipping (None:
    none), `after_step()` after each update (EMA, clamps), a checkpoint every
    `config.checkpoint_every` steps, at the end and at `stop_after`. `state`: name -> (get, set)
    of more objects each checkpoint keeps (a batch generator, EMA weights).
    Returns (step reached, training seconds, losses)."""
    import time

    import numpy as np

    state = state or {}
    step, extra = load_checkpoint(out_dir, model, optimizer)
    for name, (_, set_state) in state.items():
        if name in extra:
            set_state(extra[name])
    seconds = float(extra.get("seconds", 0.0))
    losses: list[float] = list(extra.get("losses", []))
    pending = []  # loss tensors not read back yet
    model.train()
    bar = progress_bar(config.steps, step, desc, progress)
    start = time.perf_counter()
    while step < config.steps and (stop_after is None or step < stop_after):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config.steps, config.warmup, config.lr, final_frac)
        loss = loss_at(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if after_step is not None:
            after_step()
        pending.append(loss.detach())
        step += 1
        bar.update(1)
        save = step % config.checkpoint_every == 0 or step == config.steps or step == stop_after
        if save or step % LOSS_READ_EVERY == 0:
            losses += torch.stack(pending).float().tolist()
            pending = []
            bar.set_postfix(loss=f"{np.mean(losses[-LOSS_READ_EVERY:]):.4f}")
        if save:
            extra = {"seconds": seconds + time.perf_counter() - start, "losses": losses}
            extra.update({name: get() for name, (get, _) in state.items()})
            save_checkpoint(out_dir, model, optimizer, step, extra)
    bar.close()
    return step, seconds + time.perf_counter() - start, losses


def adamw(model, lr: float, weight_decay: float, no_decay: str, **kwargs) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only (not on biases, norms or parameters whose
    name contains `no_decay`, e.g. embeddings)."""
    decay, other = [], []
    for name, param in model.named_parameters():
        (decay if param.ndim >= 2 and no_decay not in name else other).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, **kwargs)


def run_summary(out_dir: Path, model, step: int, seed: int, seconds: float, device, losses: list[float]) -> dict:
    """The metrics every finished stage records about its run (losses averaged over up to 50 steps)."""
    import numpy as np

    k = max(1, min(50, len(losses) // 4))
    return {
        "finished": True, "steps": step, "seed": seed, "train_seconds": round(seconds, 1), "device": str(device),
        "first_loss": float(np.mean(losses[:k])), "final_loss": float(np.mean(losses[-k:])),
        "weights_mb": round(folder_megabytes(out_dir), 3), "parameters": sum(p.numel() for p in model.parameters()),
    }


def loss_summary(losses: list[float]) -> dict:
    """What every generator stage records of its loss curve: the first 20 and last 50 steps' means."""
    return {"loss_first": float(np.mean(losses[:20])), "loss_last": float(np.mean(losses[-50:]))}
