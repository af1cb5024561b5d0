"""Verifier training recipes side by side, each over several training seeds: what moves the test
within-prompt AUROC and Best-of-4 gain beyond the spread between seeds of one recipe.

    python benchmarks/verifier_recipes.py --recipes recipes.json [--train STORE] [--test STORE]
        [--dev default|STORE] [--site block.10] [--seeds 0,1,2] [--workers 1] [--out recipes.jsonl]
        [--scores DIR]

recipes.json: [{"name": "shipped", "cfg": {"steps": 400, "align_steps": 200}, "grid": 4},
               {"name": "nosys", "verifier": {"system": ""}}, ...]  (cfg: VerifierTrainConfig fields;
verifier: VerifierConfig fields, e.g. system, question)
Default stores: the world's `verifier-train` / `verifier-test`. Training selects checkpoints on its
validation split (the training store's meaning split); with --dev, each run is also scored on a
store of test-like prompts and other seeds, the one to choose recipes on (the training validation
split, 73% colour-attribute prompts, does not predict the test). Test numbers are recorded beside
it, never used to choose. --scores DIR keeps every run's scores (DIR/NAME-seedS-{dev,test}.npy, and
-blank-*.npy asked with an empty prompt) to measure seed or question ensembles afterwards.
Each finished run is appended to --out (a rerun skips it); prints one JSON object: per recipe the
per-seed and mean test metrics, and the mean over seeds of (recipe - first recipe).
"""

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def run_one(job: dict) -> dict:
    import torch

    import vhslab
    from vhslab.data.default_stores import default_store
    from vhslab.probes import open_store
    from vhslab.probes.metrics import auroc_within
    from vhslab.verifier.evaluate import evaluate_scores
    from vhslab.verifier.sweep import candidate_rows, score_store
    from vhslab.verifier.train import VerifierTrainConfig, train_verifier

    torch.set_num_threads(job["threads"])
    train = open_store(job["train"] or default_store("verifier-train"))
    test = open_store(job["test"] or default_store("verifier-test"))
    world = vhslab.load_world()
    cfg = VerifierTrainConfig(**{**job["cfg"], "seed": job["seed"]})
    verifier, info = train_verifier(train, job["site"], world.llm, world.tokenizer, cfg,
                                    token_grid=job.get("grid", 4) or None, progress=False, **job.get("verifier", {}))
    def measure(store, part):
        s = score_store(verifier, store)
        if job.get("scores"):
            keep = Path(job["scores"]) / f"{job['name']}-seed{job['seed']}"
            keep.parent.mkdir(parents=True, exist_ok=True)
            np.save(f"{keep}-{part}.npy", s)
            np.save(f"{keep}-blank-{part}.npy", score_store(verifier, store, prompts=[""] * store.sizes["sample"]))
        y, rows = candidate_rows(store)
        m = evaluate_scores(y, {"v": s}, n_boot=20, **rows)["models"]["v"]  # values only; intervals unused
        tag, group = np.asarray(rows["tag"]), np.asarray(rows["prompts"])
        per_tag = {t: round(auroc_within(y[tag == t], s[tag == t], group[tag == t]), 4) for t in np.unique(tag)}
        return {**{k: m[k]["value"] for k in ("auroc", "within_prompt_auroc", "bo4", "gain")}, "within_by_tag": per_tag}

    dev = {}
    if job.get("dev"):
        path = default_store("verifier-dev") if job["dev"] == "default" else job["dev"]
        dev = {f"dev_{k}": v for k, v in measure(open_store(path), "dev").items()}
    return {"name": job["name"], "seed": job["seed"], "val_auroc": info["best_val_auroc"],
            "val_within": info["best_val_within"], "best_step": info["best_step"], **dev, **measure(test, "test")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipes", required=True)
    ap.add_argument("--train", default=None)
    ap.add_argument("--test", default=None)
    ap.add_argument("--dev", default=None, help="a store to choose recipes on: test-like prompts, other seeds "
                    "('default': the world's verifier-dev, geneval-shapes x 4 of seed 3)")
    ap.add_argument("--site", default="block.10")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default="out/verifier_recipes.jsonl")
    ap.add_argument("--scores", default=None, help="a folder to keep every run's dev/test scores in (.npy)")
    args = ap.parse_args()
    recipes = json.loads(Path(args.recipes).read_text())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    have = {(r["name"], r["seed"]) for r in done}
    jobs = [{"name": r["name"], "cfg": r.get("cfg", {}), "grid": r.get("grid", 4),
             "verifier": r.get("verifier", {}), "seed": int(seed), "site": args.site,
             "train": args.train, "test": args.test, "dev": args.dev, "scores": args.scores, "threads": max(1, 2 // args.workers)}
            for r in recipes for seed in args.seeds.split(",") if (r["name"], int(seed)) not in have]
    with ProcessPoolExecutor(args.workers) as pool:
        for result in pool.map(run_one, jobs):
            done.append(result)
            with out.open("a") as f:
                f.write(json.dumps(result) + "\n")
            dev = f"dev within {result['dev_within_prompt_auroc']:.3f} gain {result['dev_gain']:+.3f}; " if args.dev else ""
            print(f"{result['name']} seed {result['seed']}: {dev}within {result['within_prompt_auroc']:.3f} "
                  f"gain {result['gain']:+.3f} (val within {result['val_within']:.3f})", flush=True)
    keys = ("val_within", "within_prompt_auroc", "gain", "auroc") + (("dev_within_prompt_auroc", "dev_gain") if args.dev else ())
    by = {r["name"]: {d["seed"]: d for d in done if d["name"] == r["name"]} for r in recipes}
    ref = recipes[0]["name"]
    summary = {}
    for name, runs in by.items():
        seeds = sorted(runs)
        summary[name] = {"seeds": seeds, **{k: [round(runs[s][k], 4) for s in seeds] for k in keys},
                         **{f"mean_{k}": round(float(np.mean([runs[s][k] for s in seeds])), 4) for k in keys}}
        paired = [s for s in seeds if s in by[ref]]
        if name != ref and paired:
            summary[name][f"minus_{ref}"] = {k: round(float(np.mean([runs[s][k] - by[ref][s][k] for s in paired])), 4)
                                             for k in keys}
    print(json.dumps({"site": args.site, "recipes": summary}))


if __name__ == "__main__":
    main()
