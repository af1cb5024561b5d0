"""What stage 2 reads and in which order: the split by meaning, prompt rows, the seeded batches
(`index_batches` is pure index arithmetic) and `ChunkReader`, which reads a store one sample chunk at a
time and keeps at most `keep` chunks, so training memory does not grow with the store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import xarray as xr
from sklearn.model_selection import GroupShuffleSplit

from vhslab.probes.data import site_array, token_dims
from vhslab.trace.site import Site
from vhslab.verifier.model import VerifierError


def validation_split(ds: xr.Dataset, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, validation) rows of a store, split by prompt meaning (seeded). Fraction 0: every row
    in both (nothing held out; a refit's in-sample check)."""
    if fraction == 0:
        rows = np.arange(ds.sizes["sample"])
        return rows, rows
    meanings = np.array([str(m) for m in ds["meaning"].values])
    train, val = next(GroupShuffleSplit(1, test_size=fraction, random_state=seed).split(meanings, groups=meanings))
    return np.sort(train), np.sort(val)


def prompt_rows(ds: xr.Dataset) -> np.ndarray:
    """Per store row, the index of its prompt row (0..R-1): candidates of one listed prompt share it."""
    key = ds["prompt_index"].values if "prompt_index" in ds else np.array([str(p) for p in ds["prompt"].values])
    return np.unique(np.asarray(key), return_inverse=True)[1]


def first_candidates(prompt_row: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The rows (sorted) that are among the first `k` candidates of their prompt row (`prompt_row`: one
    key per store row); k <= 0 keeps all. Validation cost then does not grow with candidates."""
    if k <= 0:
        return rows
    key = np.asarray(prompt_row)[rows]
    seen: dict = {}
    keep = np.zeros(len(rows), bool)
    for i, g in enumerate(key):
        keep[i] = seen.get(g, 0) < k
        seen[g] = seen.get(g, 0) + 1
    return rows[keep]


def tag_repeats(ds: xr.Dataset, rows: np.ndarray, balance: float) -> np.ndarray | None:
    """Per row of `rows`: (rows of the largest tag / rows of its tag) ** balance; None when balance is 0."""
    if not balance:
        return None
    tags = np.array([str(t) for t in ds["tag"].values])[rows]
    _, inverse, counts = np.unique(tags, return_inverse=True, return_counts=True)
    return ((counts.max() / counts) ** balance)[inverse]


def index_batches(rows: np.ndarray, chunk: int, batch_size: int, seed: int,
                  repeats: np.ndarray | None = None, mix: int = 1, groups: np.ndarray | None = None,
                  per_group: int = 0) -> Iterator[np.ndarray]:
    """Endless batches of row indices: store chunks in a seeded order each epoch, taken `mix` at a
    time with their rows shuffled together (a shuffle buffer of `mix` chunks, as in streaming data
    loaders), so a batch touches at most 2 x `mix` chunks and mixes rows of `mix` chunks' prompts.
    `repeats` (per row of `rows`) lists a chunk that many times per epoch (its rows' mean, rounded):
    oversampling that keeps the reads chunk by chunk. With `groups` (one key per store row, e.g. the
    prompt row) and `per_group` k > 0, the buffer is dealt out in runs of up to k rows of one group, the
    runs in a seeded order, so a batch holds about batch_size / k groups with k candidates each: the ranking
    loss, which compares candidates of one prompt row, then sees pairs in every batch. Reads nothing."""
    rng = np.random.default_rng(seed)
    starts = [c for c in range(0, int(rows.max()) + 1, chunk) if ((rows >= c) & (rows < c + chunk)).any()]
    by_chunk = [rows[(rows >= c) & (rows < c + chunk)] for c in starts]
    if repeats is not None:
        times = [max(1, round(float(np.mean(repeats[(rows >= c) & (rows < c + chunk)])))) for c in starts]
        by_chunk = [r for r, k in zip(by_chunk, times, strict=True) for _ in range(k)]
    buf: list[int] = []
    while True:
        order = rng.permutation(len(by_chunk))
        for lo in range(0, len(order), mix):
            group = np.concatenate([by_chunk[i] for i in order[lo:lo + mix]])
            group = group[rng.permutation(len(group))]
            if per_group > 0 and groups is not None:
                key = np.asarray(groups)[group]
                runs = [run for g in np.unique(key)
                        for run in np.array_split(group[key == g], -(-int((key == g).sum()) // per_group))]
                group = np.concatenate([runs[i] for i in rng.permutation(len(runs))])
            for j in group:
                buf.append(int(j))
                if len(buf) == batch_size:
                    yield np.array(buf)
                    buf = []


class ChunkReader:
    """Rows of one site, read a whole store chunk at a time; keeps the `keep` latest chunks."""

    def __init__(self, ds: xr.Dataset, site: Site, chunk: int, keep: int = 2):
        self.keep = keep
        arr = site_array(ds, site)
        self.arr, self.chunk, self.n = arr.transpose("sample", *token_dims(arr)), chunk, ds.sizes["sample"]
        self.cache: dict[int, np.ndarray] = {}

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        out = []
        for r in rows:
            c = int(r) // self.chunk
            if c not in self.cache:
                if len(self.cache) >= self.keep:
                    self.cache.pop(next(iter(self.cache)))
                lo = c * self.chunk
                self.cache[c] = np.asarray(self.arr.isel(sample=slice(lo, min(lo + self.chunk, self.n))).values, np.float32)
            out.append(self.cache[c][int(r) - c * self.chunk])
        return np.stack(out)


@dataclass
class TrainRows:
    """What training reads of a store: the verdicts, prompts, prompt rows and captions of every row, the
    train / validation rows (split by meaning) and the chunk reader of the site (None: text only)."""

    y: np.ndarray
    prompts: np.ndarray
    prompt_row: np.ndarray
    captions: np.ndarray | None
    train: np.ndarray
    val: np.ndarray
    read: ChunkReader | None


def train_rows(ds: xr.Dataset, where: Site | None, cfg) -> TrainRows:
    """The store's rows for a `VerifierTrainConfig` `cfg`, split by meaning (seeded), each part holding both verdicts."""
    y = np.asarray(ds["verdict"].values).astype(int)
    prompts = np.array([str(p) for p in ds["prompt"].values])
    if len(y) < 4 or len(np.unique(y)) < 2:
        raise VerifierError(f"the training set has {len(y)} samples and classes {sorted(set(y.tolist()))}: "
                            "a verifier needs both verdicts")
    prompt_row = prompt_rows(ds)
    train, val = validation_split(ds, cfg.val_fraction, cfg.seed)
    val = first_candidates(prompt_row, val, cfg.val_candidates)
    if len(np.unique(y[train])) < 2 or len(np.unique(y[val])) < 2:
        raise VerifierError("the training or the validation part (split by meaning) holds a single verdict; "
                            "add candidates or change val_fraction / seed")
    chunk = int(ds.attrs.get("sample_chunk", 64))
    read = None if where is None else ChunkReader(ds, where, chunk, keep=2 * cfg.mix_chunks)
    captions = np.array([str(c) for c in ds["caption"].values]) if "caption" in ds else None
    return TrainRows(y, prompts, prompt_row, captions, train, val, read)
