"""The cost bench: per-stage latency (median after warm-up) and FLOPs (torch's FlopCounterMode) of
the DiT, decoder, vision encoder, connector and LLM prefill at batch 1 and 4, the per-call stages
(the prompt's encoding, a pipeline call's overhead beyond its DiT), the cost model they make, and
that model's prediction held against whole `best_of_n` / `noise_search` calls (`prediction_error`).

Stages are callables of the batch size, built the same way for the world (its trained models and
the verifier's real inputs) and for a real-size architecture with random weights (`real_size_stages`:
no download; on a GPU it times SANA-Sprint 1.6B + DC-AE + CLIP ViT-L/14-336 + Qwen2.5-0.5B).
"""

from __future__ import annotations

import contextlib
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from vhslab.trace.site import Site, find_transformer

STAGE_NAMES = ("dit", "decode", "vision_encode", "connector", "llm_prefill")
PROMPT = "a photo of a red circle left of a blue square"  # the prompt every timed call uses


@dataclass
class Stages:
    """What a search pays for, each a callable of the batch size (inputs prepared outside the timing)."""

    name: str
    card: str
    dtype: str
    num_blocks: int
    block: int  # the VHS verifier's block
    run: dict[str, Callable[[int], Callable[[], object]]]  # stage -> (batch -> a call with prepared inputs)
    device: str = "cpu"
    # once per call: "prompt_encode" and "pipeline_call" (a pipeline call of one candidate to the final latent);
    # none (real sizes, no pipeline): the per-call stages are 0
    per_call: dict[str, Callable[[], object]] = field(default_factory=dict)
    params: int = 0  # of every model timed (the default thread count follows it)


def card_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as f:
        cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    return f"CPU: {cpu}, {torch.get_num_threads()} threads"


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
    from torch.utils.flop_counter import FlopCounterMode

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

    from vhslab.schemas import CostModelFile, check
    from vhslab.search.generation import SearchError

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
    from vhslab.search.generation import Prompted, initial_noise

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
    from vhslab.search.generation import Prompted, initial_noise

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
    from vhslab.search.best_of_n import best_of_n
    from vhslab.search.noise_search import noise_search

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
