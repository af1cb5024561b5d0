"""Search that prunes early on a multi-step generator (the world's teacher, a diffusers SanaPipeline).

    res = prune_search(world.teacher, "a photo of two red circles", n=8, step=4, k=2,
                       scorer=PixelScorer.vision(verifier, world.vision), gen=world.teacher_gen_config)
    res.image, res.partial_scores, res.kept, res.final_scores, res.chosen, res.cost.transformer_calls

N candidates run the first `step` denoising steps (steps 0..step-1, one pipeline call per batch that
sets `pipe._interrupt` after the last of them, diffusers' documented way to stop a call); a scorer
reads each candidate's state at step `step - 1` (the last step run, read through `vhslab.trace`'s
`block.k@stepN` and `x0_hat@stepN` sites: its block output, or its clean estimate x0_hat decoded); the top k are continued from their latents
with the remaining sigmas of the same schedule (`sigmas=`), so a continued candidate equals the same
candidate run uninterrupted; the winner among the k is the best by the `final` scorer at the last
step (default: the same scorer; with k = 1, the top partial score). With k = N nothing is scored at
`step` and the search is Best-of-N with the final scorer (`teacher_best_of_n`).

Costs are counted as pipeline calls of b candidates running some steps and scoring stages
(`Cost`), charged in ms with the project's cost models (`vhslab.search.costs.CostModel`): a step of
b candidates with classifier-free guidance runs every block on 2b rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from vhslab.pipeline import GenConfig, sample_seed
from vhslab.search.best_of_n import Timer
from vhslab.search.costs import CostModel
from vhslab.search.generation import Prompted, SearchError, decode, initial_noise
from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.phrasing import parse_prompt
from vhslab.trace.site import Site, find_transformer
from vhslab.trace.trace import trace


@dataclass
class StepState:
    """Candidates at the step a scorer reads: `step` (0-based, the last step run) and its `sigma`, the
    latents after it, the clean estimate x0_hat at it, and the scorer's block output (conditional branch)."""

    step: int
    sigma: float
    latents: torch.Tensor
    x0_hat: torch.Tensor
    hidden: torch.Tensor | None = None


class StepScorer:
    """Scores candidates at a step; subclass it. `block`: the block it reads (None: none); `stages`:
    the cost-model stages it is charged per candidate; `decodes`: it decodes the images itself."""

    name: str = ""
    block: int | None = None
    stages: tuple[str, ...] = ()
    decodes: bool = False

    def score(self, pipe, prompt: str, state: StepState) -> np.ndarray:
        """One score per candidate, higher is better."""
        raise NotImplementedError


class LatentScorer(StepScorer):
    """A latent verifier (`vhslab.verifier.LatentVerifier` on a `block.k` site) on block k at the step."""

    name, stages = "latent", ("llm_prefill",)

    def __init__(self, verifier):
        site = Site.parse(verifier.config.site)
        if not site.is_block:
            raise SearchError(f"a latent scorer needs a block.k verifier, this one reads {str(site)!r}")
        self.verifier, self.block = verifier, site.index

    def score(self, pipe, prompt, state):
        """The verifier's score of the block output."""
        return self.verifier.score(state.hidden, [prompt] * len(state.hidden), batch_size=len(state.hidden))


class PixelScorer(StepScorer):
    """x0_hat decoded to pixels, judged by a vision verifier (`vision`) or the evaluator (`oracle`, an
    upper bound: the evaluator counts as free)."""

    decodes = True

    def __init__(self, name: str, verifier=None, vision=None, evaluator=None):
        self.name, self.verifier, self.vision, self.evaluator = name, verifier, vision, evaluator
        self.stages = ("decode", "vision_encode", "llm_prefill") if name == "vision" else ("decode",)

    @classmethod
    def vision(cls, verifier, vision) -> PixelScorer:
        """The vision verifier on the vision encoder's features of the decoded x0_hat."""
        if verifier is None or vision is None or verifier.config.site != "vision":
            raise SearchError("a vision scorer needs a `vision` verifier and the vision encoder (world.vision)")
        return cls("vision", verifier, vision)

    @classmethod
    def oracle(cls, evaluator=None) -> PixelScorer:
        """The shapes evaluator's verdict (1 correct, 0 not) of the decoded x0_hat."""
        return cls("oracle", evaluator=evaluator or ShapesEvaluator())

    def score(self, pipe, prompt, state):
        """Decode x0_hat and judge the images."""
        images = decode(pipe, state.x0_hat)
        if self.name == "oracle":
            spec = parse_prompt(prompt)
            return np.array([float(self.evaluator.evaluate(im, spec).correct) for im in images])
        return self.verifier.score(self.vision(images), [prompt] * len(images), batch_size=len(images))


