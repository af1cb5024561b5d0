"""`vhslab generate`: one good picture, picked by a latent verifier from N one-step candidates."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from PIL import Image

from vhslab.cli.common import (
    MAX_N,
    MAX_SIDE,
    check_prompt,
    check_side,
    claim_outputs,
    comma_list,
    console,
    dit_row_bytes,
    emit,
    finite,
    fit_batch,
    positive_number,
    save_outputs,
)
from vhslab.cli.options import (
    JsonFlag,
    OverwriteOutPlot,
    Progress,
    Seed,
    json_flag,
    out_option,
    overwrite_flag,
    plot_option,
    seed_option,
)
from vhslab.errors import InputError
from vhslab.outputs import save_figure, save_json
from vhslab.search import generate_picture, load_cost_model
from vhslab.search.bench import bench_device, run_bench
from vhslab.search.prune_table import pruning_table
from vhslab.search.table import bestofn_table
from vhslab.verifier.load import named_verifier
from vhslab.world import load_world

OverwriteOut = overwrite_flag("replace --out if it exists")
OverwriteCostModel = overwrite_flag("replace --save-cost-model if it exists")
RootSeed = seed_option("root seed (the verifiers were trained on seed 0, evaluated on 1)")
GenerateJson = json_flag("print scores and per-stage timings as one JSON object")
TableOut = out_option("table dataset to write (.nc)")
CurvePlot = plot_option("save the budget-curve figure to this image")


def generate_cmd(
    prompt: str = typer.Argument(..., help='e.g. "a photo of two red circles"'),
    out: Path = typer.Option(..., "-o", "--out", help="PNG file to write"),
    n: int = typer.Option(8, "--n", min=1, max=MAX_N, help="candidates to score"),
    verifier: str = typer.Option("default", help="'default' (the shipped verifier) or a saved verifier folder"),
    seed: Seed = 0,
    batch_size: int = typer.Option(8, min=1, help="candidates per call (clipped to --n)"),
    upscale: int = typer.Option(1, min=1, max=MAX_SIDE, help=f"enlarge the saved image by this integer factor (nearest; at most {MAX_SIDE} px a side)"),
    overwrite: OverwriteOut = False,
    as_json: GenerateJson = False,
) -> None:
    """Generate N candidates with the world's generator up to the verifier's block, score them, finish and
    decode only the winner; the evaluator's verdict of the winner is reported. The prompt must be one the world renders."""
    spec = check_prompt(prompt)  # the world renders shapes-world prompts only: nothing else is generated
    outs = claim_outputs("generate", overwrite, inputs={"--verifier": verifier}, out=out)
    world = load_world()
    gen = world.gen_config.resolve(world.pipeline)
    check_side(max(gen.height, gen.width) * upscale, f"--upscale {upscale}")
    batch_size = fit_batch(batch_size, n, dit_row_bytes(world.pipeline, gen.height, gen.width))
    v = named_verifier(verifier)
    res = generate_picture(world, v, prompt, n, seed=seed, batch_size=batch_size, upscale=upscale, spec=spec)
    save_figure(outs["out"], Image.fromarray(res.image))
    result = {"out": str(out), **res.to_json()}
    emit(result, as_json, title="generate")


def _cost_models(spec: str, card: str | None = None):
    names = comma_list(spec)
    if not names:
        raise InputError("--cost-model names at least one cost model (world, sana-sprint-1.6b or a JSON file)")
    return [load_cost_model(n, card=card) for n in names]


def bestofn_cmd(
    prompts: str = typer.Option("geneval-shapes", help="a prompt suite or GenEval metadata file"),
    verifiers: str = typer.Option("vhs,vision,ae,none,oracle", help="comma list of vhs, vision, ae, none, oracle"),
    budgets: str = typer.Option("1,2,4,8", help="budgets in plain generations (of each cost model); the N each buys "
                                f"is printed first, at most {MAX_N} per prompt row"),
    cost_model: str = typer.Option("world,sana-sprint-1.6b", help="comma list: world, sana-sprint-1.6b or JSON files"),
    card: str = typer.Option(None, help="refuse a cost model measured on another card than this (e.g. H200)"),
    vhs: str = typer.Option("default", help="the VHS verifier: 'default' (shipped) or a folder"),
    vision_verifier: str = typer.Option("default", "--vision-verifier", help="the vision verifier: 'default' or a folder"),
    ae: str = typer.Option("default", help="the ae_latent verifier: 'default' or a folder"),
    noise_search: bool = typer.Option(True, help="add the noise search's row (same budget as VHS Best-of-N)"),
    noise_budgets: str = typer.Option("1,2", help="budgets at which noise search runs ('all' for every budget)"),
    rounds: int = typer.Option(3, min=1, help="noise search rounds"),
    radius: float = typer.Option(0.5, min=0.01, max=1.0, callback=finite, help="noise search step: x = sqrt(1-r^2) best + r eps"),
    seed: RootSeed = 2,
    n_boot: int = typer.Option(1000, min=10),
    workdir: Path = typer.Option(None, help="pool store and noise-search rows (default: $VHSLAB_CACHE/bestofn/KEY, keyed by content)"),
    out: TableOut = None,
    plot: CurvePlot = None,
    overwrite: OverwriteOutPlot = False,
    progress: Progress = True,
    as_json: JsonFlag = False,
) -> None:
    """The paper's main table in the world: GenEval-style score of Best-of-N per verifier against a time
    budget, N bought per path by each cost model; noise search beside it; intervals over meanings."""
    t0 = time.perf_counter()
    outs = claim_outputs("bestofn", overwrite, inputs={"--prompts": prompts, "--vhs": vhs, "--vision-verifier": vision_verifier,
                         "--ae": ae, "--workdir": workdir, **{f"--cost-model {c}": c for c in comma_list(cost_model)}},
                         out=out, plot=plot)
    methods = comma_list(verifiers)
    budget_list = comma_list(budgets, positive_number, "--budgets", "numbers (each positive)")
    noise_list = None if noise_budgets == "all" else comma_list(noise_budgets, positive_number, "--noise-budgets",
                                                                "numbers (each positive) or 'all'")
    models = _cost_models(cost_model, card)
    res = bestofn_table(prompts, budget_list, models, methods, {"vhs": vhs, "vision": vision_verifier, "ae": ae},
                        noise=noise_search, noise_budgets=noise_list, rounds=rounds, radius=radius, seed=seed,
                        n_boot=n_boot, workdir=workdir, progress=progress,
                        log=lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True))
    result = res.to_json()
    save_outputs(result, res.ds, res.plot, outs)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit(result, as_json, title="bestofn")


