"""Class-weighted XE against plain XE (and focal): one site, the same data, seed and steps; scored
on the test store with paired intervals over meanings (each loss minus plain XE).

    python benchmarks/verifier_losses.py [--train STORE] [--test STORE] [--site block.9] [--losses weighted,focal]
        [--rank-weight 1.0] [--select within]

Default stores: the world's `verifier-train` / `verifier-test` (vhslab.data.default_stores).
Prints one JSON object: per loss its test metrics and its difference to plain XE.
"""

import argparse
import json
import time

import torch

import vhslab
from vhslab.data.default_stores import default_store
from vhslab.probes import open_store
from vhslab.verifier.evaluate import evaluate_scores
from vhslab.verifier.sweep import candidate_rows, score_store
from vhslab.verifier.train import VerifierTrainConfig, train_verifier


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", default=None)
    ap.add_argument("--test", default=None)
    ap.add_argument("--site", default="block.9")
    ap.add_argument("--losses", default="weighted,focal")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--align-steps", type=int, default=200)
    ap.add_argument("--grid", type=int, default=4)
    ap.add_argument("--rank-weight", type=float, default=1.0, help="0 with --select auroc: the recipe of docs/verifier_losses.json")
    ap.add_argument("--select", default="within")
    ap.add_argument("--mix-chunks", type=int, default=8, help="1: the recipe of docs/verifier_losses.json")
    ap.add_argument("--n-boot", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(2)
    train = open_store(args.train or default_store("verifier-train"))
    test = open_store(args.test or default_store("verifier-test"))
    world = vhslab.load_world()
    y, rows = candidate_rows(test)
    scores, seconds, val = {}, {}, {}
    for loss in ["xe", *args.losses.split(",")]:
        cfg = VerifierTrainConfig(steps=args.steps, align_steps=args.align_steps, loss=loss, rank_weight=args.rank_weight,
                                  select=args.select, mix_chunks=args.mix_chunks)
        t0 = time.perf_counter()
        verifier, info = train_verifier(train, args.site, world.llm, world.tokenizer, cfg, token_grid=args.grid or None)
        seconds[loss], val[loss] = round(time.perf_counter() - t0, 1), info["best_val_auroc"]
        scores[loss] = score_store(verifier, test)
    out = {"site": args.site, "train_s": seconds, "best_val_auroc": val, "losses": {}}
    for loss, s in scores.items():
        if loss == "xe":
            out["losses"]["xe"] = evaluate_scores(y, {"xe": s}, n_boot=args.n_boot, **rows)["models"]["xe"]
            continue
        res = evaluate_scores(y, {loss: s, "xe": scores["xe"]}, n_boot=args.n_boot, reference="xe", **rows)
        out["losses"][loss] = {**res["models"][loss], "minus_xe": res["difference"]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
