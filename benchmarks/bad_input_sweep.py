"""The bad-input sweep of issue "Nothing lost, nothing silent", run through the `vhslab` entry point.

About 60 bad inputs and damaged stores, and about 45 more of issue "Safe by construction" (pickles
planted where a file is read, outputs over what a command did not write, half-written results,
unfinished stores, silent wrong results, resource blow-ups), each checked for: the exit code (2 bad
input, 1 fault, 0 where the input is fine and only warned about), no traceback, one `error:` line that
names the file or option (the new cases), that nothing the user had changed, and that no pickle ran.
Prints a table and, last, one JSON object.

    python benchmarks/bad_input_sweep.py [--keep DIR] [--only TEXT]
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


class Boom:
    """A pickle payload: unpickling it creates MARKER (vhslab must never unpickle a user's file)."""

    def __reduce__(self):
        return (Path.touch, (MARKER["path"],))


MARKER: dict = {}


def pickled(path: Path) -> Path:
    import pickle

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"model": Boom(), "step": 1}))
    return path


def verifier_copy(root: Path, name: str) -> Path:
    import vhslab

    dst = root / name
    shutil.copytree(Path(vhslab.__file__).parent / "assets" / "verifier", dst)
    return dst


def safety_setup(root: Path, store: Path) -> dict:
    """Files for the cases of issue "Safe by construction"."""
    import zarr

    f = {}
    MARKER["path"] = root / "PWNED"
    f["ckpt_dir"] = root / "ckpt"
    pickled(f["ckpt_dir"] / "checkpoint.pt")
    (f["ckpt_dir"] / "vhslab-output.json").write_text(json.dumps({"kind": "verifier", "complete": False}))
    f["stage_dir"] = root / "stagerun"
    (f["stage_dir"]).mkdir()
    (f["stage_dir"] / "vhslab-output.json").write_text(json.dumps({"kind": "world train", "complete": False}))
    pickled(f["stage_dir"] / "autoencoder" / "checkpoint.pt")
    f["pickle_weights"] = verifier_copy(root, "v_pickle")
    pickled(f["pickle_weights"] / "verifier.safetensors")
    f["pickle_llm"] = root / "llm_pickle"
    shutil.copytree(f["pickle_weights"] / "llm", f["pickle_llm"])
    (f["pickle_llm"] / "model.safetensors").unlink()
    pickled(f["pickle_llm"] / "pytorch_model.bin")
    f["user_llm"] = root / "user_llm"
    shutil.copytree(f["pickle_weights"] / "llm", f["user_llm"])
    f["no_llm"] = verifier_copy(root, "v_nollm")
    shutil.rmtree(f["no_llm"] / "llm")
    f["half"] = verifier_copy(root, "v_half")
    (f["half"] / "verifier.safetensors").unlink()
    (f["half"] / "vhslab-output.json").write_text(json.dumps({"kind": "verifier", "complete": False}))
    f["unfinished"] = root / "unfinished.zarr"
    shutil.copytree(store, f["unfinished"])
    zarr.open_group(f["unfinished"], mode="r+")["written"][36:] = False
    f["other_gen"] = root / "othergen.zarr"
    shutil.copytree(store, f["other_gen"])
    zarr.open_group(f["other_gen"], mode="r+").attrs["generator"] = "00000000-11111111"
    good = json.loads((Path(__import__("vhslab").__file__).parent / "assets" / "costs" / "world.json").read_text())
    for name, change in {"neg": ("stage", -1.0), "zero": ("stage", 0.0), "nan": ("stage", float("nan")),
                         "blocks": ("num_blocks", 0)}.items():
        bad = json.loads(json.dumps(good))
        if change[0] == "stage":
            first = next(iter(bad["stages_ms"]["batch_1"]))
            bad["stages_ms"]["batch_1"][first] = change[1]
        else:
            bad["num_blocks"] = change[1]
        (root / f"cost_{name}.json").write_text(json.dumps(bad))
    (root / "cost_ok.json").write_text(json.dumps(good))
    half_cost = root / "cost_half.json"
    half_cost.write_text(json.dumps(good))
    (root / ".cost_half.json.vhslab.json").write_text(json.dumps({"kind": "bench --save-cost-model", "complete": False}))
    (root / "cost_torn.json").write_text('{"name": "world", "stages_ms": {')
    f["user_png"] = root / "mine.png"
    f["user_png"].write_bytes(b"my picture")
    f["user_json"] = root / "mine.json"
    f["user_json"].write_text('{"my": "notes"}')
    rows = {"tag": dict(GOOD, tag="colours"), "excl": dict(GOOD, exclude=None), "prompt42": dict(GOOD, prompt=42),
            "count0": dict(GOOD, include=[{"class": "circle", "count": 0, "color": "red"}])}
    for name, row in rows.items():
        prompts_file(root, f"{name}.jsonl", [GOOD, row])
    return f


