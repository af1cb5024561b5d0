"""Several world-LLM recipes trained at once on one lent GPU (`vhslab.world.llm_train`), each in its own
process with `--workers` processes drawing its batches; yes/no accuracy on 600 held-out dialogues
(the world's verdict on a described scene) after every `--eval-every` steps.

    python benchmarks/world_llm_device.py --out $OUT --steps 8000 --batch 256 --workers 3 \\
        --recipes '{"base": {}, "answer4": {"answer_weight": 4, "mix": [0.1, 0.05, 0.85]}}'

Writes OUT/curves.jsonl (one row per evaluation) and OUT/<recipe>.tar (the trained model folder:
`train_llm`'s output, metrics.json included). A wall-clock `--deadline` (seconds) stops every
recipe at its next evaluation and saves what it has (marked `"finished": false`). On a CPU,
`--device cpu --steps 40 --batch 16 --eval-every 20` runs the same code in a minute.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tarfile
import time
from dataclasses import replace
from pathlib import Path


def run_recipe(name: str, overrides: dict, args, curves: str) -> None:
    import numpy as np
    import torch

    from vhslab import statefile
    from vhslab.world import stage
    from vhslab.world.llm_train import (
        LLMTrainConfig,
        build_model,
        evaluate,
        load_llm,
        train_llm,
        verifier_example,
        yes_no_accuracy,
    )
    from vhslab.world.text import build_word_tokenizer

    torch.set_num_threads(1)
    overrides = {**overrides, "mix": tuple(overrides["mix"])} if "mix" in overrides else overrides
    cfg = replace(LLMTrainConfig(), steps=args.steps, batch_size=args.batch, **overrides)
    out = Path(args.out) / name
    tok = build_word_tokenizer()
    rng = np.random.default_rng([54321, 9])
    held = [verifier_example(tok, rng) for _ in range(600)]
    start, deadline = time.time(), time.time() + args.deadline
    step, finished = 0, False
    while not finished:
        step = min(step + args.eval_every, cfg.steps)
        result = train_llm(out, cfg, seed=args.seed, device=args.device, progress=False, stop_after=step,
                           workers=args.workers)
        finished = result.get("finished", False)
        if finished:
            model = load_llm(out)[0].to(args.device)
        else:
            model = build_model(cfg, tok, args.seed).to(args.device)
            model.load_state_dict(statefile.load(out / stage.CHECKPOINT)["model"])
        acc = yes_no_accuracy(model.eval(), tok, [h[0] for h in held], [h[1] for h in held])
        row = {"recipe": name, "step": step, "seconds": round(time.time() - start, 1), "yes_no_acc": float(acc.mean()),
               **{f"acc_{t}": float(acc[[i for i, h in enumerate(held) if h[2] == t]].mean())
                  for t in sorted({h[2] for h in held})}}
        with open(curves, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
        if not finished and time.time() > deadline:  # save what there is
            model.save_pretrained(out)
            tok.save_pretrained(out)
            metrics = evaluate(model, tok, cfg)
            (out / "metrics.json").write_text(json.dumps({**metrics, "finished": False, "steps": step}, indent=1))
            break
    with tarfile.open(Path(args.out) / f"{name}.tar", "w") as tar:
        for f in sorted(out.iterdir()):
            if f.name not in (stage.CHECKPOINT, stage.OLD_CHECKPOINT):
                tar.add(f, arcname=f"{name}/{f.name}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--recipes", required=True, help="JSON: name -> LLMTrainConfig overrides")
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--deadline", type=float, default=420.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    curves = str(Path(args.out) / "curves.jsonl")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=run_recipe, args=(name, ov, args, curves)) for name, ov in json.loads(args.recipes).items()]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    print(json.dumps({"recipes": len(procs), "exit_codes": [proc.exitcode for proc in procs]}))


if __name__ == "__main__":
    main()
