"""Seed and recipe ensembles of verifiers, from the scores `verifier_recipes.py --scores DIR` kept:
the mean logit of the members, scored on dev and test like one verifier (within-prompt AUROC and
Best-of-4 gain over Bo1, 95% intervals over meanings). An ensemble of k verifiers costs k times
the scoring, so this measures what distilling one into a single verifier could reach at most.

    python benchmarks/verifier_ensembles.py --scores DIR \\
        --ensemble "default x3=mix8:0,1,2" --ensemble "all=mix8:0,1,2+mix8_noprompt:0,1,2"

Prints one line per ensemble and part, then one JSON object.
"""

import argparse
import json
from pathlib import Path

import numpy as np


def members(spec: str) -> list[tuple[str, int]]:
    """'mix8:0,1+other:2' -> [('mix8', 0), ('mix8', 1), ('other', 2)]."""
    out = []
    for part in spec.split("+"):
        name, _, seeds = part.partition(":")
        out += [(name, int(s)) for s in seeds.split(",")]
    return out


def main() -> None:
    from scipy.special import expit, logit

    from vhslab.data.default_stores import default_store
    from vhslab.probes import open_store
    from vhslab.verifier.evaluate import evaluate_scores
    from vhslab.verifier.sweep import candidate_rows

    ap = argparse.ArgumentParser()
    ap.add_argument("--scores", required=True, help="the folder verifier_recipes.py --scores wrote")
    ap.add_argument("--ensemble", action="append", required=True, help="NAME=recipe:seeds[+recipe:seeds...]")
    ap.add_argument("--n-boot", type=int, default=300)
    args = ap.parse_args()
    wanted = dict(e.split("=", 1) for e in args.ensemble)
    result: dict = {}
    for part, store in (("dev", "verifier-dev"), ("test", "verifier-test")):
        y, rows = candidate_rows(open_store(default_store(store)))
        scores = {}
        for name, spec in wanted.items():
            files = [Path(args.scores) / f"{n}-seed{s}-{part}.npy" for n, s in members(spec)]
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise SystemExit(f"no scores for {name}: {', '.join(missing)} (run verifier_recipes.py --scores)")
            scores[name] = expit(np.mean([logit(np.clip(np.load(f), 1e-6, 1 - 1e-6)) for f in files], axis=0))
        models = evaluate_scores(y, scores, n_boot=args.n_boot, **rows)["models"]
        for name in scores:
            m = {k: {"value": round(models[name][k]["value"], 4), "ci": [round(c, 4) for c in models[name][k]["ci"]]}
                 for k in ("within_prompt_auroc", "gain")}
            result.setdefault(name, {})[part] = m
            print(f"{part:4s} {name:20s} within-prompt {m['within_prompt_auroc']['value']:.3f} "
                  f"{m['within_prompt_auroc']['ci']}  gain {m['gain']['value']:+.3f} {m['gain']['ci']}", flush=True)
    print(json.dumps({"ensembles": wanted, "results": result}))


if __name__ == "__main__":
    main()
