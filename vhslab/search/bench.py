"""The cost bench: per-stage latency (median after warm-up) and FLOPs (torch's FlopCounterMode) of
the DiT, decoder, vision encoder, connector and LLM prefill at batch 1 and 4, the per-call stages
(the prompt's encoding, a pipeline call's overhead beyond its DiT), the cost model they make, and
that model's prediction held against whole `best_of_n` / `noise_search` calls (`prediction_error`).

Stages are callables of the batch size, built the same way for the world (its trained models and
the verifier's real inputs) and for a real-size architecture with random weights (`real_size_stages`:
no download; on a GPU it times SANA-Sprint 1.6B + DC-AE + CLIP ViT-L/14-336 + Qwen2.5-0.5B).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from vhslab.errors import InputError
from vhslab.schemas import CostModelFile, check
from vhslab.search.best_of_n import best_of_n
from vhslab.search.costs import CostModel, load_cost_model
from vhslab.search.generation import Prompted, SearchError, initial_noise
from vhslab.search.noise_search import noise_search
from vhslab.search.real_size import real_size_stages
from vhslab.search.stages import Stages, card_name
from vhslab.threads import fit
from vhslab.trace.site import Site, find_transformer
from vhslab.verifier.load import load_verifier
from vhslab.world import load_world

STAGE_NAMES = ("dit", "decode", "vision_encode", "connector", "llm_prefill")
PROMPT = "a photo of a red circle left of a blue square"  # the prompt every timed call uses


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


STATISTICS = {"median": statistics.median, "min": min}  # min: the least disturbed run, for a shared machine


@torch.no_grad()
def median_ms(call: Callable[[], object], device: str = "cpu", repeats: int = 10, warmup: int = 2,
              statistic: str = "median") -> float:
    """ms of `call`: the median (or `statistic`) of `repeats` timed runs after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        call()
        _sync(device)
        times.append(1000 * (time.perf_counter() - t0))
    return STATISTICS[statistic](times)


@torch.no_grad()
def count_flops(call: Callable[[], object]) -> int:
    """The FLOPs torch counts in one run of `call`."""
    with FlopCounterMode(display=False) as counter:
        call()
    return int(counter.get_total_flops())


def measure(stages: Stages, batches=(1, 4), repeats: int = 10, warmup: int = 2, flops: bool = True,
            progress: Callable[[str], None] | None = None, statistic: str = "median") -> dict:
    """{batch: {stage: {"ms", "ms_per_candidate", "gflop_per_candidate"}}} for every stage and batch, and
    {"per_call": {stage: {"ms"}}} for the per-call stages."""
    out = {}
    for b in batches:
        out[b] = {}
        for name in STAGE_NAMES:
            if progress:
                progress(f"{name} @ batch {b}")
            call = stages.run[name](b)
            ms = median_ms(call, stages.device, repeats, warmup, statistic)
            row = {"ms": ms, "ms_per_candidate": ms / b}
            if flops:
                row["gflop_per_candidate"] = count_flops(call) / b / 1e9
            out[b][name] = row
    for name, call in stages.per_call.items():
        if progress:
            progress(name)
        out.setdefault("per_call", {})[name] = {"ms": median_ms(call, stages.device, repeats, warmup, statistic)}
    return out


def per_call_ms(stages: Stages, measured: dict) -> dict:
    """The per-call stages: the prompt's encoding, and a one-candidate pipeline call less its DiT (the
    call's overhead; 0 if the difference is lost in noise); both 0 where `stages` has none."""
    calls = measured.get("per_call", {})
    if not {"prompt_encode", "pipeline_call"} <= set(calls):
        return {"prompt_encode": 0.0, "call_overhead": 0.0}
    return {"prompt_encode": calls["prompt_encode"]["ms"],
            "call_overhead": max(0.0, calls["pipeline_call"]["ms"] - measured[1]["dit"]["ms"])}


