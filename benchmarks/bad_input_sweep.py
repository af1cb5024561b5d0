"""The bad-input sweep of issue "Nothing lost, nothing silent", run through the `vhslab` entry point.

About 60 bad inputs and damaged stores, each checked for: the exit code (2 bad input, 1 fault,
0 where the input is fine and only warned about), no traceback, one `error:` line, and that
nothing the user had changed. Prints a table and, last, one JSON object.

    python benchmarks/bad_input_sweep.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXE = [sys.executable, "-c", "from vhslab.cli.main import run; run()"]
EXTRACT = ["extract", "--model", "world", "--prompts", "train", "--limit", "24", "--n-per-prompt", "2",
           "--batch-size", "2", "--sites", "block.2,block.5", "--no-progress"]
PROBE = ["probe", "--folds", "2", "--inner-folds", "2", "--n-boot", "0", "--no-progress"]
GOOD = {"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "red"}], "prompt": "a photo of a red circle"}


def tree(path: Path) -> dict:
    if path.is_file():
        return {path: path.read_bytes()}
    return {p: p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()} if path.exists() else {}


def prompts_file(root: Path, name: str, rows=None, raw: bytes | None = None) -> Path:
    path = root / name
    path.write_bytes(raw if raw is not None else "".join(json.dumps(r) + "\n" for r in rows).encode())
    return path


def cases(root: Path, store: Path) -> list[tuple[str, list[str], set[int], list[Path]]]:
    """(name, argv, allowed exit codes, paths that must be unchanged)."""
    victim = root / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    results = root / "results.nc"
    subprocess.run([*EXE, *PROBE, "--data", str(store), "--out", str(results)], capture_output=True, check=True)
    plot = root / "plot.png"
    plot.write_bytes(b"png")
    nostore = root / "nostore"
    nostore.mkdir()
    (nostore / "a.txt").write_text("x")
    a_file = root / "notes.txt"
    a_file.write_text("notes")
    bare = root / "bare"
    bare.mkdir()
    (bare / "model_index.json").write_text("{}")
    lost = root / "lost.zarr"
    shutil.copytree(store, lost)
    (lost / "verdict" / "c" / "1").unlink()
    garbled = root / "garbled.zarr"
    shutil.copytree(store, garbled)
    (garbled / "hidden" / "c" / "2" / "1" / "0" / "0").write_bytes(b"\x00garbage")
    bad = lambda **kw: {**GOOD, **kw}  # noqa: E731
    p = {
        "shape": prompts_file(root, "shape.jsonl", [GOOD, bad(include=[{"class": "dog", "count": 1, "color": "red"}])]),
        "colour": prompts_file(root, "colour.jsonl", [bad(include=[{"class": "star", "count": 1, "color": "teal"}])]),
        "count": prompts_file(root, "count.jsonl", [{"tag": "counting", "include": [{"class": "star", "count": 9}],
                                                     "prompt": "a photo of nine stars"}]),
        "contradiction": prompts_file(root, "contra.jsonl", [bad(prompt="a photo of a red square")]),
        "json": prompts_file(root, "json.jsonl", raw=b'{"tag": "colors"\n'),
        "utf8": prompts_file(root, "utf8.jsonl", raw=b"\xff\xfe\x00x"),
        "empty": prompts_file(root, "empty.jsonl", raw=b"\n\n"),
        "schema": prompts_file(root, "schema.jsonl", [{"tag": "colors", "prompt": "x"}]),
        "gold": prompts_file(root, "gold.jsonl", raw=b'{"prompt": 1}\n'),
    }
    out = str(root / "new.zarr")
    s, r = str(store), str(results)
    return [
        ("probe --out a folder of the user's", [*PROBE, "--data", s, "--out", str(victim)], {2}, [victim]),
        ("probe --out that folder --overwrite", [*PROBE, "--data", s, "--out", str(victim), "--overwrite"], {2}, [victim]),
        ("probe --out the activation store", [*PROBE, "--data", s, "--out", s, "--overwrite"], {2}, [store]),
        ("probe --out . --overwrite", [*PROBE, "--data", s, "--out", ".", "--overwrite"], {2}, [victim]),
        ("probe --out earlier results", [*PROBE, "--data", s, "--out", r], {2}, [results]),
        ("probe --plot an existing file", [*PROBE, "--data", s, "--plot", str(plot)], {2}, [plot]),
        ("prompt with an unknown shape", [*EXTRACT[:3], "--prompts", str(p["shape"]), "--out", out], {2}, []),
        ("prompt with an unknown colour", [*EXTRACT[:3], "--prompts", str(p["colour"]), "--out", out], {2}, []),
        ("prompt with too many objects", [*EXTRACT[:3], "--prompts", str(p["count"]), "--out", out], {2}, []),
        ("prompt file: malformed JSON", [*EXTRACT[:3], "--prompts", str(p["json"]), "--out", out], {2}, []),
        ("prompt file: not UTF-8", [*EXTRACT[:3], "--prompts", str(p["utf8"]), "--out", out], {2}, []),
        ("prompt file: empty", [*EXTRACT[:3], "--prompts", str(p["empty"]), "--out", out], {2}, []),
        ("prompt file: missing field", [*EXTRACT[:3], "--prompts", str(p["schema"]), "--out", out], {2}, []),
        ("prompt file: missing", [*EXTRACT[:3], "--prompts", str(root / "none.jsonl"), "--out", out], {2}, []),
        ("--prompts an unknown suite", [*EXTRACT[:3], "--prompts", "genevall", "--out", out], {2}, []),
        ("--guidance-scale nan", [*EXTRACT, "--guidance-scale", "nan", "--out", out], {2}, []),
        ("--guidance-scale inf", [*EXTRACT, "--guidance-scale", "inf", "--out", out], {2}, []),
        ("--batch-size -1", [*EXTRACT, "--batch-size", "-1", "--out", out], {2}, []),
        ("--batch-size 0", [*EXTRACT, "--batch-size", "0", "--out", out], {2}, []),
        ("--limit -1", [*EXTRACT, "--limit", "-1", "--out", out], {2}, []),
        ("--max-sequence-length 0", [*EXTRACT, "--max-sequence-length", "0", "--out", out], {2}, []),
        ("--steps 0", [*EXTRACT, "--steps", "0", "--out", out], {2}, []),
        ("--n-per-prompt 0", [*EXTRACT, "--n-per-prompt", "0", "--out", out], {2}, []),
        ("--seed -1", [*EXTRACT, "--seed", "-1", "--out", out], {2}, []),
        ("--height 0", [*EXTRACT, "--height", "0", "--out", out], {2}, []),
        ("--device cuda (CPU build)", [*EXTRACT, "--device", "cuda", "--out", out], {2}, []),
        ("--device nonsense", [*EXTRACT, "--device", "tpu9", "--out", out], {2}, []),
        ("--model a bare model_index.json", ["extract", "--model", str(bare), "--out", out], {2}, []),
        ("--model a missing folder", ["extract", "--model", str(root / "nope"), "--out", out], {2}, []),
        ("--sites unknown", [*EXTRACT[:-3], "--sites", "block.99", "--out", out], {2}, []),
        ("--dtype bogus", [*EXTRACT, "--dtype", "float8", "--out", out], {2}, []),
        ("--shard 3/2", [*EXTRACT, "--shard", "3/2", "--out", out], {2}, []),
        ("--shard abc", [*EXTRACT, "--shard", "abc", "--out", out], {2}, []),
        ("extract --out an existing file", [*EXTRACT, "--out", str(a_file)], {2}, [a_file]),
        ("extract --out a folder of other files", [*EXTRACT, "--out", str(nostore)], {2}, [nostore]),
        ("extract into a store of other settings", [*EXTRACT, "--seed", "5", "--out", s], {2}, [store]),
        ("probe a store with a lost verdict chunk", [*PROBE, "--data", str(lost)], {1}, [lost]),
        ("inspect --verify a lost verdict chunk", ["inspect", str(lost), "--verify"], {1}, [lost]),
        ("probe a store with a garbled hidden chunk", [*PROBE, "--data", str(garbled)], {1}, [garbled]),
        ("inspect --verify a garbled hidden chunk", ["inspect", str(garbled), "--verify"], {1}, [garbled]),
        ("probe --data missing", [*PROBE, "--data", str(root / "none.zarr")], {2}, []),
        ("probe --data a folder of other files", [*PROBE, "--data", str(nostore)], {1, 2}, [nostore]),
        ("probe --targets unknown", [*PROBE, "--data", s, "--targets", "nope"], {2}, [store]),
        ("probe --probes unknown", [*PROBE, "--data", s, "--probes", "svm"], {2}, [store]),
        ("probe --layers absent", [*PROBE, "--data", s, "--layers", "9"], {2}, [store]),
        ("probe --layers not numbers", [*PROBE, "--data", s, "--layers", "a,b"], {2}, [store]),
        ("probe --sites unknown", [*PROBE, "--data", s, "--sites", "vision"], {2}, [store]),
        ("probe --folds 1", [*PROBE, "--data", s, "--folds", "1"], {2}, [store]),
        ("probe --folds 40 (too few meanings)", [*PROBE, "--data", s, "--folds", "40"], {2}, [store]),
        ("probe --grid 0", [*PROBE, "--data", s, "--grid", "0"], {2}, [store]),
        ("probe --n-boot -1", [*PROBE, "--data", s, "--n-boot", "-1"], {2}, [store]),
        ("inspect a missing path", ["inspect", str(root / "none.zarr")], {2}, []),
        ("inspect a file", ["inspect", str(a_file)], {1, 2}, [a_file]),
        ("world check --n 0", ["world", "check", "--n", "0"], {2}, []),
        ("world score --n-per-prompt 0", ["world", "score", "--n-per-prompt", "0"], {2}, []),
        ("world score --suite missing", ["world", "score", "--suite", str(root / "none.jsonl")], {2}, []),
        ("world score --guidance-scale nan", ["world", "score", "--guidance-scale", "nan", "--limit", "2"], {2}, []),
        ("world samples --per-tag 0", ["world", "samples", "-o", str(root / "s.png"), "--per-tag", "0"], {2}, []),
        ("world render --resolution 0", ["world", "render", "a photo of a red circle", "-o", str(root / "r.png"),
                                         "--resolution", "0"], {2}, []),
        ("world render an unknown shape", ["world", "render", "a photo of a red dog", "-o", str(root / "r.png")], {2}, []),
        ("world render nonsense", ["world", "render", "hello there", "-o", str(root / "r.png")], {2}, []),
        ("world render -o an existing file", ["world", "render", "a photo of a red circle", "-o", str(plot)], {2},
         [plot]),
        ("world samples -o a folder", ["world", "samples", "-o", str(victim)], {2}, [victim]),
        ("world gold --gold a bad file", ["world", "gold", "--gold", str(p["gold"])], {2}, []),
        ("world train --profile bogus", ["world", "train", "--out", str(root / "t"), "--profile", "huge"], {2}, []),
        ("world train --stages bogus", ["world", "train", "--out", str(root / "t"), "--stages", "nope"], {2}, []),
        ("text that contradicts its include (warned)", [*EXTRACT[:3], "--prompts", str(p["contradiction"]),
                                                        "--n-per-prompt", "1", "--sites", "block.0", "--no-progress",
                                                        "--out", str(root / "warned.zarr")], {0}, []),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="vhslab-bad-"))
    root.mkdir(parents=True, exist_ok=True)
    store = root / "store.zarr"
    subprocess.run([*EXE, *EXTRACT, "--out", str(store)], capture_output=True, check=True)
    rows, problems = [], []
    for name, argv, codes, keep in cases(root, store):
        before = {p: tree(p) for p in keep}
        t0 = time.perf_counter()
        run = subprocess.run([*EXE, *argv], capture_output=True, text=True, cwd=root / "victim")
        errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        ok = {
            "exit": run.returncode in codes,
            "no traceback": "Traceback" not in run.stderr,
            "one error line": (len(errors) == 1) if run.returncode else not errors,
            "nothing lost": all(tree(p) == before[p] for p in keep),
        }
        line = errors[0] if errors else next((x for x in run.stderr.splitlines() if x.startswith("warning:")), "")
        rows.append({"case": name, "exit": run.returncode, "seconds": round(time.perf_counter() - t0, 1),
                     "passed": all(ok.values()), "message": line[:160]})
        if not all(ok.values()):
            problems.append({"case": name, "failed": [k for k, v in ok.items() if not v], "stderr": run.stderr[-400:]})
        print(f"{'ok ' if all(ok.values()) else 'BAD'} {run.returncode} {name:45s} {line[:110]}", flush=True)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"cases": len(rows), "passed": sum(r["passed"] for r in rows), "problems": problems}))


if __name__ == "__main__":
    main()
