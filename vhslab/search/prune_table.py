"""Early pruning against Best-of-N on the teacher and against the one-step student with VHS, at matched
budgets (`prune_compare`, `vhslab search prune`).

The budget is in plain teacher generations (one prompt encoding, one call of one candidate through
every step with guidance, one decode) under a cost model; each method buys its own N:
- `prune`: N teacher candidates to `step`, scored there (x0_hat decoded, `scorer`), the top k
  continued and the winner picked by the same scorer at the end (`prune_cost`; N >= k);
- `bon`: N' full teacher runs scored at the end by the same scorer (`bon_cost`);
- `student`: Best-of-N'' of the one-step student with the shipped VHS verifier (`CostModel.call_ms`).

Like the budget table, the teacher's rows are read from one pool per prompt row: its candidates run
in batches to `step` (scored), then on to the end (scored, decoded, judged by the evaluator); the first
N candidates of the pool are exactly those `prune_search(..., seed, first)` generates, and a candidate
continued from `step` equals its uninterrupted run (tested), so pruning and Best-of-N at any N are
picks from the pool. The student's scores come from one `best_of_n` call at the largest N'' per row,
and each budget's winner is generated once. `step` and `k` are fixed a priori (no candidate reported
here chose them). Intervals resample meanings within tags (`meaning_draws`), one draw set for all
cells, so the differences prune - bon and prune - student are paired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from vhslab.figures.pruning import plot_pruning
from vhslab.pipeline import candidate_offsets, sample_seed
from vhslab.search.best_of_n import best_of_n
from vhslab.search.costs import load_cost_model
from vhslab.search.generation import Prompted, SearchError, decode, initial_noise
from vhslab.search.prune import PixelScorer, StepScorer, advance, bon_cost, check_prune, prune_cost
from vhslab.shapes.evaluate import ShapesEvaluator, overall_score
from vhslab.shapes.suites import load_suite
from vhslab.stats import interval, meaning_draws, paired_interval
from vhslab.trace.site import Site, find_transformer
from vhslab.verifier.load import named_verifier
from vhslab.world import load_world

METHODS = ("prune", "bon", "student")
MAX_N = 256


def most_within(cost_of, budget_ms: float, least: int = 1) -> int:
    """The largest N >= `least` (at most MAX_N) whose `cost_of(N)` fits in `budget_ms`; 0 if none does."""
    if cost_of(least) > budget_ms:
        return 0
    n = least
    while n < MAX_N and cost_of(n + 1) <= budget_ms:
        n += 1
    return n


def plan(cm, budgets, steps: int, step: int, k: int, scorer: StepScorer, vhs_block: int, num_blocks: int,
         batch_size: int = 8) -> dict:
    """{(budget, method): N} and {budget: ms} for budgets in plain teacher generations under `cm`."""
    plain = prune_cost(1, steps - 1, 1, steps, None, None, batch_size).ms(cm)
    out, ms = {}, {}
    for b in budgets:
        ms[b] = b * plain
        out[b, "prune"] = most_within(lambda n: prune_cost(n, step, k, steps, scorer, scorer, batch_size).ms(cm),
                                      ms[b], max(k + 1, 2))
        out[b, "bon"] = most_within(lambda n: bon_cost(n, steps, scorer, batch_size).ms(cm), ms[b])
        out[b, "student"] = most_within(lambda n: cm.call_ms("vhs", n, cm.block_at(vhs_block, num_blocks)), ms[b])
    return out, ms


@torch.no_grad()
def teacher_pool(teacher, gen, spec, n: int, step: int, scorer: StepScorer, seed: int, first: int,
                 batch_size: int, evaluator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(partial scores, final scores, evaluator verdicts) of n teacher candidates of one prompt row."""
    sigmas = check_prune(teacher, max(n, 2), step, 1, scorer, scorer, gen)
    prompted = Prompted.encode(teacher, spec.prompt, gen)
    noise = initial_noise(teacher, [sample_seed(seed, spec.prompt, first + j) for j in range(n)], gen)
    partial, final, verdict = [], [], []
    for lo in range(0, n, batch_size):
        part = advance(prompted, noise[lo:lo + batch_size], sigmas, 0, step, scorer.block)
        partial.append(scorer.score(teacher, spec.prompt, part))
        done = advance(prompted, part.latents, sigmas, step, gen.steps, scorer.block)
        final.append(scorer.score(teacher, spec.prompt, done))
        verdict += [float(evaluator.evaluate(im, spec).correct) for im in decode(teacher, done.latents)]
    return np.concatenate(partial).astype(float), np.concatenate(final).astype(float), np.array(verdict)


def prune_pick(partial: np.ndarray, final: np.ndarray, n: int, k: int) -> int:
    """The candidate `prune_search` picks among the first n: top k by partial score, best final score."""
    kept = sorted(np.argsort(-partial[:n], kind="stable")[:k].tolist())
    return kept[int(np.argmax(final[kept]))]


