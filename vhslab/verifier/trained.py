"""`vhslab verifier train` as a function: one verifier trained on a store, the store it came from noted in
its config."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import xarray as xr

from vhslab.verifier.model import LatentVerifier
from vhslab.verifier.train import VerifierTrainConfig, train_verifier


@dataclass
class TrainedVerifier:
    """What `train_on_store` made: the verifier, its training history (`info`, `train_verifier`'s), the
    site, the loss's name and the seconds training took; `to_json()` is what `vhslab verifier train --json`
    prints after the folder it saved."""

    verifier: LatentVerifier
    info: dict
    site: str
    loss: str
    train_s: float

    def to_json(self) -> dict:
        """Site, loss, seconds, the best validation AUROC and within-prompt AUROC with their step, the row
        counts, the processes and the history."""
        info = self.info
        return {"site": self.site, "loss": self.loss, "train_s": self.train_s,
                "best_val_auroc": info["best_val_auroc"], "best_val_within": info["best_val_within"],
                "best_step": info["best_step"], "n_train": info["n_train"], "n_val": info["n_val"],
                "processes": info["processes"], "history": info["history"]}


def train_on_store(ds: xr.Dataset, site: str, llm, tokenizer, cfg: VerifierTrainConfig, *, data_name: str,
                   loss: str | None = None, token_grid: int | None = None, progress: bool = True,
                   checkpoint: str | Path | None = None) -> TrainedVerifier:
    """`train_verifier` on `ds` at `site`, the verifier's config noting the store (`data_name` and the
    store's content key) and its best validation numbers; `loss` is the loss's name as reported (default
    `cfg.loss`). A run stopped resumes from `checkpoint`."""
    t0 = time.perf_counter()
    verifier, info = train_verifier(ds, site, llm, tokenizer, cfg, token_grid=token_grid, progress=progress,
                                    checkpoint=checkpoint)
    verifier.config.extra.update({"data": data_name, "store": ds.attrs.get("content_key"),
                                  "best_val_auroc": info["best_val_auroc"], "best_val_within": info["best_val_within"]})
    return TrainedVerifier(verifier, info, site, loss or cfg.loss, round(time.perf_counter() - t0, 1))