@dataclass
class Cost:
    """What a search ran: per pipeline call (candidates b, steps run, scoring stages per candidate) and
    the extra decodes (the winner's, when no scorer decoded it)."""

    calls: list[tuple[int, int, tuple[str, ...], bool]] = field(default_factory=list)
    decodes: int = 0

    def add(self, b: int, steps: int, scorer: StepScorer | None = None) -> None:
        """One pipeline call of b candidates running `steps` steps, each scored by `scorer` (if any)."""
        self.calls.append((int(b), int(steps), scorer.stages if scorer is not None else (), scorer is not None))

    @property
    def transformer_calls(self) -> int:
        """Transformer calls per candidate summed over candidates (a CFG pair counts once)."""
        return sum(b * s for b, s, _, _ in self.calls)

    @property
    def scored(self) -> int:
        """Candidates scored (a candidate scored twice counts twice)."""
        return sum(b for b, _, _, scored in self.calls if scored)

    def ms(self, cm: CostModel, cfg: bool = True) -> float:
        """Milliseconds under `cm`: the prompt's encoding, each call's overhead, its steps over every block
        (2b rows with guidance), its scoring stages, and the extra decodes (batch 1)."""
        rows = 2 if cfg else 1
        total = cm.per_call["prompt_encode"] + self.decodes * cm.batch_1["decode"]
        for b, steps, stages, _ in self.calls:
            total += cm.per_call["call_overhead"] + steps * cm.num_blocks * cm.stage_ms("dit_block", rows * b)
            total += sum(cm.stage_ms(st, b) for st in stages)
        return total

    def to_json(self) -> dict:
        """Counts: transformer calls, pipeline calls, candidates scored, extra decodes."""
        return {"transformer_calls": self.transformer_calls, "pipeline_calls": len(self.calls),
                "scored": self.scored, "decodes": self.decodes}


def _batches(n: int, batch_size: int) -> list[int]:
    return [min(batch_size, n - lo) for lo in range(0, n, batch_size)]


def prune_cost(n: int, step: int, k: int, steps: int, scorer: StepScorer | None, final: StepScorer | None,
               batch_size: int = 8) -> Cost:
    """The `Cost` `prune_search` pays (no compute): N*step + k*(steps-step) transformer calls; with
    k = N, N full runs scored by `final` only; the winner is decoded once more unless `final` decoded it."""
    cost = Cost()
    if k == n:
        for b in _batches(n, batch_size):
            cost.add(b, steps, final)
    else:
        for b in _batches(n, batch_size):
            cost.add(b, step, scorer)
        for b in _batches(k, batch_size):
            cost.add(b, steps - step, final)
    cost.decodes = 0 if final is not None and final.decodes else 1
    return cost


def bon_cost(n: int, steps: int, final: StepScorer, batch_size: int = 8) -> Cost:
    """The `Cost` of `teacher_best_of_n` (N full runs, each scored at the end)."""
    return prune_cost(n, steps - 1, n, steps, None, final, batch_size)


def schedule(pipe, steps: int) -> torch.Tensor:
    """The scheduler's sigmas of a `steps`-step call (steps + 1 values, the terminal one included), from
    a copy of the pipeline's scheduler."""
    sched = type(pipe.scheduler).from_config(pipe.scheduler.config)
    sched.set_timesteps(steps)
    return sched.sigmas.clone()


