"""A block verifier against a linear probe of the same site, trained on one store, tested on another.

    vhslab extract --model world --prompts train --n-per-prompt 10 --sites all --out train.zarr
    vhslab extract --model world --prompts geneval-shapes --n-per-prompt 4 --sites block.9 --seed 1 --out test.zarr
    python benchmarks/verifier_vs_probe.py --train train.zarr --test test.zarr --site block.9

Prints one JSON object: training time, scoring speed, and for both the ranking metrics and
Best-of-4 (Bo1, picked, oracle, paired gain) with intervals over meanings.
"""

import argparse
import json
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import vhslab
from vhslab.probes import open_store
from vhslab.probes.verifier_eval import best_of_n, ranking_metrics
from vhslab.probes.verifier_train import VerifierTrainConfig, train_verifier


def strs(values) -> np.ndarray:
    return np.array([str(v) for v in values])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--site", default="block.9")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--grid", type=int, default=4, help="pool the token grid to g x g (the world's LLM has 96 positions)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    layer = int(args.site.split(".")[1])
    train, test = open_store(args.train), open_store(args.test)
    world = vhslab.load_world()
    t0 = time.perf_counter()
    verifier, info = train_verifier(train, args.site, world.llm, world.tokenizer,
                                    VerifierTrainConfig(steps=args.steps, eval_every=50, patience=4), token_grid=args.grid)
    train_s = time.perf_counter() - t0
    hidden = test["hidden"].sel(layer=layer).values.astype(np.float32)
    prompts = list(strs(test.prompt.values))
    t0 = time.perf_counter()
    score = verifier.score(hidden, prompts, batch_size=64)
    score_s = time.perf_counter() - t0
    y = test.verdict.values.astype(int)
    rows = (test.prompt_index.values, strs(test.tag.values), strs(test.meaning.values), y)
    probe = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000))
    probe.fit(train["hidden"].sel(layer=layer).values.astype(np.float32).mean(1), train.verdict.values.astype(int))
    p = probe.predict_proba(hidden.mean(1))[:, 1]
    report = lambda s: {**ranking_metrics(y, s, prompts, rows[2], n_boot=300), **best_of_n(*rows, s, 4, n_boot=300)}  # noqa: E731
    print(json.dumps({"site": args.site, "train_s": round(train_s, 1), "best_val_auroc": info["best_val_auroc"],
                      "score_candidates_per_s": round(len(y) / score_s, 1), "verifier": report(score),
                      "linear_probe": report(p)}))


if __name__ == "__main__":
    main()