@torch.no_grad()
def student_verdicts(world, verifier, spec, ns: list[int], seed: int, first: int, evaluator) -> dict:
    """{N: verdict} of the student's Best-of-N with the VHS verifier for each N in `ns`: one scoring call at
    the largest N, then each winner generated once (a plain one-step run equals the VHS-finished winner)."""
    gen = world.gen_config.resolve(world.pipeline)
    res = best_of_n(world.pipeline, verifier, spec.prompt, max(ns), seed=seed, first=first, gen=gen)
    prompted = Prompted.encode(world.pipeline, spec.prompt, gen)
    out = {}
    for n in ns:
        j = int(np.argmax(res.scores[:n]))
        image = decode(world.pipeline, prompted.to_latent(initial_noise(world.pipeline, [res.seeds[j]], gen)))[0]
        out[n] = float(evaluator.evaluate(image, spec).correct)
    return out


def summarize(values: dict, plan_n: dict, ms: dict, budgets, tags, meanings, n_boot: int, seed: int) -> xr.Dataset:
    """Score per (budget, method) with its interval and the paired differences prune - bon, prune - student."""
    weights = meaning_draws(tags, meanings, n_boot, seed)
    shape = (len(budgets), len(METHODS))
    value, lo, hi, nn = (np.full(shape, np.nan) for _ in range(4))
    diff, dlo, dhi = (np.full((len(budgets), 2), np.nan) for _ in range(3))
    for i, b in enumerate(budgets):
        reps = {}
        for j, m in enumerate(METHODS):
            nn[i, j] = plan_n[b, m]
            v = values.get((b, m))
            if v is None:
                continue
            reps[m] = overall_score(tags, v, weights)
            value[i, j] = overall_score(tags, v)
            lo[i, j], hi[i, j] = interval(reps[m])
        for c, ref in enumerate(("bon", "student")):
            if "prune" in reps and ref in reps:
                diff[i, c] = value[i, 0] - value[i, METHODS.index(ref)]
                dlo[i, c], dhi[i, c] = paired_interval(reps["prune"], reps[ref])
    dims, cdims = ("budget", "search"), ("budget", "comparison")
    rows = {f"verdict_{m}": (("budget", "row"), np.stack([values.get((b, m), np.full(len(tags), np.nan)) for b in budgets]))
            for m in METHODS}
    return xr.Dataset({"value": (dims, value), "lo": (dims, lo), "hi": (dims, hi), "n": (dims, nn),
                       "budget_ms": ("budget", [ms[b] for b in budgets]), "diff": (cdims, diff), "diff_lo": (cdims, dlo),
                       "diff_hi": (cdims, dhi), **rows},
                      coords={"budget": list(budgets), "search": list(METHODS), "comparison": ["prune-bon", "prune-student"],
                              "row_tag": ("row", np.asarray(tags)), "row_meaning": ("row", np.asarray(meanings))})


def check_compare(world, budgets, step: int, k: int, rows: int | None) -> None:
    """Input errors before compute."""
    if world.teacher is None:
        raise SearchError("this world ships no teacher (load_world().teacher is None)")
    if not budgets or any(not np.isfinite(b) or b <= 0 for b in budgets):
        raise SearchError(f"budgets are positive numbers of plain teacher generations, got {list(budgets)}")
    if rows is not None and rows < 1:
        raise SearchError(f"--rows must be >= 1, got {rows}")
    check_prune(world.teacher, k + 1, step, k, StepScorer(), StepScorer(), world.teacher_gen_config.resolve(world.teacher))


def subset(prompts: list, rows: int | None) -> list:
    """Every j-th prompt row so that at most `rows` remain (all tags kept in proportion)."""
    if rows is None or rows >= len(prompts):
        return list(prompts)
    return list(prompts[:: int(np.ceil(len(prompts) / rows))])


@dataclass
class PruneComparison:
    """What `prune_compare` computed: `ds` (score per budget and method, paired differences, verdicts per
    row) and its settings. `to_json()` is what `vhslab search prune --json` prints."""

    ds: xr.Dataset
    settings: dict

    def plot(self):
        """The budget-curve figure (`vhslab.figures.pruning.plot_pruning`)."""
        return plot_pruning(self.ds)

    def to_json(self) -> dict:
        """Settings, then per budget each method's N, score and interval, and the paired differences."""
        out = {}
        for b in self.ds.budget.values:
            cell = self.ds.sel(budget=b)
            row = {"budget_ms": round(float(cell.budget_ms), 1)}
            for m in METHODS:
                c = cell.sel(search=m)
                row[m] = {"n": int(c["n"]), "value": float(c["value"]), "ci": [float(c["lo"]), float(c["hi"])]}
            for comp in self.ds.comparison.values:
                d = cell.sel(comparison=comp)
                row[str(comp)] = {"value": float(d["diff"]), "ci": [float(d["diff_lo"]), float(d["diff_hi"])]}
            out[f"{b:g}"] = row
        return {**self.settings, "table": out}