def bench_cmd(
    arch: str = typer.Option("world", help="world (the embedded models), sana-sprint-1.6b (real sizes, random weights) "
                             "or tiny (the real-size code at toy sizes, for a CPU check)"),
    device: str = typer.Option(None, help="cpu or cuda (default: cpu for the world, cuda for real sizes)"),
    repeats: int = typer.Option(10, min=1, help="timed runs per stage (median) after warm-up"),
    warmup: int = typer.Option(2, min=0),
    end_to_end: bool = typer.Option(True, help="also time whole best_of_n / noise_search calls at N = 1, 4, 16 and "
                                    "report the cost model's prediction error (world only)"),
    e2e_repeats: int = typer.Option(7, "--e2e-repeats", min=1, help="timed runs per whole call after one warm-up"),
    statistic: str = typer.Option("median", help="median, or min (the least disturbed run: for a machine others load) "
                                  "of the timed runs, for stages and whole calls alike"),
    save_cost_model: Path = typer.Option(None, help="write the measured cost model JSON here"),
    overwrite: OverwriteCostModel = False,
    as_json: JsonFlag = False,
) -> None:
    """Per-stage latency (median) and FLOPs at batch 1 and 4, the per-call stages, the cost model they make,
    ratio_vhs_to_vision, the shipped real-size table beside it, and (world) the model's prediction against
    measured whole calls."""
    device = bench_device(arch, statistic, device)
    outs = claim_outputs("bench", overwrite, save_cost_model=save_cost_model)
    res = run_bench(arch, device, repeats, warmup, end_to_end, e2e_repeats, statistic,
                    progress=console.log)  # stderr: the JSON stays the last line of stdout
    result = res.to_json()
    if save_cost_model is not None:
        save_json(outs["save_cost_model"], res.cost_model)
        result["saved"] = str(save_cost_model)
    emit(result, as_json, title="bench")


def prune_cmd(
    prompts: str = typer.Option("geneval-shapes", help="a prompt suite or GenEval metadata file (held-out meanings)"),
    budgets: str = typer.Option("2,4,8", help="budgets in plain teacher generations (one prompt, every step with "
                                "guidance, one decode) under --cost-model"),
    cost_model: str = typer.Option("world", help="world, sana-sprint-1.6b or a JSON file"),
    scorer: str = typer.Option("vision", help="the teacher's scorer: vision (the shipped vision verifier on decoded "
                               "x0_hat) or oracle (the evaluator: an upper bound)"),
    step: int = typer.Option(None, min=1, help="steps the candidates run before pruning (default: half the teacher's)"),
    k: int = typer.Option(2, min=1, help="candidates continued to the end"),
    rows: int = typer.Option(None, min=1, help="at most this many prompt rows (every j-th of the suite)"),
    vhs: str = typer.Option("default", help="the student's VHS verifier: 'default' (shipped) or a folder"),
    vision_verifier: str = typer.Option("default", "--vision-verifier", help="the vision verifier: 'default' or a folder"),
    seed: RootSeed = 1,
    n_boot: int = typer.Option(1000, min=10),
    batch_size: int = typer.Option(8, min=1, help="candidates per call"),
    out: TableOut = None,
    plot: CurvePlot = None,
    overwrite: OverwriteOutPlot = False,
    progress: Progress = True,
    as_json: JsonFlag = False,
) -> None:
    """Search that prunes early on the world's teacher (N candidates to --step, the top --k continued) against
    Best-of-N on the teacher and the one-step student with VHS, at matched budgets; paired intervals over
    meanings. --plot writes the figure and a PDF beside it."""
    t0 = time.perf_counter()
    outs = claim_outputs("prune", overwrite, inputs={"--prompts": prompts, "--vhs": vhs, "--vision-verifier": vision_verifier,
                         "--cost-model": cost_model}, out=out, plot=plot,
                         plot_pdf=None if plot is None else Path(plot).with_suffix(".pdf"))
    budget_list = comma_list(budgets, positive_number, "--budgets", "numbers (each positive)")
    res = pruning_table(prompts, budget_list, cost_model, scorer=scorer, step=step, k=k, rows=rows, vhs=vhs,
                        vision_verifier=vision_verifier, seed=seed, n_boot=n_boot, batch_size=batch_size, progress=progress)
    result = res.to_json()
    save_outputs(result, res.ds, res.plot, outs)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit(result, as_json, title="prune")
