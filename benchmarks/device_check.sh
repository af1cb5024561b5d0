#!/usr/bin/env bash
# The one-call GPU check of issue 19, for a session that is lent a GPU (`run` tool):
#   real-size SANA-Sprint 1.6B + DC-AE f32c32 + CLIP ViT-L/14-336 + Qwen2.5-0.5B, random weights,
#   bf16, median of 20 per stage at batch 1 and 4, FLOPs; writes the measured cost model and
#   `bo4_vhs_over_vision` (VHS Best-of-4 with the winner finished / the vision path's Best-of-4).
# On a CPU it runs the same code at toy sizes:  ARCH=tiny DEVICE=cpu bash benchmarks/device_check.sh
# The lent H200 image lacks diffusers, dask and typer (seen 2026-11-29): carry their wheels (diffusers,
# importlib_metadata, lazy_importer, dask, partd, locket, typer) as the device tool's README says, and
# put `python` on the PATH (the image has only python3).
set -euo pipefail
OUT=${OUT:-out/device}
ARCH=${ARCH:-sana-sprint-1.6b}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout 300 python -m vhslab.cli.main bench --arch "$ARCH" \
  --device "$DEVICE" --repeats 20 --warmup 3 --save-cost-model "$OUT/$ARCH-measured.json" --overwrite --json \
  2> "$OUT/bench.err" | tail -1 > "$OUT/bench.json"
python - "$OUT/bench.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"card": r["card"], "ratio_vhs_to_vision": r["ratio_vhs_to_vision"],
                  "bo4_vhs_over_vision": r["bo4_vhs_over_vision"], "shipped": r["shipped"]}))
PY