def check_prune(pipe, n: int, step: int, k: int, scorer, final, gen: GenConfig) -> torch.Tensor:
    """Every input error before compute; returns the full schedule's sigmas (`schedule`)."""
    for name, v in (("N", n), ("k", k), ("step", step)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise SearchError(f"{name} must be an integer >= 1, got {v!r}")
    if k > n:
        raise SearchError(f"k = {k} candidates cannot be kept out of N = {n}: choose k <= N")
    if gen.steps < 2 or step >= gen.steps:
        raise SearchError(f"step must be in 1-{gen.steps - 1} (the steps candidates run before pruning) for a "
                          f"{gen.steps}-step generator, got {step}")
    if k < n and scorer is None:
        raise SearchError("pruning (k < N) needs a scorer at the step")
    if k > 1 and final is None:
        raise SearchError("choosing among k > 1 continued candidates needs a final scorer")
    num = len(find_transformer(pipe).transformer_blocks)
    for s in (scorer, final):
        if s is not None and s.block is not None and s.block >= num:
            raise SearchError(f"the scorer reads {Site.block(s.block)}, but the generator has blocks 0-{num - 1}")
    sigmas = schedule(pipe, gen.steps)
    rest = type(pipe.scheduler).from_config(pipe.scheduler.config)
    rest.set_timesteps(sigmas=sigmas[step:-1].tolist())
    if not torch.equal(rest.sigmas, sigmas[step:]):
        raise SearchError(f"the scheduler {type(pipe.scheduler).__name__} does not take the remaining sigmas unchanged "
                          "(a shifted schedule): the continued candidates would not equal uninterrupted runs")
    return sigmas


@torch.no_grad()
def advance(prompted: Prompted, x: torch.Tensor, sigmas: torch.Tensor, start: int, stop: int,
            block: int | None = None) -> StepState:
    """Run steps start..stop-1 of the schedule `sigmas` from latents `x` (the latents entering `start`) in
    one pipeline call; the state at step stop-1 (x0_hat, the latents after it, `block`'s output)."""
    pipe, total = prompted.pipe, len(sigmas) - 1
    call = dict(prompted.call, max_sequence_length=prompted.embeds.shape[1])  # the negative prompt's length too
    if start > 0:  # the remaining sigmas of the same schedule (`check_prune` made sure they pass unchanged)
        call.pop("num_inference_steps", None)
        call["sigmas"] = sigmas[start:-1].tolist()

    def interrupt(p, i, _t, kwargs):
        if i == stop - start - 1:
            p._interrupt = True  # diffusers' documented way to end a call after a step
        return kwargs

    b, last = len(x), stop - start - 1  # the last step run, in this call's own count
    x0 = Site.parse(f"x0_hat@step{last}")
    reads = [x0] + ([Site.block(block, last)] if block is not None else [])
    with trace(pipe, reads, calls=stop - start, dtype=torch.float32, stop=False) as t:
        latents = pipe(prompt_embeds=prompted.embeds.expand(b, -1, -1), prompt_attention_mask=prompted.mask.expand(b, -1),
                       latents=x, output_type="latent", callback_on_step_end=interrupt if stop < total else None,
                       **call).images
    hidden = t.last(reads[1]) if block is not None else None
    if hidden is not None and len(hidden) == 2 * b:
        hidden = hidden[b:]  # the conditional branch of the guidance pair (a trace that keeps both)
    return StepState(stop - 1, t.sigmas[-1], latents, t.last(x0), hidden)


@dataclass
class PruneResult:
    """What `prune_search` returns: the winner's image, every candidate's partial score (NaN where none was
    computed), the kept indices, their final scores, the chosen index (into all N), the seeds, the cost
    counted, seconds per stage and the settings."""

    image: np.ndarray
    partial_scores: np.ndarray
    kept: list[int]
    final_scores: np.ndarray
    chosen: int
    seeds: list[int]
    cost: Cost
    timings: dict[str, float]
    n: int
    step: int
    k: int
    steps: int

    def to_json(self) -> dict:
        """Settings, scores (4 places), the chosen index and seed, the cost counted and per-stage ms."""
        r4 = lambda a: [round(float(v), 4) for v in a]  # noqa: E731
        return {"n": self.n, "step": self.step, "k": self.k, "steps": self.steps, "partial_scores": r4(self.partial_scores),
                "kept": self.kept, "final_scores": r4(self.final_scores), "chosen": self.chosen,
                "seed_of_chosen": self.seeds[self.chosen], "cost": self.cost.to_json(),
                "timings_ms": {k: round(1000 * v, 2) for k, v in self.timings.items()}}


def _scored(prompted, noise, sigmas, start, stop, scorer, batch_size, t, stage: str):
    """States (latents, scores) of candidates run from `start` to `stop` in batches, scored by `scorer` (or NaN)."""
    latents, scores = [], []
    for lo in range(0, len(noise), batch_size):
        with t(stage):
            state = advance(prompted, noise[lo:lo + batch_size], sigmas, start, stop,
                            scorer.block if scorer is not None else None)
        latents.append(state.latents)
        with t("score"):
            scores.append(scorer.score(prompted.pipe, prompted.prompt, state) if scorer is not None
                          else np.full(len(state.latents), np.nan))
    return torch.cat(latents), np.concatenate([np.asarray(s, float) for s in scores])


@torch.no_grad()
def prune_search(pipe, prompt: str, n: int, step: int, k: int, scorer: StepScorer | None, *,
                 final: StepScorer | None = None, gen: GenConfig | None = None, seed: int = 0, first: int = 0,
                 batch_size: int = 8) -> PruneResult:
    """N candidates to `step` steps, scored there by `scorer` (at step `step - 1`, the last one run), the
    top k (ties: the lower index) continued to the end and the winner picked by `final` (default: `scorer`;
    with k = 1, the top partial score). Candidate j's noise is `sample_seed(seed, prompt, first + j)`, as
    in `best_of_n`. Every input error is raised before any compute."""
    gen = (gen or GenConfig()).resolve(pipe)
    if final is None and k > 1:
        final = scorer
    sigmas = check_prune(pipe, n, step, k, scorer, final, gen)
    if not str(prompt).strip():
        raise SearchError("the prompt is empty: a scorer has nothing to check the candidates against")
    t, steps = Timer(), gen.steps
    with t("encode_prompt"):
        prompted = Prompted.encode(pipe, prompt, gen)
    seeds = [sample_seed(seed, prompt, first + j) for j in range(n)]
    noise = initial_noise(pipe, seeds, gen)
    if k == n:  # nothing to prune: N full runs, scored at the end
        final_latents, final_scores = _scored(prompted, noise, sigmas, 0, steps, final, batch_size, t, "generate")
        partial, kept = np.full(n, np.nan), list(range(n))
    else:
        part_latents, partial = _scored(prompted, noise, sigmas, 0, step, scorer, batch_size, t, "generate_to_step")
        kept = sorted(np.argsort(-partial, kind="stable")[:k].tolist())
        final_latents, final_scores = _scored(prompted, part_latents[kept], sigmas, step, steps, final, batch_size, t,
                                              "continue")
    pick = int(np.argmax(final_scores)) if final is not None else int(np.argmax(partial[kept]))
    with t("decode_winner"):
        image = decode(pipe, final_latents[pick:pick + 1])[0]
    t["total"] = sum(t.values())
    cost = prune_cost(n, step, k, steps, scorer, final, batch_size)
    return PruneResult(image, partial, kept, final_scores, kept[pick], seeds, cost, dict(t), n, step, k, steps)


def teacher_best_of_n(pipe, prompt: str, n: int, final: StepScorer, *, gen: GenConfig | None = None, seed: int = 0,
                      first: int = 0, batch_size: int = 8) -> PruneResult:
    """Best-of-N on the multi-step generator: N full runs, the winner the best by `final` at the last step
    (`prune_search` with k = N)."""
    gen = (gen or GenConfig()).resolve(pipe)
    return prune_search(pipe, prompt, n, gen.steps - 1, n, None, final=final, gen=gen, seed=seed, first=first,
                        batch_size=batch_size)


__all__ = ["Cost", "LatentScorer", "PixelScorer", "PruneResult", "StepScorer", "StepState", "advance", "bon_cost",
           "check_prune", "prune_cost", "prune_search", "schedule", "teacher_best_of_n"]
