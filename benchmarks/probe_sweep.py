"""Time a full probe sweep on a planted store of realistic size; prints one JSON object last.

    python benchmarks/probe_sweep.py                   # 2000 samples x 20 blocks x 64 tokens x 128 channels
    python benchmarks/probe_sweep.py --samples 400 --layers 6 --probes linear   # quick look
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from vhslab.probes import open_store, run_sweep
from vhslab.testing import planted_store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--targets", default="verdict,color,shape,count,position,recon")
    ap.add_argument("--probes", default="linear,mlp")
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--store", type=Path, default=None, help="reuse / keep the planted store here")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()

    tmp = None
    store = args.store
    if store is None:
        tmp = Path(tempfile.mkdtemp(prefix="probe_bench_"))
        store = tmp / "planted.zarr"
    t0 = time.perf_counter()
    if not store.exists():
        planted_store(args.samples, args.layers, args.tokens, args.channels, signal_layer=args.layers // 3,
                      chunk_samples=250, seed=0).to_zarr(store, consolidated=False)
    build_s = time.perf_counter() - t0
    try:
        t1 = time.perf_counter()
        res = run_sweep(open_store(store), args.targets.split(","), args.probes.split(","),
                        n_boot=args.n_boot, progress=not args.no_progress)
        sweep_s = time.perf_counter() - t1
        best = res.best_layer("auroc", "verdict", args.probes.split(",")[0])
        out = {
            "samples": args.samples, "layers": args.layers, "tokens": args.tokens, "channels": args.channels,
            "targets": [str(t) for t in res.ds.target.values], "probes": args.probes.split(","),
            "n_boot": args.n_boot, "folds": int(res.ds.sizes["fold"]),
            # outer folds, plus an inner CV per outer fold for the nested site selection
            "fits": int(res.ds.sizes["site"] * res.ds.sizes["probe"] * res.ds.sizes["target"] * res.ds.sizes["fold"]
                        * (1 + res.ds.attrs["inner_k"])),
            "store_gb": round(sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 1e9, 3),
            "build_s": round(build_s, 1), "sweep_s": round(sweep_s, 1),
            "planted_layer": args.layers // 3, "verdict_best_layer": best["layer"],
            "verdict_best_auroc": round(best["value"], 4),
        }
    finally:
        if tmp is not None:
            shutil.rmtree(tmp)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
