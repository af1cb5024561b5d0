"""Training a LatentVerifier on an activation store: stage 2 (connector + LLM on yes/no).

Reads the store one sample chunk at a time (seeded chunk order, shuffled rows within), so memory
does not grow with the store; validation is a split by prompt meaning; early stopping keeps the
weights of the best validation AUROC. Stage 1 (connector-only caption alignment) is not built yet.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
import xarray as xr
from sklearn.model_selection import GroupShuffleSplit
from tqdm.auto import tqdm

from vhslab.probes.data import Site, _token_dims, check_store, list_sites, site_array, site_statistics
from vhslab.probes.metrics import auroc_binary, auroc_within
from vhslab.probes.verifier import LatentVerifier, VerifierError

LOSSES = ("xe", "weighted", "focal")


@dataclass
class VerifierTrainConfig:
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3  # connector
    llm_lr: float = 1e-4  # the LLM (0 freezes it)
    loss: str = "weighted"  # plain XE, class-weighted XE, or focal
    focal_gamma: float = 2.0
    val_fraction: float = 0.2
    eval_every: int = 50
    patience: int = 3
    seed: int = 0


def _site(ds: xr.Dataset, name: str) -> Site:
    if name.startswith("block."):
        return list_sites(ds, [int(name.split(".")[1])])[0]
    return list_sites(ds, [], (name,))[-1]


def chunk_batches(ds: xr.Dataset, site: Site, rows: np.ndarray, batch_size: int, rng: np.random.Generator,
                  chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless (row indices, hidden) batches: store chunks in a seeded order, rows shuffled inside;
    one chunk in memory at a time."""
    arr = site_array(ds, site)
    arr = arr.transpose("sample", *_token_dims(arr))
    by_chunk = [rows[(rows >= c) & (rows < c + chunk)] for c in range(0, ds.sizes["sample"], chunk)]
    by_chunk = [r for r in by_chunk if len(r)]
    buf_rows, buf = [], []
    while True:
        for i in rng.permutation(len(by_chunk)):
            part = by_chunk[i]
            values = np.asarray(arr.isel(sample=slice(part.min(), part.max() + 1)).values, np.float32)
            values = values[part - part.min()]
            for j in rng.permutation(len(part)):
                buf_rows.append(part[j])
                buf.append(values[j])
                if len(buf) == batch_size:
                    yield np.array(buf_rows), np.stack(buf)
                    buf_rows, buf = [], []


def _loss(logits: torch.Tensor, target: torch.Tensor, cfg: VerifierTrainConfig, weight: torch.Tensor) -> torch.Tensor:
    if cfg.loss == "xe":
        return torch.nn.functional.cross_entropy(logits, target)
    if cfg.loss == "weighted":
        return torch.nn.functional.cross_entropy(logits, target, weight=weight)
    logp = torch.log_softmax(logits, -1).gather(1, target[:, None])[:, 0]
    return (-((1 - logp.exp()) ** cfg.focal_gamma) * logp).mean()


def train_verifier(ds: xr.Dataset, site: str, llm, tokenizer, cfg: VerifierTrainConfig | None = None, *,
                   token_grid: int | None = None, progress: bool = True) -> tuple[LatentVerifier, dict]:
    """Stage-2 training on the store's verdicts at `site`. Returns the verifier (best validation
    AUROC) and its history. Errors before any compute: unknown site or loss, no or one class."""
    cfg = cfg or VerifierTrainConfig()
    if cfg.loss not in LOSSES:
        raise VerifierError(f"unknown loss {cfg.loss!r}; losses: {LOSSES}")
    ds = check_store(ds)
    where = _site(ds, site)
    y = np.asarray(ds["verdict"].values).astype(int)
    meanings = np.array([str(m) for m in ds["meaning"].values])
    prompts = np.array([str(p) for p in ds["prompt"].values])
    if len(y) < 4 or len(np.unique(y)) < 2:
        raise VerifierError(f"the training set has {len(y)} samples and classes {sorted(set(y.tolist()))}: "
                            "a verifier needs both verdicts")
    split = GroupShuffleSplit(1, test_size=cfg.val_fraction, random_state=cfg.seed)
    train, val = next(split.split(y, y, meanings))
    if len(np.unique(y[train])) < 2:
        raise VerifierError("the training part holds a single verdict; add candidates")
    mean, var = site_statistics(ds, where, train)
    channels = int(mean.shape[0])
    verifier = LatentVerifier.create(llm, tokenizer, site, channels, mean=mean, var=var, seed=cfg.seed,
                                     token_grid=token_grid, extra={"train": asdict(cfg)})
    torch.manual_seed(cfg.seed)
    groups = [{"params": verifier.connector.parameters(), "lr": cfg.lr}]
    if cfg.llm_lr > 0:
        groups.append({"params": verifier.llm.parameters(), "lr": cfg.llm_lr})
    else:
        verifier.llm.requires_grad_(False)
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    share = np.bincount(y[train], minlength=2) / len(train)
    weight = torch.tensor([1 / (2 * share[1]), 1 / (2 * share[0])], dtype=torch.float32)  # [yes, no] balanced
    chunk = int(ds.attrs.get("sample_chunk", 64))
    batches = chunk_batches(ds, where, np.sort(train), cfg.batch_size, np.random.default_rng(cfg.seed), chunk)
    val_hidden = np.asarray(site_array(ds, where).isel(sample=np.sort(val)).transpose("sample", ...).values, np.float32)
    val = np.sort(val)
    best, best_state, history, waited = -np.inf, None, [], 0
    bar = tqdm(range(1, cfg.steps + 1), desc=f"verifier {site}", disable=not progress)
    for step in bar:
        verifier.train()
        idx, hidden = next(batches)
        logits = verifier.answer_logits(torch.as_tensor(hidden), list(prompts[idx]))
        target = torch.as_tensor(1 - y[idx])  # answer index: 0 = yes, 1 = no
        loss = _loss(logits, target, cfg, weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            s = verifier.score(val_hidden, list(prompts[val]))
            row = {"step": step, "loss": loss.item(), "val_auroc": auroc_binary(y[val], s),
                   "val_auroc_within": auroc_within(y[val], s, prompts[val])}
            history.append(row)
            bar.set_postfix(val_auroc=round(row["val_auroc"], 3))
            if row["val_auroc"] > best:
                best, waited = row["val_auroc"], 0
                best_state = copy.deepcopy({k: v for k, v in verifier.state_dict().items()})
            else:
                waited += 1
                if waited >= cfg.patience:
                    break
    verifier.load_state_dict(best_state)
    verifier.eval()
    return verifier, {"history": history, "best_val_auroc": best, "n_train": len(train), "n_val": len(val),
                      "val_meanings": len(np.unique(meanings[val]))}
