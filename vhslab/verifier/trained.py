"""`vhslab verifier train` and `vhslab verifier sweep` as functions: one verifier trained on a store (the store
it came from noted in its config), and one per site beside the best probe of each."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import xarray as xr

from vhslab.figures.verifiers import plot_verifier_depth
from vhslab.verifier.model import LatentVerifier
from vhslab.verifier.sweep import run_verifier_sweep, sweep_summary, verifier_table
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


@dataclass
class SweepResult:
    """What `sweep_sites` found: the sweep dataset `ds` (`run_verifier_sweep`'s), whether a dev store chose a
    site too (`with_dev`) and the seconds the sweep took. `to_json()` is what `vhslab verifier sweep --json`
    prints after the file it wrote; `plot()` the depth plot, `table()` the readable table."""

    ds: xr.Dataset
    with_dev: bool
    elapsed_s: float

    def to_json(self) -> dict:
        """The seconds, then `sweep_summary` of the sweep."""
        return {"elapsed_s": self.elapsed_s, **sweep_summary(self.ds, self.with_dev)}

    def plot(self):
        """Verifier and probe against depth (`vhslab.figures.verifiers.plot_verifier_depth`)."""
        return plot_verifier_depth(self.ds)

    def table(self) -> str:
        """The sweep as a plain-text table (`verifier_table`)."""
        return verifier_table(self.ds)


def sweep_sites(train: xr.Dataset, test: xr.Dataset, llm, tokenizer, sites: list[str] | None, cfg: VerifierTrainConfig, *,
                token_grid: int | None = None, n_boot: int = 300, progress: bool = True, partial: Path | None = None,
                dev: xr.Dataset | None = None) -> SweepResult:
    """`vhslab verifier sweep`: `run_verifier_sweep` (one verifier per site of `sites`, default every site,
    trained on `train`, scored on `test`; resumable through `partial`), timed."""
    t0 = time.perf_counter()
    ds = run_verifier_sweep(train, test, llm, tokenizer, sites, cfg, token_grid=token_grid, n_boot=n_boot,
                            progress=progress, partial=partial, dev=dev)
    return SweepResult(ds, dev is not None, round(time.perf_counter() - t0, 1))
