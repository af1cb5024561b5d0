"""Scoring throughput of a LatentVerifier: candidates/s at a batch size (hidden states in memory).

    python benchmarks/verifier_score.py [--verifier default|DIR|random] [--batch 64] [--tokens 64] [--grid 4] [--threads 2]

`default` is the shipped production verifier; `random` a fresh connector on the world's LLM.

Prints one JSON object. Timings from one run on a shared machine: read them as rough.
"""

import argparse
import json
import time

import numpy as np
import torch

import vhslab
from vhslab.shapes.suites import load_suite
from vhslab.verifier.model import LatentVerifier


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--verifier", default="default")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--grid", type=int, default=4, help="pool the token grid to g x g (0: all tokens)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    world = vhslab.load_world()
    width = world.pipeline.transformer.config.num_attention_heads * world.pipeline.transformer.config.attention_head_dim
    if args.verifier == "random":
        v = LatentVerifier.create(world.llm, world.tokenizer, "block.9", width, token_grid=args.grid or None)
    else:
        v = vhslab.load_verifier(None if args.verifier == "default" else args.verifier)
        width = v.config.in_channels
    prompts = [s.prompt for s in load_suite("geneval-shapes")[: args.batch]]
    hidden = torch.randn(args.batch, args.tokens, width)
    v.score(hidden, prompts, batch_size=args.batch)  # warm-up
    times = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        v.score(hidden, prompts, batch_size=args.batch)
        times.append(time.perf_counter() - t0)
    best = float(np.median(times))
    grid = v.config.token_grid
    print(json.dumps({"verifier": args.verifier, "site": v.config.site, "batch": args.batch,
                      "visual_tokens": min(grid, round(args.tokens**0.5)) ** 2 if grid else args.tokens,
                      "threads": args.threads, "median_s": round(best, 4), "candidates_per_s": round(args.batch / best, 1)}))


if __name__ == "__main__":
    main()
