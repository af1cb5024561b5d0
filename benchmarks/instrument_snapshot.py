"""Record, then compare, the JSON of the documented commands across a refactor (issue #35).

    python benchmarks/instrument_snapshot.py record OUT_DIR      # one JSON file per command
    python benchmarks/instrument_snapshot.py compare BEFORE AFTER

`record` runs each command below with `--json` in a scratch folder and keeps the last line of
its stdout (the command's one JSON object). `compare` walks both objects and prints every leaf
that differs: bit-for-bit equal leaves are counted, differing numbers are listed with their
absolute difference, and keys present on one side only are named. Timings (keys naming seconds,
throughput or wall time) are reported apart: they are measurements of this noisy machine, not
of the computation. Exit 1 if any non-timing leaf differs.

The README's probe sweep takes 19 min on 2 cores, so the snapshot runs the same command on a
smaller extraction (`--n-per-prompt 2`, linear probes): the same code paths at a fifth the cost.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS: dict[str, list[str]] = {
    "world_score": ["world", "score", "--n-per-prompt", "4"],
    "extract": ["extract", "--model", "world", "--prompts", "train", "--n-per-prompt", "2",
                "--sites", "all,ae_latent,image", "--out", "{tmp}/train.zarr"],
    "probe": ["probe", "--data", "{tmp}/train.zarr",
              "--targets", "verdict,found_color,found_class,found_count,recon",
              "--probes", "linear", "--sites", "ae_latent", "--out", "{tmp}/probes.nc",
              "--no-progress"],
    "verifier_eval": ["verifier", "eval", "default", "--no-progress"],
    "bestofn": ["bestofn", "--budgets", "2", "--out", "{tmp}/bestofn.nc"],
    "attribute": ["attribute", "--n", "16", "--out", "{tmp}/attribution.nc", "--no-progress"],
    "patch": ["patch", "--pairs", "8", "--out", "{tmp}/patching.nc", "--no-progress"],
}
TIMING_WORDS = ("second", "per_s", "wall", "elapsed", "throughput", "images_per", "latency",
                "time", "took")
TIMING_ENDS = ("_s", "_ms")


def record(out_dir: Path, only: list[str] | None = None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    exe = [sys.executable, "-m", "vhslab.cli.main"]
    with tempfile.TemporaryDirectory(prefix="vhslab-snapshot-") as tmp:
        for name, args in COMMANDS.items():
            if only and name not in only:
                continue
            argv = exe + [a.format(tmp=tmp) for a in args] + ["--json"]
            start = time.perf_counter()
            proc = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ))
            took = time.perf_counter() - start
            lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
            if proc.returncode != 0 or not lines:
                sys.exit(f"{name}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
            (out_dir / f"{name}.json").write_text(lines[-1] + "\n")
            print(f"{name}: {took:.0f} s", file=sys.stderr, flush=True)


def _leaves(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, obj


def _is_timing(key: str, value) -> bool:
    """A timing of this machine, or a scratch path: not part of the computation."""
    last = key.rsplit(".", 1)[-1].split("[")[0].lower()
    if isinstance(value, str) and ("/" in value or "vhslab-snapshot-" in value):
        return True
    return any(w in last for w in TIMING_WORDS) or last.endswith(TIMING_ENDS)


def compare(before: Path, after: Path) -> int:
    bad = 0
    for fb in sorted(before.glob("*.json")):
        fa = after / fb.name
        if not fa.exists():
            print(f"{fb.stem}: missing after")
            bad += 1
            continue
        lb = dict(_leaves(json.loads(fb.read_text())))
        la = dict(_leaves(json.loads(fa.read_text())))
        same = timing = 0
        diffs = []
        for k in sorted(set(lb) | set(la)):
            if k not in lb or k not in la:
                diffs.append(f"  {k}: only {'after' if k in la else 'before'}")
                continue
            x, y = lb[k], la[k]
            if x == y or (isinstance(x, float) and isinstance(y, float)
                          and math.isnan(x) and math.isnan(y)):
                same += 1
            elif _is_timing(k, x):
                timing += 1
            elif isinstance(x, (int, float)) and isinstance(y, (int, float)):
                diffs.append(f"  {k}: {x} -> {y} (|d| = {abs(x - y):.3g})")
            else:
                diffs.append(f"  {k}: {x!r} -> {y!r}")
        print(f"{fb.stem}: {same} leaves equal, {timing} timings/paths differ, "
              f"{len(diffs)} differ")
        print("\n".join(diffs[:40]))
        bad += bool(diffs)
    print(json.dumps({"commands_with_differences": bad}))
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "record":
        record(Path(sys.argv[2]), sys.argv[3:] or None)
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