def cost_model_json(stages: Stages, measured: dict, source: str) -> dict:
    """The cost-model JSON (`vhslab.search.costs`) of a measurement: per candidate at batch 1 and 4 and
    per call; `dit_block` is the DiT's time over its blocks, `llm_prefill` includes the connector."""
    def table(b):
        m = measured[b]
        return {"dit_block": m["dit"]["ms_per_candidate"] / stages.num_blocks, "decode": m["decode"]["ms_per_candidate"],
                "vision_encode": m["vision_encode"]["ms_per_candidate"], "llm_prefill": m["llm_prefill"]["ms_per_candidate"]}

    per_call = "per_call: the prompt's encoding (once per search) and a one-candidate pipeline call less its DiT " \
               "(per batch of candidates and for the winner)" if stages.per_call else \
               "per_call: not measured (no pipeline or text encoder at this architecture), 0"
    model = {"name": stages.name, "card": stages.card, "dtype": stages.dtype, "source": source,
             "threads": torch.get_num_threads(), "num_blocks": stages.num_blocks,
             "stages_ms": {"batch_1": table(1), "batch_4": table(4), "per_call": per_call_ms(stages, measured)},
             "note": "batch_1 / batch_4: per candidate; dit_block = the DiT's time / its blocks; llm_prefill includes "
                     f"the connector; {per_call}"}
    check(CostModelFile, model, "the measured cost model", SearchError)  # what load_cost_model will accept
    return model


def _dit_inputs(pipe, gen) -> dict:
    """The keyword arguments the pipeline hands its DiT for one prompt (recorded from one call)."""
    dit, seen = find_transformer(pipe), {}

    def grab(_module, args, kwargs):
        seen.update(kwargs)
        if args:
            seen["hidden_states"] = args[0]

    handle = dit.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        Prompted.encode(pipe, PROMPT, gen).to_latent(initial_noise(pipe, [0], gen))
    finally:
        handle.remove()
    return {k: v for k, v in seen.items() if k != "return_dict"}


def _expand(kwargs: dict, b: int) -> dict:
    return {k: v.expand(b, *v.shape[1:]).contiguous() if torch.is_tensor(v) and v.ndim and v.shape[0] == 1 else v
            for k, v in kwargs.items()}


def world_stages(world, verifier) -> Stages:
    """The world's stages: its DiT with a recorded prompt, decoder, CLIP vision tower (with its image
    processor), `verifier`'s connector and LLM (with its question and token pooling), and per call the
    prompt's encoding and a one-candidate pipeline call as `best_of_n` makes them."""
    pipe, gen = world.pipeline, world.gen_config.resolve(world.pipeline)
    dit, vae = find_transformer(pipe), pipe.vae
    inputs = _dit_inputs(pipe, gen)
    lat = inputs["hidden_states"]
    hidden_width = verifier.config.in_channels
    tokens = lat.shape[-1] * lat.shape[-2]
    g = torch.Generator().manual_seed(0)

    def dit_run(b):
        kw = _expand(inputs, b)
        return lambda: dit(**kw, return_dict=False)

    def decode_run(b):
        z = torch.randn(b, *lat.shape[1:], generator=g)
        return lambda: vae.decode(z, return_dict=False)

    def vision_run(b):
        images = torch.randint(0, 256, (b, gen.height, gen.width, 3), generator=g, dtype=torch.uint8).numpy()
        return lambda: world.vision(images)

    def connector_run(b):
        h = torch.randn(b, tokens, hidden_width, generator=g)
        return lambda: verifier.visual_tokens(h)

    def prefill_run(b):
        h = torch.randn(b, tokens, hidden_width, generator=g)
        return lambda: verifier.score(h, [PROMPT] * b, batch_size=b)

    prompted, noise = Prompted.encode(pipe, PROMPT, gen), initial_noise(pipe, [0], gen)
    block = Site.parse(verifier.config.site).index
    return Stages("world", card_name("cpu"), "float32", len(dit.transformer_blocks), block,
                  {"dit": dit_run, "decode": decode_run, "vision_encode": vision_run, "connector": connector_run,
                   "llm_prefill": prefill_run},
                  per_call={"prompt_encode": lambda: Prompted.encode(pipe, PROMPT, gen),
                            "pipeline_call": lambda: prompted.to_latent(noise)})


