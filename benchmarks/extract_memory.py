"""Peak memory and throughput of `extract` with every block captured, on the tiny SANA-Sprint.

    python benchmarks/extract_memory.py --samples 4000 --batch-size 32
Prints one JSON object last (samples/s, MB/s, peak RSS). Streams to a temporary store.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--n-per-prompt", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sample-size", type=int, default=8, help="latent grid side (tokens = side^2)")
    parser.add_argument("--out", type=Path, default=None, help="store path (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from vhslab.data.extract import extract
    from vhslab.pipeline import GenConfig
    from vhslab.shapes.suites import load_suite
    from vhslab.testing.tiny import tiny_sana_sprint_pipeline

    pipe = tiny_sana_sprint_pipeline(sample_size=args.sample_size)
    suite = load_suite("train")
    n_prompts = -(-args.samples // args.n_per_prompt)
    prompts = [suite[i % len(suite)] for i in range(n_prompts)]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "bench.zarr"
        result = extract(
            pipe, prompts, out, n_per_prompt=args.n_per_prompt, sites="all", batch_size=args.batch_size,
            gen=GenConfig(max_sequence_length=16), progress=False,
        )
        result["disk_mb"] = round(sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file()) / 1e6, 2)
    result["threads"] = args.threads
    print(json.dumps(result))


if __name__ == "__main__":
    main()
