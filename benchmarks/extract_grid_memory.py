"""Peak memory of extracting the FULL (step x block) grid of the world's teacher (every denoising step x
every block, plus x_t and x0_hat at each step), streamed to a store.

    flock /work/runs/cpu.lock python benchmarks/extract_grid_memory.py --samples 64 --record docs/extract_grid_memory.json
    flock /work/runs/cpu.lock python benchmarks/extract_grid_memory.py --samples 4000 --record docs/extract_grid_memory.json

Each run is its own process, so its peak RSS (`resource.getrusage`, the whole process: model, batch,
store writes) is that N's alone. Prints one JSON object last; with --record, merges it into that
JSON file under its sample count (a run at two N shows whether the peak grows with N).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch


def store_bytes(path: Path) -> int:
    """Bytes on disk of a store folder."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--n-per-prompt", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--out", type=Path, default=None, help="store path (default: a temporary folder, removed)")
    parser.add_argument("--record", type=Path, default=None, help="JSON file to merge the result into, by sample count")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from vhslab.data.extract import extract
    from vhslab.shapes.suites import load_suite
    from vhslab.world import load_world

    t0 = time.perf_counter()
    world = load_world()
    pipe, gen = world.teacher, world.teacher_gen_config
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    suite = load_suite("train")
    n_prompts = -(-args.samples // args.n_per_prompt)
    prompts = [suite[i % len(suite)] for i in range(n_prompts)]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "grid.zarr"
        result = extract(pipe, prompts, out, n_per_prompt=args.n_per_prompt, sites="all", batch_size=args.batch_size,
                         dtype=args.dtype, gen=gen, x_t=True, x0_hat=True, model_id="world-teacher", progress=False)
        disk = store_bytes(Path(out))
    n = result["samples_total"]
    report = {
        "samples": n,
        "grid": {"steps": result["steps"], "blocks": len(result["sites"]), "latents": result["latents"]},
        "batch_size": args.batch_size,
        "dtype": args.dtype,
        "threads": args.threads,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_loading_world_mb": round(rss_loaded, 1),
        "store_mb": round(disk / 1e6, 2),
        "store_bytes_per_sample": round(disk / n),
        "samples_per_s": result["samples_per_s"],
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "accuracy": result["accuracy"],
        "torch": torch.__version__,
    }
    if args.record is not None:
        runs = json.loads(args.record.read_text()) if args.record.is_file() else {}
        runs[str(n)] = report
        args.record.write_text(json.dumps(runs, indent=2, sort_keys=True) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
