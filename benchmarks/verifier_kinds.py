"""One recipe for every verifier kind: VHS (block 10), vision and ae_latent verifiers trained by the same
command, recipe, store, steps, teacher and selection rule, each over three training seeds.

    python benchmarks/verifier_kinds.py [--work DIR] [--seeds 0,1,2] [--out docs/verifier_kinds.json] [--ship]

Every run is `vhslab verifier train --site SITE --teacher-weight 5 --seed S` (the shipped recipe; a finished
run in --work is kept). The run each kind ships is chosen by the fixed rule (best training-validation
within-prompt AUROC: train-suite meanings, no test meaning). Reported on the world's `verifier-test` store:
per kind, `vhslab verifier eval` of the chosen run with the recipe's runs (mean and spread over seeds), and
VHS minus each other kind, paired on the same meaning draws, for the chosen runs and for each seed.
--ship copies the chosen runs into vhslab/assets (verifier, verifier_vision, verifier_ae) and the VHS
recipe's runs into vhslab/assets/verifier_runs. Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

KINDS = {"vhs": "block.10", "vision": "vision", "ae": "ae_latent"}
EXE = [sys.executable, "-c", "from vhslab.cli.main import run; run()"]
ASSETS = Path(__file__).resolve().parent.parent / "vhslab" / "assets"
SHIPPED = {"vhs": "verifier", "vision": "verifier_vision", "ae": "verifier_ae"}


def vhslab(*args: str) -> dict:
    r = subprocess.run([*EXE, *args, "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"vhslab {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def train(work: Path, kind: str, seed: int) -> Path:
    out = work / f"{kind}-seed{seed}"
    manifest = out / "vhslab-output.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("complete"):
        return out
    t0 = time.perf_counter()
    vhslab("verifier", "train", "--site", KINDS[kind], "--teacher-weight", "5", "--seed", str(seed), "--out", str(out),
           "--no-progress")
    print(f"trained {out.name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return out


def paired(chosen: dict[str, Path], n_boot: int) -> dict:
    """VHS minus each other kind on the test store, paired on the same meaning draws."""
    import vhslab as lab
    from vhslab.data.default_stores import default_store
    from vhslab.probes import open_store
    from vhslab.verifier.evaluate import evaluate_scores
    from vhslab.verifier.sweep import candidate_rows, score_store

    test = open_store(default_store("verifier-test", progress=False))
    y, rows = candidate_rows(test)
    scores = {k: score_store(lab.load_verifier(p), test) for k, p in chosen.items()}
    out = {}
    for other in ("vision", "ae"):
        res = evaluate_scores(y, {"vhs": scores["vhs"], other: scores[other]}, n=4, n_boot=n_boot, reference=other, **rows)
        out[f"vhs_minus_{other}"] = {k: res["difference"][k] for k in ("within_prompt_auroc", "gain", "bo4")}
    return out


def kind_choice(chosen: dict[str, Path], val_within: dict[str, float], n_boot: int) -> dict:
    """Which kind (site) the protocol would ship: the training-validation rule across kinds, and the
    cross-fitted choice on the dev store (the test's prompts, other seeds) with its combined test numbers."""
    import vhslab as lab
    from vhslab.data.default_stores import default_store
    from vhslab.probes import open_store
    from vhslab.probes.selection import by_training_validation, crossfit
    from vhslab.verifier.evaluate import evaluate_scores
    from vhslab.verifier.sweep import candidate_rows, score_store

    test, dev = (open_store(default_store(n, progress=False)) for n in ("verifier-test", "verifier-dev"))
    (y, rows), (dy, drows) = candidate_rows(test), candidate_rows(dev)
    loaded = {k: lab.load_verifier(p) for k, p in chosen.items()}
    scores = {k: (score_store(v, dev), score_store(v, test)) for k, v in loaded.items()}
    keys = ("group", "tag", "meaning")
    combined, record = crossfit(scores, {"verdict": dy, **{k: drows[k] for k in keys}},
                                {"verdict": y, **{k: rows[k] for k in keys}})
    res = evaluate_scores(y, {"crossfit": combined}, n=4, n_boot=n_boot, **rows)["models"]["crossfit"]
    return {"by_training_validation": by_training_validation(val_within)[1],
            "crossfit_on_dev": {**record, "within_prompt_auroc": res["within_prompt_auroc"], "gain": res["gain"]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("out/verifier_kinds"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--n-boot", type=int, default=300)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--ship", action="store_true")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    dirs = {k: [train(args.work, k, s) for s in seeds] for k in KINDS}
    report, chosen = {}, {}
    for kind, runs in dirs.items():
        first = vhslab("verifier", "eval", str(runs[0]), "--runs", ",".join(map(str, runs)), "--text-only", "none",
                       "--n-boot", str(args.n_boot), "--no-progress")
        pick = first["recipe"]["selected_by"]["chosen"]
        chosen[kind] = next(p for p in runs if p.name == pick)
        report[kind] = first if chosen[kind] == runs[0] else vhslab(
            "verifier", "eval", str(chosen[kind]), "--runs", ",".join(map(str, runs)), "--text-only", "none",
            "--n-boot", str(args.n_boot), "--no-progress")
        print(f"{kind}: rule ships {pick}", file=sys.stderr, flush=True)
    val = {k: report[k]["recipe"]["runs"][chosen[k].name]["val_within"] for k in KINDS}
    per_seed = {str(s): paired({k: dirs[k][i] for k in KINDS}, args.n_boot) for i, s in enumerate(seeds)}
    result = {"kinds": report, "chosen": {k: p.name for k, p in chosen.items()}, **paired(chosen, args.n_boot),
              "per_seed": per_seed, "kind_choice": kind_choice(chosen, val, args.n_boot)}
    if args.ship:
        for kind, path in chosen.items():
            dst = ASSETS / SHIPPED[kind]
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(path, dst)
        runs_dir = ASSETS / "verifier_runs"
        shutil.rmtree(runs_dir, ignore_errors=True)
        for path in dirs["vhs"]:
            shutil.copytree(path, runs_dir / path.name)
        result["shipped"] = True
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
