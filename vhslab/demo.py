"""`vhslab demo`: the whole VHS study on the shipped world, small, in minutes on 2 CPU cores.

Stages (each writes only inside the demo's folder):

1. extract a small training store (prompts of the `train` suite, every block) and a small test store
   (prompts of `geneval-shapes`, the verifier's block), labelled by the evaluator;
2. the probe sweep over blocks on the training store (folds over meanings);
3. the shipped verifier against the best probe of its block on the test store (within-prompt AUROC,
   Best-of-4, the paired difference verifier - probe);
4. Best-of-N at a matched budget (2 plain generations under the world's cost model): VHS against the
   vision path, no search and the oracle;
5. one attribution study (integrated gradients of the verifier's verdict, with its sanity checks);
6. the figures of stages 2, 4 and 5.

Numbers are small-sample (a few dozen prompt rows): they show the study, not the README's measurements.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from vhslab.analysis.study import attribution_study
from vhslab.data.extract import extract
from vhslab.errors import InputError
from vhslab.figures import plot_budget_curve, plot_probe_sweep
from vhslab.outputs import Output, owned, state, write_manifest
from vhslab.probes import open_store, run_sweep
from vhslab.search.costs import load_cost_model
from vhslab.search.table import budget_table, table_summary
from vhslab.shapes.suites import load_suite
from vhslab.verifier.evaluate import evaluate_scores
from vhslab.verifier.load import load_verifier
from vhslab.verifier.sweep import best_probe_scores, candidate_rows, score_store
from vhslab.world import load_world

STAGES = ("extract train", "extract test", "probe sweep", "verifier vs probe", "best-of-n", "attribution", "figures")
KIND = "demo --out"
BUDGETS = (1.0, 2.0, 4.0)  # plain generations; the findings are read at 2 (the real-size table's budget)


@dataclass
class DemoResult:
    """What `run_demo` measured: per stage its seconds, and the study's numbers (each a dict with `value`
    and, where it has one, a 95% interval `ci` over prompt meanings). `to_json()` is what `vhslab demo
    --json` prints; `rows()` the summary table."""

    out: Path
    seconds: dict = field(default_factory=dict)
    numbers: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """Plain numbers: the folder, sizes, per-stage seconds, the findings and the files written."""
        return {"out": str(self.out), **self.sizes, "seconds": self.seconds, "total_s": round(sum(self.seconds.values()), 1),
                "findings": self.numbers, "files": self.files}

    def rows(self) -> list[tuple[str, str, str]]:
        """(finding, value, 95% interval) per number, rounded to 3 decimals."""
        out = []
        for name, cell in self.numbers.items():
            ci = cell.get("ci")
            out.append((name, _fmt(cell.get("value")), f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""))
        return out


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, (int, np.integer)) or (isinstance(x, float) and float(x).is_integer() and abs(x) > 1):
        return str(int(x))
    return "nan" if not np.isfinite(float(x)) else f"{float(x):.3f}"


def _cell(d: dict) -> dict:
    ci = d.get("ci")
    return {"value": float(d["value"]), **({"ci": [float(ci[0]), float(ci[1])]} if ci is not None else {})}


def prepare_folder(o: Output, overwrite: bool) -> None:
    """After `claim`: an earlier complete demo is cleared (only with `overwrite`, which `claim` checked), an
    unfinished one kept (it resumes); the folder is marked incomplete until the last stage."""
    if overwrite and state(o.path, KIND) == "complete":
        shutil.rmtree(o.path)
    o.path.mkdir(parents=True, exist_ok=True)
    write_manifest(o, complete=False)


def _rows(suite: str, n: int) -> list:
    rows = load_suite(suite)
    if not 2 <= n <= len(rows):
        raise InputError(f"--prompts must be between 2 and {len(rows)} (rows of {suite}), got {n}")
    return [rows[i] for i in np.linspace(0, len(rows) - 1, n).round().astype(int)]  # every tag, evenly


def _store(world, prompts, path: Path, sites: str, n: int, seed: int, progress: bool):
    done = path.with_name(f".{path.name}.done")
    if not done.exists():  # an interrupted extraction resumes
        extract(world.pipeline, prompts, path, n_per_prompt=n, sites=sites, seed=seed, gen=world.gen_config,
                vision=None, model_id="world", progress=progress, verify=False)
        done.touch()
    return open_store(path)


def run_demo(out: str | Path, *, n_prompts: int = 64, n_per_prompt: int = 4, overwrite: bool = False,
             n_boot: int = 200, progress: bool = True, log=None) -> DemoResult:
    """Run the study into the folder `out` (new, or an earlier demo's): `n_prompts` prompt rows of each
    suite, `n_per_prompt` candidates each. Returns a `DemoResult`; `out` ends up holding the stores, the
    probe sweep (`probes.nc`), the budget table (`bestofn.nc`), the attribution maps and three figures."""
    say = log or (lambda _line: None)
    train_rows, test_rows = _rows("train", n_prompts), _rows("geneval-shapes", n_prompts)
    folder = Output(Path(out), KIND, "--out", folder=True, resumable=True)
    with owned([folder], overwrite):
        prepare_folder(folder, overwrite)
        return _study(folder, train_rows, test_rows, n_per_prompt, n_boot, progress, say)


def _study(folder: Output, train_rows, test_rows, n_per_prompt: int, n_boot: int, progress: bool, say) -> DemoResult:
    res, world, verifier = DemoResult(folder.path), load_world(), load_verifier()
    res.sizes = {"n_prompts": len(train_rows), "n_per_prompt": n_per_prompt, "verifier_site": verifier.config.site}
    bar = tqdm(total=len(STAGES), desc="demo", unit="stage", disable=not progress, position=0)
    clock = {"t": time.perf_counter()}

    def stage(i: int) -> None:
        now = time.perf_counter()
        if i:
            res.seconds[STAGES[i - 1]] = round(now - clock["t"], 1)
            bar.update(1)
        clock["t"] = now
        if i < len(STAGES):
            bar.set_description(f"demo: {STAGES[i]}")
            say(f"[{i + 1}/{len(STAGES)}] {STAGES[i]}")

    stage(0)
    train = _store(world, train_rows, folder.path / "train.zarr", "all", n_per_prompt, 0, progress)
    stage(1)
    test = _store(world, test_rows, folder.path / "test.zarr", f"{verifier.config.site},ae_latent", n_per_prompt, 1, progress)
    stage(2)
    sweep = _probe_stage(res, train, n_boot, progress)
    stage(3)
    _verifier_stage(res, verifier, train, test, n_per_prompt, n_boot)
    stage(4)
    table = _search_stage(res, world, verifier, test_rows, n_boot, progress)
    stage(5)
    attr = attribution_study(verifier, test, n=min(8, test.sizes["sample"]), n_steps=8, pipe=world.pipeline, n_boot=n_boot)
    attr.save(folder.path / "attribution.nc")
    res.files["attribution"] = str(folder.path / "attribution.nc")
    res.numbers.update(_attribution_numbers(attr.summary()))
    stage(6)
    _figures(res, sweep, table, attr)
    stage(7)
    bar.close()
    write_manifest(folder, complete=True)
    return res


def _probe_stage(res: DemoResult, train, n_boot: int, progress: bool):
    sweep = run_sweep(train, ["verdict"], ["linear"], k=3, select=False, n_boot=n_boot, progress=progress)
    path = res.out / "probes.nc"
    sweep.save(path, overwrite=True)
    res.files["probe sweep"] = str(path)
    ds = sweep.ds.sel(target="verdict", probe="linear")
    au = ds["pooled"].sel(metric="auroc")
    best = int(np.nanargmax(au.values))
    site = str(ds.site.values[best])
    lo, hi = (float(ds[c].sel(metric="auroc")[best]) for c in ("ci_low", "ci_high"))
    res.numbers[f"probe AUROC, best block ({site})"] = {"value": float(au[best]), "ci": [lo, hi]}
    if "auroc_within" in ds.metric.values:
        lo, hi = (float(ds[c].sel(metric="auroc_within")[best]) for c in ("ci_low", "ci_high"))
        res.numbers[f"probe within-prompt AUROC ({site})"] = {"value": float(ds["pooled"].sel(metric="auroc_within")[best]),
                                                              "ci": [lo, hi]}
    return sweep


def _verifier_stage(res: DemoResult, verifier, train, test, n: int, n_boot: int) -> None:
    site = verifier.config.site
    y, rows = candidate_rows(test)
    probe, _kind = best_probe_scores(train, test, site)
    scored = evaluate_scores(y, {"verifier": score_store(verifier, test), "probe": probe}, n=n, n_boot=n_boot,
                             reference="probe", **rows)
    ver, prb = scored["models"]["verifier"], scored["models"]["probe"]
    res.numbers["verifier within-prompt AUROC"] = _cell(ver["within_prompt_auroc"])
    res.numbers[f"probe ({site}) within-prompt AUROC"] = _cell(prb["within_prompt_auroc"])
    diff = scored["difference"]
    key = next((k for k in ("within_prompt_auroc",) if k in diff), None)
    if key is not None:
        res.numbers["verifier - probe, within-prompt AUROC"] = _cell(diff[key])
    res.numbers["Bo1 (no search)"] = _cell(ver["bo1"])
    res.numbers[f"Bo{n}, verifier picks"] = _cell(ver[f"bo{n}"])
    res.numbers[f"Bo{n}, oracle picks"] = _cell(ver[f"bo{n}_oracle"])


def _search_stage(res: DemoResult, world, verifier, prompts, n_boot: int, progress: bool):
    verifiers = {"vhs": verifier, "vision": load_verifier(kind="vision")}
    ds = budget_table(world, verifiers, prompts, list(BUDGETS), [load_cost_model("world")], methods=("vhs", "vision", "none", "oracle"),
                      noise=False, workdir=res.out / "bestofn", n_boot=n_boot, progress=progress)
    path = res.out / "bestofn.nc"
    ds.to_netcdf(path)
    res.files["best-of-n table"] = str(path)
    row = table_summary(ds)["world"]["2"]
    for m in ("vhs", "vision", "none", "oracle"):
        res.numbers[f"budget 2 generations: {m} (N = {row[m]['n']})"] = _cell(row[m])
    for key, cell in row.items():
        if key.startswith("diff ") and "vhs" in key and "vision" in key:
            res.numbers[f"budget 2: {key[5:]}"] = _cell(cell)
    return ds


def _attribution_numbers(summary: dict) -> dict:
    """Deletion (|margin change| removing the top tokens / random ones) of the IG map and its paired
    difference to the model-free token-norm map."""
    ig = summary.get("checks", {}).get("deletion", {}).get("maps", {}).get("ig")
    if not ig:
        return {}
    out = {"attribution: deletion ratio, IG map": _cell(ig)}
    if "vs_token_norm" in ig:
        d = ig["vs_token_norm"]
        out["attribution: IG - token norm (model-free)"] = {"value": float(d["diff"]), "ci": [float(x) for x in d["ci"]]}
    return out


def _figures(res: DemoResult, sweep, table, attr) -> None:
    for name, draw in (("probes.png", lambda: plot_probe_sweep(sweep.ds)), ("bestofn.png", lambda: plot_budget_curve(table)),
                       ("attribution.png", attr.plot)):
        fig = draw()
        fig.savefig(res.out / name, dpi=110, bbox_inches="tight")
        res.files[name.removesuffix(".png") + " figure"] = str(res.out / name)


__all__ = ["STAGES", "DemoResult", "run_demo"]