def ratio_vhs_to_vision(model, block: int | None = None) -> float:
    """VHS cost per candidate over the vision path's, at batch 4 (a CostModel; block in its own blocks)."""
    return model.split_ms("vhs", block)[1] / model.split_ms("vision")[1]


def best_of_4_share(model, block: int) -> float:
    """VHS Best-of-4 with the winner finished over the vision path's Best-of-4 (whole calls)."""
    fixed, per = model.split_ms("vhs", block)
    return (fixed + 4 * per) / (4 * model.split_ms("vision")[1])


def end_to_end(world, verifiers: dict, ns=(1, 4, 16), repeats: int = 5, batch_size: int = 4, rounds: int = 3,
               progress: Callable[[str], None] | None = None, statistic: str = "median") -> dict:
    """Median (or `statistic`) ms of whole calls on the world per path and N after one warm-up each:
    `best_of_n` per verifier ("none" too), and `noise_search` in `rounds` rounds with the "vhs" one (as
    "noise"). The calls take turns, one of each per repeat, so a burst of load falls on all alike."""
    calls = {name: lambda n, v=v: best_of_n(world.pipeline, v, PROMPT, n, batch_size=batch_size, gen=world.gen_config,
                                            vision=world.vision) for name, v in verifiers.items()}
    if "vhs" in verifiers:
        calls["noise"] = lambda n: noise_search(world.pipeline, verifiers["vhs"], PROMPT, n, rounds=rounds,
                                                batch_size=batch_size, gen=world.gen_config)
    times = {(name, n): [] for name in calls for n in ns}
    with torch.no_grad():
        for rep in range(repeats + 1):
            if progress:
                progress(f"whole calls, {'warm-up' if rep == 0 else f'repeat {rep} of {repeats}'}")
            for name, n in times:
                t0 = time.perf_counter()
                calls[name](n)
                if rep:
                    times[name, n].append(1000 * (time.perf_counter() - t0))
    return {name: {n: STATISTICS[statistic](times[name, n]) for n in ns} for name in calls}


def predicted(model, block: int, paths, ns=(1, 4, 16), batch_size: int = 4, rounds: int = 3) -> dict:
    """{path: {N: ms}}: what the cost model (`CostModel.call_ms`) predicts for `end_to_end`'s calls."""
    return {p: {n: model.call_ms("vhs" if p == "noise" else p, n, block if p in ("vhs", "noise") else None, batch_size,
                                 rounds if p == "noise" else 1) for n in ns} for p in paths}


def prediction_error(prediction: dict, measured: dict) -> dict:
    """{path: {N: (predicted - measured) / measured}}."""
    return {p: {n: prediction[p][n] / ms - 1 for n, ms in row.items()} for p, row in measured.items()}


ARCHES = ("world", "sana-sprint-1.6b", "tiny")
REAL_BLOCK = 7  # the paper's site (h7) in SANA-Sprint 1.6B; the world's own verifier block is mapped by depth where noted