def prune_compare(world, prompts: list, budgets, cost_model, scorer: StepScorer, vhs_verifier, *, step: int,
                  k: int, seed: int = 1, n_boot: int = 1000, batch_size: int = 8, progress: bool = True) -> PruneComparison:
    """Pruning (N to `step`, top `k`, `scorer` at both ends) vs teacher Best-of-N (`scorer` at the end) vs
    the student's Best-of-N with `vhs_verifier`, at `budgets` plain teacher generations under `cost_model`,
    GenEval-style by the shapes evaluator over `prompts` (PromptSpec rows)."""
    check_compare(world, budgets, step, k, None)
    gen = world.teacher_gen_config.resolve(world.teacher)
    num = len(find_transformer(world.pipeline).transformer_blocks)
    vhs_block = Site.parse(vhs_verifier.config.site).index
    plan_n, ms = plan(cost_model, budgets, gen.steps, step, k, scorer, vhs_block, num, batch_size)
    pool = max(plan_n[b, m] for b in budgets for m in ("prune", "bon"))
    stud = sorted({plan_n[b, "student"] for b in budgets} - {0})
    evaluator, firsts = ShapesEvaluator(), candidate_offsets(prompts, max(pool, max(stud, default=1)))
    values = {key: np.full(len(prompts), np.nan) for key in plan_n if plan_n[key]}
    for r, spec in enumerate(tqdm(prompts, desc="prune compare", disable=not progress)):
        if pool:
            partial, final, verdict = teacher_pool(world.teacher, gen, spec, pool, step, scorer, seed, firsts[r],
                                                   batch_size, evaluator)
        s_v = student_verdicts(world, vhs_verifier, spec, stud, seed, firsts[r], evaluator) if stud else {}
        for b in budgets:
            if plan_n[b, "prune"]:
                values[b, "prune"][r] = verdict[prune_pick(partial, final, plan_n[b, "prune"], k)]
            if plan_n[b, "bon"]:
                values[b, "bon"][r] = verdict[int(np.argmax(final[:plan_n[b, "bon"]]))]
            if plan_n[b, "student"]:
                values[b, "student"][r] = s_v[plan_n[b, "student"]]
    tags = [p.tag for p in prompts]
    meanings = [p.meaning for p in prompts]
    ds = summarize(values, plan_n, ms, list(budgets), tags, meanings, n_boot, seed)
    settings = {"steps": gen.steps, "step": step, "k": k, "scorer": scorer.name, "cost_model": cost_model.name,
                "card": cost_model.card, "seed": seed, "n_prompt_rows": len(prompts), "n_meanings": len(set(meanings)),
                "pool_size": pool, "vhs_site": vhs_verifier.config.site}
    ds.attrs.update({k2: str(v) for k2, v in settings.items()})
    return PruneComparison(ds, settings)


def pruning_table(prompts: str, budgets, cost_model: str = "world", *, scorer: str = "vision", step: int | None = None,
                  k: int = 2, rows: int | None = None, vhs: str = "default", vision_verifier: str = "default",
                  seed: int = 1, n_boot: int = 1000, batch_size: int = 8, progress: bool = True) -> PruneComparison:
    """`vhslab prune`: `prune_compare` in the shipped world on the suite `prompts` (at most `rows` rows, every
    j-th), the teacher's candidates scored by `scorer` ("vision": the shipped vision verifier on decoded
    x0_hat; "oracle": the evaluator, an upper bound), `step` (default: half the teacher's steps) and `k`
    fixed a priori; the student's Best-of-N with the VHS verifier `vhs`. Errors before compute."""
    if scorer not in ("vision", "oracle"):
        raise SearchError(f"--scorer is vision or oracle, got {scorer!r}")
    cm = load_cost_model(cost_model)
    world = load_world()
    if world.teacher is not None and step is None:
        step = world.teacher_gen_config.steps // 2
    check_compare(world, budgets, step, k, rows)
    suite = subset(load_suite(prompts), rows)
    scoring = (PixelScorer.vision(named_verifier(vision_verifier, kind="vision"), world.vision) if scorer == "vision"
               else PixelScorer.oracle())
    res = prune_compare(world, suite, budgets, cm, scoring, named_verifier(vhs, kind="vhs"), step=step, k=k, seed=seed,
                        n_boot=n_boot, batch_size=batch_size, progress=progress)
    res.ds.attrs["prompts"] = prompts  # the suite, for the figure's caption
    return res


__all__ = ["METHODS", "PruneComparison", "check_compare", "most_within", "plan", "prune_compare", "prune_pick", "pruning_table",
           "student_verdicts", "subset", "summarize", "teacher_pool"]