def safety_cases(root: Path, store: Path) -> list[tuple[str, list[str], set[int], list[Path], str]]:
    """(name, argv, exit codes, paths that must be unchanged, text the one error line must hold)."""
    f = safety_setup(root, store)
    s, r = str(store), str(root)
    v, png, js = str(root / "v_new"), str(f["user_png"]), str(f["user_json"])
    ev = ["verifier", "eval", "--data", s, "--text-only", "none", "--n-boot", "10", "--no-progress"]
    vt = ["verifier", "train", "--data", s, "--site", "block.5", "--steps", "2", "--align-steps", "0", "--no-progress"]
    bo = ["bestofn", "--prompts", f"{r}/p1.jsonl", "--budgets", "1", "--n-boot", "10", "--no-noise-search",
          "--workdir", f"{r}/bo_work", "--no-progress"]
    prompts_file(root, "p1.jsonl", [GOOD])
    an = ["--data", s, "--no-progress"]
    return [
        # 1. no code from files (the marker file must never appear)
        ("verifier train resumes a pickled checkpoint.pt", [*vt, "--out", str(f["ckpt_dir"])], {2},
         [f["ckpt_dir"] / "checkpoint.pt"], "checkpoint"),
        ("world train resumes a pickled stage checkpoint", ["world", "train", "--out", str(f["stage_dir"]), "--profile",
                                                           "tiny", "--stages", "autoencoder"], {2},
         [f["stage_dir"] / "autoencoder" / "checkpoint.pt"], "checkpoint"),
        ("verifier eval: weights are a pickle", [*ev, str(f["pickle_weights"])], {2}, [f["pickle_weights"]], "verifier.safetensors"),
        ("--llm a folder with a pickled pytorch_model.bin", [*vt, "--llm", str(f["pickle_llm"]), "--out", v], {2},
         [f["pickle_llm"]], "llm_pickle"),
        # 2. ownership: never over what the command did not write
        ("verifier train --out a user's LLM folder", [*vt, "--out", str(f["user_llm"])], {2}, [f["user_llm"]], "never replaced"),
        ("verifier train --out it --overwrite", [*vt, "--out", str(f["user_llm"]), "--overwrite"], {2}, [f["user_llm"]],
         "never replaced"),
        ("verifier train --out the activation store", [*vt, "--out", s, "--overwrite"], {2}, [store], "--data"),
        ("verifier train --out inside the store", [*vt, "--out", f"{s}/v"], {2}, [store], "--data"),
        ("geometry --out g.png --plot g.png", ["geometry", *an, "--out", f"{r}/g.png", "--plot", f"{r}/g.png"], {2}, [],
         "same path"),
        ("attribute --out the store", ["attribute", *an, "--out", s, "--overwrite"], {2}, [store], "--data"),
        ("patch --out the store's file", ["patch", *an, "--out", f"{s}/zarr.json", "--overwrite"], {2}, [store], "--data"),
        ("bestofn --cost-model m.json --out m.json", [*bo, "--cost-model", f"{r}/cost_ok.json", "--out", f"{r}/cost_ok.json",
                                                      "--overwrite"], {2}, [root / "cost_ok.json"], "--cost-model"),
        ("bench --save-cost-model a user's JSON", ["bench", "--save-cost-model", js, "--overwrite"], {2}, [f["user_json"]],
         "never replaced"),
        ("world render -o a user's picture --overwrite", ["world", "render", "a photo of a red circle", "-o", png,
                                                          "--overwrite"], {2}, [f["user_png"]], "never replaced"),
        ("generate -o a user's picture --overwrite", ["generate", "a photo of a red circle", "-o", png, "--overwrite"], {2},
         [f["user_png"]], "never replaced"),
        ("verifier sweep --out a user's file", ["verifier", "sweep", "--out", js, "--overwrite"], {2}, [f["user_json"]],
         "never replaced"),
        ("world train --out a user's folder", ["world", "train", "--out", str(root / "victim"), "--profile", "tiny"], {2},
         [root / "victim"], "never replaced"),
        ("world gold --sheet the gold file", ["world", "gold", "--gold", js, "--sheet", js], {2}, [f["user_json"]], "--gold"),
        ("probe --out a second writer's output", [*PROBE, "--data", s, "--out", f"{r}/locked.nc"], {2}, [], "another vhslab run"),
        # 3. half-written results are never read as whole
        ("verifier eval a half-saved verifier", [*ev, str(f["half"])], {2}, [f["half"]], "incomplete"),
        ("bestofn --cost-model a half-written one", [*bo, "--cost-model", f"{r}/cost_half.json"], {2}, [], "incomplete"),
        ("bestofn --cost-model a torn JSON", [*bo, "--cost-model", f"{r}/cost_torn.json"], {2}, [], "cost_torn.json"),
        ("probe an unfinished store", [*PROBE, "--data", str(f["unfinished"])], {2}, [f["unfinished"]], "did not finish"),
        ("verifier eval --test an unfinished store", [*ev, "--test", str(f["unfinished"])], {2}, [], "--allow-incomplete"),
        ("attribute on an unfinished store", ["attribute", "--data", str(f["unfinished"])], {2}, [], "did not finish"),
        ("geometry on an unfinished store", ["geometry", "--data", str(f["unfinished"])], {2}, [], "did not finish"),
        ("verifier train on an unfinished store", [*vt[:2], "--data", str(f["unfinished"]), "--out", v], {2}, [],
         "did not finish"),
        # 4. silent wrong results
        ("a prompt with an unknown GenEval tag", [*EXTRACT[:3], "--prompts", f"{r}/tag.jsonl", "--out", f"{r}/t.zarr"], {2},
         [], "tag.jsonl"),
        ("a cost model with a negative stage cost", [*bo, "--cost-model", f"{r}/cost_neg.json"], {2}, [], "cost_neg.json"),
        ("a cost model with a zero stage cost", [*bo, "--cost-model", f"{r}/cost_zero.json"], {2}, [], "cost_zero.json"),
        ("a cost model with a NaN stage cost", [*bo, "--cost-model", f"{r}/cost_nan.json"], {2}, [], "cost_nan.json"),
        ("a cost model with zero blocks", [*bo, "--cost-model", f"{r}/cost_blocks.json"], {2}, [], "num_blocks"),
        ('generate ""', ["generate", "", "-o", f"{r}/e.png"], {2}, [], "PROMPT"),
        ("patch --coefficient inf", ["patch", *an, "--coefficient", "inf"], {2}, [], "--coefficient"),
        ("verifier eval on another generator's store", [*ev, "--test", str(f["other_gen"])], {2}, [], "generator"),
        ("verifier eval --text-only a visual verifier", [*ev, "default", "--text-only",
                                                         str(Path(__import__("vhslab").__file__).parent / "assets" / "verifier")],
         {2}, [], "text"),
        ("verifier train --llm-lr inf", [*vt, "--llm-lr", "inf", "--out", v], {2}, [], "--llm-lr"),
        # 5. messages and resources
        ('prompt file: "exclude": null', [*EXTRACT[:3], "--prompts", f"{r}/excl.jsonl", "--out", f"{r}/t.zarr"], {2}, [],
         "exclude"),
        ('prompt file: "prompt": 42', [*EXTRACT[:3], "--prompts", f"{r}/prompt42.jsonl", "--out", f"{r}/t.zarr"], {2}, [],
         "prompt42.jsonl"),
        ("prompt file: count 0", [*EXTRACT[:3], "--prompts", f"{r}/count0.jsonl", "--out", f"{r}/t.zarr"], {2}, [], "count"),
        ("verifier eval a folder without llm/", [*ev, str(f["no_llm"])], {2}, [f["no_llm"]], "llm"),
        ("bestofn --budgets 1e9", [*bo[:3], "--budgets", "1e9"], {2}, [], "--budgets"),
        ("generate --upscale 100000", ["generate", "a photo of a red circle", "-o", f"{r}/u.png", "--upscale", "100000"],
         {2}, [], "--upscale"),
        ("world render --upscale 100000", ["world", "render", "a photo of a red circle", "-o", f"{r}/u.png", "--upscale",
                                           "100000"], {2}, [], "--upscale"),
        ("verifier eval --test a store of 0 rows", [*ev, "--test", str(root / "zero.zarr"), "--allow-incomplete"], {2}, [],
         "written"),
        ("verifier train --lr nan", [*vt, "--lr", "nan", "--out", v], {2}, [], "--lr"),
    ]


