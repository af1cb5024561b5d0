"""The paper's main table, in the world: GenEval-style score of Best-of-N per verifier path against a
time budget, under one or more cost models, with noise search beside it.

How it runs. The budget (in plain generations: 1 = one plain call's cost in that cost model) buys
each path its own N (`CostModel.n_for_budget`: calls of 8 candidates, the prompt's encoding and
every call's overhead included; noise search's rounds charged one after another). Every Best-of-N row is read from one pool of
candidates per prompt row, extracted once with every site the verifiers read: the pool's first N
candidates of a row are exactly the candidates `best_of_n(..., seed, first)` generates for it (same
seeds), so Best-of-N at any N is the pool prefix's best (tested against `best_of_n`). Noise search
generates its own candidates (round 0 = the pool's first seeds), one call per prompt row and N.
Intervals resample distinct meanings within tags (`meaning_draws`), one draw set for every cell, so
differences between methods are paired.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from vhslab.data.default_stores import cache_dir, world_content
from vhslab.data.extract import extract
from vhslab.data.spec import content_key
from vhslab.data.store import StoreInputError, open_zarr
from vhslab.figures.search import plot_budget_curve
from vhslab.outputs import append_line, read_jsonl
from vhslab.pipeline import candidate_offsets
from vhslab.search.generation import SearchError
from vhslab.search.noise_search import noise_search
from vhslab.search.paths import PATHS, path_of
from vhslab.shapes.evaluate import ShapesEvaluator, overall_score
from vhslab.shapes.suites import load_suite
from vhslab.stats import interval, meaning_draws, paired_interval
from vhslab.trace.site import Site, find_transformer
from vhslab.verifier.load import named_verifier
from vhslab.verifier.sweep import candidate_rows, score_store
from vhslab.world import load_world

NOISE = "noise"  # the noise search's row: charged as the VHS path in sequential rounds
COMPARISONS = (("vhs", "vision"), ("vhs", "none"), ("vhs", "ae"), ("noise", "vhs"), ("oracle", "vhs"))
MAX_N = 256  # the most candidates per prompt row a budget may buy (the pool holds that many)


def plan(cost_models, budgets, methods, blocks: dict, num_blocks: int, rounds: int = 3) -> dict:
    """{(cost model name, budget, method): N} (0 where not even one candidate fits); `noise` runs
    `rounds` sequential rounds."""
    out = {}
    for cm in cost_models:
        for b in budgets:
            for m in methods:
                path = "vhs" if m == NOISE else m
                block = blocks.get(path)
                try:
                    out[cm.name, b, m] = cm.n_for_budget(b * cm.plain_ms(), path,
                                                         None if block is None else cm.block_at(block, num_blocks),
                                                         rounds=rounds if m == NOISE else 1)
                except SearchError:
                    out[cm.name, b, m] = 0
    return out


def default_workdir(world) -> Path:
    """`$VHSLAB_CACHE/bestofn/{key}`: the default folder of the pool and the noise search's rows, keyed by
    what determines them (the generator's weights, the evaluator, the generation settings, vhslab's
    version), so that a pool of another version stays where it is and this one goes beside it."""
    return cache_dir() / "bestofn" / content_key(**world_content(world))


def pool_store(world, prompts, k: int, seed: int, sites: list[str], out: Path, progress: bool = True) -> xr.Dataset:
    """The candidate pool: `k` candidates per prompt row, every site in `sites`, float32 (scores equal
    `best_of_n`'s), labelled by the evaluator. Resumes if interrupted; a pool of other data at `out` is
    refused with the option that moves it (`--workdir`)."""
    try:
        extract(world.pipeline, prompts, out, n_per_prompt=k, sites=",".join(sites), seed=seed, dtype="float32",
                gen=world.gen_config, vision=world.vision if "vision" in sites else None, model_id="world",
                progress=progress, verify=False)
    except StoreInputError as err:
        if "holds different data" not in str(err):
            raise
        raise StoreInputError(f"the Best-of-N pool {out} holds candidates of other settings or another vhslab version; "
                              "pass another --workdir (or leave it out: the default folder is keyed by content). "
                              "Nothing was changed.") from err
    return open_zarr(out)


def _pick(verdict: np.ndarray, scores: np.ndarray | None, n: int, method: str) -> np.ndarray:
    """Per prompt row, the verdict of the candidate `method` picks among the first n (`SearchPath.pool_pick`)."""
    if n == 0:
        return np.full(len(verdict), np.nan)
    return PATHS[method].pool_pick(verdict, scores, n)


def run_noise_search(world, verifier, prompts, ns: set[int], k: int, seed: int, rounds: int, radius: float,
                     partial: Path | None, progress: bool = True) -> dict:
    """{(row, N): verdict of the noise search's winner} for every prompt row and N, resumable through
    `partial` (JSON lines; a line counts only for the same verifier, seed and search settings)."""
    done, key = {}, verifier.fingerprint()
    for r in read_jsonl(partial) if partial is not None else []:  # torn lines: warned, dropped, computed again
        if (r.get("seed"), r.get("rounds"), r.get("radius"), r.get("k"), r.get("verifier")) == (seed, rounds, radius, k, key):
            done[r["row"], r["n"]] = r["correct"]
    evaluator, firsts = ShapesEvaluator(), candidate_offsets(prompts, k)  # each row's first pool candidate
    todo = [(r, n) for r in range(len(prompts)) for n in sorted(ns) if n > 0 and (r, n) not in done]
    for r, n in tqdm(todo, desc="noise search", disable=not progress):
        spec = prompts[r]
        res = noise_search(world.pipeline, verifier, spec.prompt, n, rounds=rounds, radius=radius, seed=seed,
                           first=firsts[r], batch_size=8, gen=world.gen_config)
        done[r, n] = bool(evaluator.evaluate(res.image, spec).correct)
        if partial is not None:
            append_line(partial, json.dumps({"row": r, "n": n, "correct": done[r, n], "seed": seed, "rounds": rounds,
                                             "radius": radius, "k": k, "verifier": key,
                                             "round_of_winner": res.extra["round"][res.chosen]}))
    return done


def assemble(values: dict, plan_n: dict, cost_models, budgets, methods, tags, meanings, n_boot: int, seed: int,
             pool_verdict: np.ndarray, pool_scores: dict) -> xr.Dataset:
    """The table dataset from per-row values {(cost model, budget, method): (rows,)}."""
    tags, meanings = np.asarray(tags), np.asarray(meanings)
    weights = meaning_draws(tags, meanings, n_boot, seed)
    names, uniq_tags = [cm.name for cm in cost_models], sorted(set(tags))
    shape = (len(names), len(budgets), len(methods))
    value, lo, hi, nn = (np.full(shape, np.nan) for _ in range(4))
    tag_value, tag_lo, tag_hi = (np.full((*shape, len(uniq_tags)), np.nan) for _ in range(3))
    comps = [c for c in COMPARISONS if c[0] in methods and c[1] in methods]
    diff, diff_lo, diff_hi = (np.full((len(names), len(budgets), len(comps)), np.nan) for _ in range(3))
    for i, name in enumerate(names):
        for j, b in enumerate(budgets):
            reps = {}
            for m_i, m in enumerate(methods):
                nn[i, j, m_i] = plan_n[name, b, m]
                v = values[name, b, m]
                if np.isnan(v).any():
                    continue
                reps[m] = overall_score(tags, v, weights)
                value[i, j, m_i] = overall_score(tags, v)
                lo[i, j, m_i], hi[i, j, m_i] = interval(reps[m])
                for t_i, t in enumerate(uniq_tags):
                    rows = tags == t
                    tag_value[i, j, m_i, t_i] = v[rows].mean()
                    w = weights[:, rows]
                    tag_lo[i, j, m_i, t_i], tag_hi[i, j, m_i, t_i] = interval((w @ v[rows]) / w.sum(1))
            for c_i, (a, ref) in enumerate(comps):
                if a in reps and ref in reps:
                    diff[i, j, c_i] = value[i, j, methods.index(a)] - value[i, j, methods.index(ref)]
                    diff_lo[i, j, c_i], diff_hi[i, j, c_i] = paired_interval(reps[a], reps[ref])
    plain = np.array([[b * cm.plain_ms() for b in budgets] for cm in cost_models])
    dims, tdims, cdims = ("cost_model", "budget", "verifier"), ("cost_model", "budget", "verifier", "tag"), ("cost_model", "budget", "comparison")
    data = {"value": (dims, value), "lo": (dims, lo), "hi": (dims, hi), "n": (dims, nn),
            "budget_ms": (("cost_model", "budget"), plain),
            "tag_value": (tdims, tag_value), "tag_lo": (tdims, tag_lo), "tag_hi": (tdims, tag_hi),
            "diff": (cdims, diff), "diff_lo": (cdims, diff_lo), "diff_hi": (cdims, diff_hi),
            "pool_verdict": (("row", "candidate"), pool_verdict.astype(np.int8))}
    for m, s in pool_scores.items():
        data[f"pool_score_{m}"] = (("row", "candidate"), s.astype(np.float32))
    coords = {"cost_model": names, "budget": list(budgets), "verifier": list(methods), "tag": uniq_tags,
              "comparison": [f"{a}-{b}" for a, b in comps], "row_tag": ("row", tags), "row_meaning": ("row", meanings)}
    return xr.Dataset(data, coords=coords)


def check_table(verifiers: dict, methods, budgets, world) -> int | None:
    """Every input error before compute; returns the VHS verifier's block (None without one)."""
    known = [name for name, p in PATHS.items() if p.in_table]
    bad = [m for m in methods if m not in known]
    if bad or not methods:
        raise SearchError(f"unknown verifiers {bad or methods}: choose from {', '.join(known)}")
    if not budgets or any(not np.isfinite(b) or b <= 0 for b in budgets):
        raise SearchError(f"budgets are positive numbers of plain generations, got {list(budgets)}")
    blocks = {}
    for m in methods:
        if PATHS[m].site is not None:
            if m not in verifiers:
                raise SearchError(f"no verifier given for {m!r}")
            path, blocks[m] = path_of(verifiers[m])
            if path.name != m:
                raise SearchError(f"the verifier given for {m!r} reads {verifiers[m].config.site!r} (the {path.name} path)")
            num = len(find_transformer(world.pipeline).transformer_blocks)
            if blocks[m] is not None and blocks[m] >= num:
                raise SearchError(f"the verifier reads {Site.block(blocks[m])}, but the generator has blocks 0-{num - 1}")
    return blocks["vhs"] if "vhs" in methods else None


def budget_plan(world, verifiers: dict, budgets, cost_models, methods, noise: bool = True, noise_budgets=None,
                option: str = "budget", rounds: int = 3) -> dict:
    """`plan` of the table's cells after `check_table`, refused before compute when a budget buys no
    candidate on any path or more than MAX_N on one (the error names `option`)."""
    block = check_table(verifiers, list(methods), budgets, world)
    num_blocks = len(find_transformer(world.pipeline).transformer_blocks)
    plan_n = plan(cost_models, budgets, list(methods) + ([NOISE] if noise and "vhs" in methods else []),
                  {"vhs": block}, num_blocks, rounds)
    if noise_budgets is not None:
        plan_n.update({(c, b, m): 0 for (c, b, m) in plan_n if m == NOISE and b not in set(noise_budgets)})
    for b in budgets:
        if not any(n for (_c, bb, _m), n in plan_n.items() if bb == b):
            raise SearchError(f"{option} {b:g} (plain generations) buys no candidate on any path (N < 1); "
                              "the budgets are in plain generations, e.g. 1,2,4,8")
    (cm, b, m), n = max(plan_n.items(), key=lambda item: item[1])
    if n > MAX_N:
        raise SearchError(f"{option} {b:g} (plain generations) buys N = {n} candidates per prompt row ({m} under {cm}); "
                          f"at most {MAX_N}: lower the budgets")
    return plan_n


def budget_table(world, verifiers: dict, prompts, budgets, cost_models, *, methods=("vhs", "vision", "ae", "none", "oracle"),
                 seed: int = 2, noise: bool = True, noise_budgets=None, rounds: int = 3, radius: float = 0.5,
                 workdir: Path, n_boot: int = 1000, progress: bool = True) -> xr.Dataset:
    """The budget table of `methods` (+ `noise` search when `noise` and `vhs` is among them) on `prompts`,
    at `budgets` plain generations under each cost model (noise search only at `noise_budgets`, default
    all: it generates its own candidates). `workdir` keeps the pool store and the noise search's
    finished rows, so an interrupted run resumes."""
    methods = list(methods)
    all_methods = methods + ([NOISE] if noise and "vhs" in methods else [])
    verified = [m for m in methods if PATHS[m].site is not None]  # the paths that read a verifier
    plan_n = budget_plan(world, verifiers, budgets, cost_models, methods, noise, noise_budgets, rounds=rounds)
    k = max([1] + [n for (_c, _b, m), n in plan_n.items() if m != NOISE])
    sites = sorted({verifiers[m].config.site for m in verified})
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    pool = pool_store(world, prompts, k, seed, sites, workdir / f"pool-x{k}-seed{seed}.zarr", progress)
    rows = len(prompts)
    verdict, keys = candidate_rows(pool)
    verdict = verdict.reshape(rows, k)
    scores = {m: score_store(verifiers[m], pool).reshape(rows, k) for m in verified}
    values = {(cm, b, m): _pick(verdict, scores.get(m), n, m) for (cm, b, m), n in plan_n.items() if m != NOISE}
    if NOISE in all_methods:
        ns = {n for (_c, _b, m), n in plan_n.items() if m == NOISE}
        done = run_noise_search(world, verifiers["vhs"], prompts, ns, k, seed, rounds, radius,
                                workdir / "noise_search.jsonl", progress)
        for (cm, b, m), n in plan_n.items():
            if m == NOISE:
                values[cm, b, m] = np.array([float(done[r, n]) for r in range(rows)]) if n else np.full(rows, np.nan)
    tags, meanings = (np.asarray(keys[c]).reshape(rows, k)[:, 0].astype(object) for c in ("tag", "meaning"))
    ds = assemble(values, plan_n, cost_models, budgets, all_methods, tags, meanings, n_boot, seed, verdict, scores)
    ds.attrs.update({"seed": seed, "pool_size": k, "n_prompt_rows": rows, "n_meanings": len(set(meanings)),
                     "sites": json.dumps({m: verifiers[m].config.site for m in verified}),
                     "cards": json.dumps({cm.name: cm.card for cm in cost_models}),
                     "cost_notes": json.dumps({cm.name: cm.note for cm in cost_models if cm.note}),
                     "noise_rounds": rounds, "noise_radius": radius, "n_boot": n_boot})
    return ds


def table_summary(ds: xr.Dataset) -> dict:
    """Plain numbers of a budget table: per cost model and budget, each method's N and score with its
    interval, and the paired differences."""
    out = {}
    for cm in ds.cost_model.values:
        out[str(cm)] = {}
        for b in ds.budget.values:
            cell = ds.sel(cost_model=cm, budget=b)
            row = {"budget_ms": round(float(cell.budget_ms), 1)}
            for m in ds.verifier.values:
                c = cell.sel(verifier=m)
                row[str(m)] = {"n": int(c["n"]), "value": float(c["value"]), "ci": [float(c["lo"]), float(c["hi"])],
                               "per_tag": {str(t): float(c["tag_value"].sel(tag=t)) for t in ds.tag.values}}
            for comp in ds.comparison.values:
                d = cell.sel(comparison=comp)
                row[f"diff {comp}"] = {"value": float(d["diff"]), "ci": [float(d["diff_lo"]), float(d["diff_hi"])]}
            out[str(cm)][f"{b:g}"] = row
    return out


@dataclass
class TableResult:
    """What `bestofn_table` computed: the budget table `ds` of the suite `prompts` at root `seed`, and the
    N each cell bought (`plan_n`). `to_json()` is what `vhslab bestofn --json` prints; `plot()` the budget curve."""

    prompts: str
    seed: int
    ds: xr.Dataset
    plan_n: dict

    def to_json(self) -> dict:
        """The table's size and its plain numbers (`table_summary`)."""
        ds = self.ds
        return {"prompts": self.prompts, "n_prompt_rows": ds.attrs["n_prompt_rows"], "n_meanings": ds.attrs["n_meanings"],
                "pool_size": ds.attrs["pool_size"], "seed": self.seed, "table": table_summary(ds)}

    def plot(self):
        """The budget-curve figure (`vhslab.figures.search.plot_budget_curve`)."""
        return plot_budget_curve(self.ds)


def plan_lines(cost_models, budgets, plan_n: dict) -> list[str]:
    """The cost models' notes, then per cost model the N each budget buys per prompt row on each path."""
    lines = [f"note: cost model {cm.name}: {cm.note}" for cm in cost_models if cm.note]
    for cm in cost_models:
        lines.append(f"N per prompt row under {cm.name}: " + "; ".join(
            f"budget {b:g}: " + ", ".join(f"{m} {n}" for (c, bb, m), n in plan_n.items() if c == cm.name and bb == b)
            for b in budgets))
    return lines


def bestofn_table(prompts: str, budgets, cost_models, methods, verifiers: dict[str, str], *, noise: bool = True,
                  noise_budgets=None, rounds: int = 3, radius: float = 0.5, seed: int = 2, n_boot: int = 1000,
                  workdir: Path | None = None, progress: bool = True, option: str = "--budgets",
                  log: Callable[[str], None] | None = None) -> TableResult:
    """`vhslab bestofn`: the budget table in the world of the suite `prompts` (`load_suite`), each of
    `methods` with a verifier read from `verifiers` ({vhs | vision | ae: 'default' or a folder}); the plan
    is checked (errors name `option`) and its lines (`plan_lines`) passed to `log` before any compute.
    `workdir` defaults to `default_workdir(world)` ($VHSLAB_CACHE/bestofn/{content key})."""
    suite = load_suite(prompts)
    world = load_world()
    loaded = {m: named_verifier(p, kind=m) for m, p in verifiers.items() if m in methods}
    plan_n = budget_plan(world, loaded, budgets, cost_models, methods, noise, noise_budgets, option, rounds)
    for line in plan_lines(cost_models, budgets, plan_n) if log is not None else []:
        log(line)
    ds = budget_table(world, loaded, suite, budgets, cost_models, methods=methods, seed=seed, noise=noise,
                      noise_budgets=noise_budgets, rounds=rounds, radius=radius,
                      workdir=workdir or default_workdir(world), n_boot=n_boot, progress=progress)
    return TableResult(prompts, seed, ds, plan_n)
