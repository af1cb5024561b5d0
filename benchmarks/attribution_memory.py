"""Peak memory and time of an attribution study (IG maps, patch ablation, prompt IG, deletion,
randomisation, pointing) of the shipped verifier on held-out samples of the world's test store.

    python benchmarks/attribution_memory.py --n 256 --internal-batch-size 64
Prints one JSON object last: peak RSS (MB) of the whole process, seconds, samples/s. The bound
(issue 20): 256 samples below 2 GB on the CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--internal-batch-size", type=int, default=64)
    parser.add_argument("--n-steps", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import vhslab
    from vhslab.analysis.study import attribution_study
    from vhslab.data.default_stores import default_store
    from vhslab.probes import open_store

    store = open_store(default_store("verifier-test", progress=False))
    world, verifier = vhslab.load_world(), vhslab.load_verifier()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    res = attribution_study(verifier, store, args.n, n_steps=args.n_steps, internal_batch_size=args.internal_batch_size,
                            pipe=world.pipeline)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = res.summary()
    print(json.dumps({"n": args.n, "internal_batch_size": args.internal_batch_size, "n_steps": args.n_steps,
                      "peak_rss_mb": round(peak, 1), "rss_before_mb": round(before, 1), "seconds": round(seconds, 1),
                      "samples_per_s": round(args.n / seconds, 2), "below_2gb": peak < 2048,
                      "deletion_10pct_ratio": summary["deletion"]["0.1"]["ratio"]}))


if __name__ == "__main__":
    main()