def run_case(root: Path, name: str, argv: list[str], codes: set[int], keep: list[Path], match: str):
    """Run one case through the entry point; (row, problem or None)."""
    before = {p: tree(p) for p in keep}
    t0 = time.perf_counter()
    run = subprocess.run([*EXE, *argv], capture_output=True, text=True, cwd=root / "victim")
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    line = errors[0] if errors else next((x for x in run.stderr.splitlines() if x.startswith("warning:")), "")
    ok = {
        "exit": run.returncode in codes,
        "no traceback": "Traceback" not in run.stderr,
        "one error line": (len(errors) == 1) if run.returncode else not errors,
        "nothing lost": all(tree(p) == before[p] for p in keep),
        "names the file or option": match in line,
        "no code ran from a file": not MARKER["path"].exists(),
    }
    row = {"case": name, "exit": run.returncode, "seconds": round(time.perf_counter() - t0, 1),
           "passed": all(ok.values()), "message": line[:160]}
    print(f"{'ok ' if all(ok.values()) else 'BAD'} {run.returncode} {name:45s} {line[:110]}", flush=True)
    problem = None if all(ok.values()) else {"case": name, "failed": [k for k, v in ok.items() if not v],
                                             "stderr": run.stderr[-400:]}
    return row, problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--only", help="run only the cases whose name holds this text")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="vhslab-bad-"))
    root.mkdir(parents=True, exist_ok=True)
    store = root / "store.zarr"
    subprocess.run([*EXE, *EXTRACT, "--out", str(store)], capture_output=True, check=True)
    rows, problems = [], []
    new = safety_cases(root, store)
    allc = [(*c, "") for c in cases(root, store)] + new
    zero = root / "zero.zarr"
    shutil.copytree(store, zero)
    import zarr

    zarr.open_group(zero, mode="r+")["written"][:] = False
    holder = subprocess.Popen([sys.executable, "-c", "import time; from vhslab.outputs import Output, claim; "
                               f"claim([Output({str(root / 'locked.nc')!r}, 'probe --out')]); print('locked', flush=True); "
                               "time.sleep(3600)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    try:
        for name, argv, codes, keep, match in allc:
            if args.only and args.only not in name:
                continue
            row, problem = run_case(root, name, argv, codes, keep, match)
            rows.append(row)
            if problem:
                problems.append(problem)
    finally:
        holder.kill()
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"cases": len(rows), "new_cases": len(new), "passed": sum(r["passed"] for r in rows),
                      "problems": problems}))


if __name__ == "__main__":
    main()