def bench_device(arch: str, statistic: str, device: str | None) -> str:
    """Check a bench's settings before anything is loaded; the device to time on (default: cpu for the
    world, cuda for real sizes)."""
    if arch not in ARCHES:
        raise InputError(f"--arch is world, sana-sprint-1.6b or tiny, got {arch!r}")
    if statistic not in STATISTICS:
        raise InputError(f"--statistic is median or min, got {statistic!r}")
    device = device or ("cpu" if arch == "world" else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA device here (real sizes are meant for a GPU; --device cpu forces it)")
    return device


@dataclass
class BenchResult:
    """What `run_bench` measured: the report `vhslab bench --json` prints (`to_json()`) and the cost model
    JSON it makes (`cost_model`, what `--save-cost-model` writes)."""

    report: dict
    cost_model: dict

    def to_json(self) -> dict:
        """The report as plain JSON values."""
        return self.report


def _rounded(measured: dict) -> dict:
    """{batch_1 | batch_4 | per_call: {stage: {key: value rounded to 4 places}}}."""
    return {k: {s: {kk: round(vv, 4) for kk, vv in v.items()} for s, v in m.items()} for k, m in
            ((f"batch_{b}" if isinstance(b, int) else b, m) for b, m in measured.items())}


def run_bench(arch: str = "world", device: str | None = None, repeats: int = 10, warmup: int = 2,
              end_to_end_calls: bool = True, e2e_repeats: int = 7, statistic: str = "median",
              progress: Callable[[str], None] | None = None) -> BenchResult:
    """Per-stage latency and FLOPs at batch 1 and 4 of `arch` (the world, or a real-size architecture with
    random weights), the cost model they make, ratio_vhs_to_vision and the VHS / vision Best-of-4 share, the
    shipped real-size table beside it, and (world, `end_to_end_calls`) the model's prediction against
    measured whole calls."""
    device = bench_device(arch, statistic, device)
    if arch == "world":
        world, verifier = load_world(), load_verifier()
        stages = world_stages(world, verifier)
    else:
        world = None
        stages = real_size_stages(arch, device, torch.float32 if device == "cpu" else torch.bfloat16)
    fit(stages.params)  # --threads' default by the size of what is timed
    measured = measure(stages, repeats=repeats, warmup=warmup, progress=progress, statistic=statistic)
    model_json = cost_model_json(stages, measured, f"vhslab bench --arch {arch} --statistic {statistic}: {statistic} of "
                                 f"{repeats} after {warmup} warm-up, {torch.get_num_threads()} thread(s)")
    cm = model_json["stages_ms"]
    model = CostModel(stages.name, stages.card, stages.num_blocks, cm["batch_1"], cm["batch_4"], cm["per_call"])
    shipped = load_cost_model("sana-sprint-1.6b")
    report = {"arch": arch, "card": stages.card, "dtype": stages.dtype, "num_blocks": stages.num_blocks,
              "verifier_block": stages.block, "threads": torch.get_num_threads(), "statistic": statistic,
              "stages": _rounded(measured), "cost_model": model_json,
              "ratio_vhs_to_vision": model.split_ms("vhs", stages.block)[1] / model.split_ms("vision")[1],
              "bo4_vhs_over_vision": best_of_4_share(model, stages.block),
              "shipped": {"sana-sprint-1.6b": {"card": shipped.card, "block": REAL_BLOCK,
                                               "ratio_vhs_to_vision": ratio_vhs_to_vision(shipped, REAL_BLOCK),
                                               "bo4_vhs_over_vision": best_of_4_share(shipped, REAL_BLOCK)}}}
    if world is not None and end_to_end_calls:
        report.update(end_to_end_report(world, verifier, model, stages.block, e2e_repeats, statistic, progress))
    return BenchResult(report, model_json)


def end_to_end_report(world, verifier, model, block: int, repeats: int, statistic: str, progress=None) -> dict:
    """Whole calls on the world at N = 1, 4, 16 per path (batches of 4, noise search in 3 rounds), the
    cost model's prediction for them and its relative error, with the load average they ran under."""
    load = os.getloadavg()[0]
    paths = {"vhs": verifier, "vision": load_verifier(kind="vision"), "ae": load_verifier(kind="ae"), "none": "none"}
    measured = end_to_end(world, paths, repeats=repeats, batch_size=4, rounds=3, progress=progress, statistic=statistic)
    prediction = predicted(model, block, measured, batch_size=4, rounds=3)
    error = prediction_error(prediction, measured)
    worst = max(abs(e) for row in error.values() for n, e in row.items() if n in (4, 16))
    return {"end_to_end_ms": measured, "predicted_ms": prediction, "prediction_error": error,
            "prediction_max_abs_error_n4_n16": worst, "prediction_within_15pct": worst <= 0.15,
            "end_to_end_settings": {"batch_size": 4, "noise_rounds": 3, "repeats": repeats},
            "load_average_1min": {"before": load, "after": os.getloadavg()[0]},
            "end_to_end_ratio_vhs_to_vision_n16": measured["vhs"][16] / measured["vision"][16]}
