"""Many verifier recipes at once on a lent GPU, from a small export of one block (exploratory).

A GPU machine holds no zarr and takes at most 64 MiB of carried files, so `export` writes one
block of the training and test stores, mean-pooled to the 4x4 token grid the verifier reads anyway,
normalised per channel and rounded to int8 (1/16 of a standard deviation), plus the row labels,
to one compressed .npz; `run` trains one recipe per process on it (`recipes.json` as for
benchmarks/verifier_recipes.py, plus "seeds": first k candidates of each prompt row, "grid": 1, 2
or 4) and appends a JSON line per recipe: validation (meaning split of the training store, the only
thing to choose on) and test metrics, within-prompt AUROC per tag. The export's statistics differ
from a store's (pooled before normalising), so numbers here rank recipes; claims come from
benchmarks/verifier_recipes.py on the stores themselves.

    python benchmarks/verifier_grid_device.py export --train TRAIN.zarr --test TEST.zarr --block 10 --out block10.npz
    python benchmarks/verifier_grid_device.py run block10.npz recipes.json WORKER WORKERS out.jsonl
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr


def export(train: str, test: str, block: int, out: str) -> None:
    from vhslab.probes import open_store
    from vhslab.probes.data import grid_pool

    arrays = {}
    for part, path in (("train", train), ("test", test)):
        ds = open_store(path)
        x = np.asarray(grid_pool(ds["hidden"].sel(layer=block).transpose("sample", "token", "channel").data.astype(np.float32), 4).compute())
        if part == "train":
            mu, sd = x.mean((0, 1)), x.std((0, 1))
        arrays[f"{part}_x"] = np.clip(np.round((x - mu) / sd * 16), -127, 127).astype(np.int8)
        for v in ("verdict", "prompt_index", "seed"):
            arrays[f"{part}_{v}"] = np.asarray(ds[v].values)
        for v in ("meaning", "prompt", "tag") + (("caption",) if part == "train" else ()):
            arrays[f"{part}_{v}"] = np.array([str(s) for s in ds[v].values])
    np.savez_compressed(out, block=block, **arrays)


def dataset(d: dict, part: str, seeds: int | None, grid: int) -> xr.Dataset:
    x = d[f"{part}_x"].astype(np.float32) / 16
    if grid in (1, 2):
        x = x.reshape(len(x), grid, 4 // grid, grid, 4 // grid, -1).mean((2, 4)).reshape(len(x), grid * grid, -1)
    keep = np.ones(len(x), bool)
    if seeds is not None:  # the first `seeds` candidates of every prompt row
        rows = d[f"{part}_prompt_index"]
        rank = np.zeros(len(rows), int)
        for p in np.unique(rows):
            idx = np.flatnonzero(rows == p)
            rank[idx] = np.arange(len(idx))
        keep = rank < seeds
    coords = {k: ("sample", d[f"{part}_{k}"][keep]) for k in ("meaning", "prompt", "tag", "prompt_index", "seed")}
    block = int(d["block"])
    data = {"hidden": (("sample", "layer", "token", "channel"), x[keep][:, None]),
            "verdict": ("sample", d[f"{part}_verdict"][keep].astype(np.int8))}
    if f"{part}_caption" in d:
        data["caption"] = ("sample", d[f"{part}_caption"][keep])
    return xr.Dataset(data, coords={**coords, "layer": [block]}, attrs={"sample_chunk": 8, "num_blocks": block + 2})


def run(npz: str, recipes: str, worker: int, workers: int, out: str) -> None:
    import vhslab
    import vhslab.verifier.train as vt
    from vhslab.probes.metrics import auroc_binary, auroc_within
    from vhslab.verifier.data import ChunkReader
    from vhslab.verifier.evaluate import best_of_n

    vt.check_store = lambda ds, validated=False: ds  # an in-memory export carries no store spec attributes
    torch.set_num_threads(1)
    d = dict(np.load(npz))
    site = f"block.{int(d['block'])}"
    world = vhslab.load_world()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for i, recipe in enumerate(json.loads(Path(recipes).read_text())):
        if i % workers != worker:
            continue
        t0 = time.time()
        grid = recipe.get("grid", 4)
        train, test = dataset(d, "train", recipe.get("seeds"), grid), dataset(d, "test", None, grid)
        verifier, info = vt.train_verifier(train, site, world.llm, world.tokenizer, vt.VerifierTrainConfig(**recipe.get("cfg", {})),
                                           progress=False)
        verifier.to(device)
        rows = np.arange(test.sizes["sample"])
        s = vt.score_rows(verifier, ChunkReader(test, vt.find_site(test, site), 8), rows, np.asarray(test.prompt.values), 256)
        y, group, tag = test.verdict.values.astype(int), test.prompt_index.values, np.asarray(test.tag.values)
        bon = best_of_n(group, tag, np.asarray(test.meaning.values), y, s, 4, 200)
        result = {"name": recipe["name"], "val_auroc": info["best_val_auroc"], "val_within": info["best_val_within"],
                  "best_step": info["best_step"], "n_train": info["n_train"], "test_auroc": auroc_binary(y, s),
                  "test_within": auroc_within(y, s, group), "test_gain": bon["gain"]["value"],
                  "within_by_tag": {t: round(auroc_within(y[tag == t], s[tag == t], group[tag == t]), 3) for t in np.unique(tag)},
                  "s": round(time.time() - t0, 1), "recipe": recipe}
        with open(out, "a") as f:
            f.write(json.dumps(result) + "\n")
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["export"]:
        ap = argparse.ArgumentParser()
        ap.add_argument("cmd")
        ap.add_argument("--train", required=True)
        ap.add_argument("--test", required=True)
        ap.add_argument("--block", type=int, default=10)
        ap.add_argument("--out", required=True)
        a = ap.parse_args()
        export(a.train, a.test, a.block, a.out)
    else:
        run(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
