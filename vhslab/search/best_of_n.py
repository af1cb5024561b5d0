"""Best-of-N, the way it should run: the prompt encoded once, candidates in batches, each verifier
path paying only for what it reads.

    res = best_of_n(world.pipeline, vhslab.load_verifier(), "a photo of two red circles", n=8)
    res = best_of_n(pipe, verifier, prompt, budget_ms=181.8, cost_model=load_cost_model("sana-sprint-1.6b"))
    res.image, res.scores, res.chosen, res.timings

Paths (by the verifier's site, or a name):
- `vhs` (a `block.k` verifier): candidates run only to block k, are scored, and only the winner is
  finished from its cached hidden state and decoded once.
- `ae` (an `ae_latent` verifier): every block, no decode; the winner alone is decoded.
- `vision` (a `vision` verifier, with `vision=` the encoder): every block, decode, vision encoder.
- `oracle`: every block and decode, judged by the evaluator (an upper bound, not a method).
- `random`: one of the N seeds chosen uniformly and only it generated; `none`: the first seed only.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from vhslab.pipeline import GenConfig, sample_seed
from vhslab.search.generation import Prompted, SearchError, decode, initial_noise
from vhslab.search.paths import SearchPath, SearchRun, path_of
from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.phrasing import parse_prompt
from vhslab.trace.site import Site, find_transformer


@dataclass
class SearchResult:
    """What a search returns: the chosen image, every candidate's score, the chosen index, the seeds,
    seconds per stage, the path's name and what the search adds (`extra`)."""

    image: np.ndarray  # (H, W, 3) uint8: the chosen candidate
    scores: np.ndarray  # (n,) the verifier's score of every candidate (NaN where none was computed)
    chosen: int
    seeds: list[int]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    path: str = "vhs"
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        """The number of candidates."""
        return len(self.scores)


class Timer(dict):
    """Seconds per stage: `with t("decode"): ...` adds the block's wall time to `t["decode"]`."""

    @contextlib.contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        yield
        self[stage] = self.get(stage, 0.0) + time.perf_counter() - t0


def search_path(verifier) -> tuple[str, int | None]:
    """(path name, block) of a verifier object or name (see `vhslab.search.paths.path_of`)."""
    path, block = path_of(verifier)
    return path.name, block


def check_search(pipe, verifier, n: int | None, gen: GenConfig, budget_ms: float | None = None, cost_model=None,
                 vision=None, prompt: str | None = None, batch_size: int = 8, rounds: int = 1) -> tuple[SearchPath, int | None, int]:
    """Every input error before any compute; returns (path, block, N) (a budget buys N for calls of
    `batch_size` candidates in `rounds` sequential rounds)."""
    path, block = path_of(verifier)
    if prompt is not None and not str(prompt).strip():
        raise SearchError("the prompt is empty: a verifier has nothing to check the candidates against")
    if (n is None) == (budget_ms is None):
        raise SearchError("give either N or a budget in ms (with a cost model), not both and not neither")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise SearchError(f"N must be an integer >= 1, got {n!r}")
    if gen.steps != 1:
        raise SearchError(f"searching one-step candidates needs a one-step pipeline; this one runs {gen.steps} steps")
    num = len(find_transformer(pipe).transformer_blocks)
    if block is not None and block >= num:
        raise SearchError(f"the verifier reads {Site.block(block)}, but the generator has blocks 0-{num - 1}")
    path.check(vision, prompt)
    if budget_ms is not None:
        if cost_model is None:
            raise SearchError("a budget needs a cost model (load_cost_model('world') or 'sana-sprint-1.6b')")
        mapped = None if block is None else cost_model.block_at(block, num)
        n = cost_model.n_for_budget(budget_ms, path.name, mapped, batch_size, rounds)
    return path, block, n


@torch.no_grad()
def best_of_n(pipe, verifier, prompt: str, n: int | None = None, *, budget_ms: float | None = None, cost_model=None,
              seed: int = 0, first: int = 0, batch_size: int = 8, gen: GenConfig | None = None, vision=None,
              evaluator=None) -> SearchResult:
    """Generate N candidates (or as many as `budget_ms` buys under `cost_model`), score them on the
    verifier's path, return the winner's image, every score, the chosen index and per-stage seconds.
    Candidate j's noise comes from `sample_seed(seed, prompt, first + j)`, as a store's rows do."""
    gen = (gen or GenConfig()).resolve(pipe)
    path, block, n = check_search(pipe, verifier, n, gen, budget_ms, cost_model, vision, prompt, batch_size)
    t = Timer()
    with t("encode_prompt"):
        prompted = Prompted.encode(pipe, prompt, gen)
    run = SearchRun(prompted, verifier, prompt, block, vision, evaluator)
    path.prepare(run)
    seeds = [sample_seed(seed, prompt, first + j) for j in range(n)]
    if path.plain:
        pick = path.pick(seeds)
        with t("generate"):
            latents = prompted.to_latent(initial_noise(pipe, [seeds[pick]], gen))
        with t("decode"):
            image = decode(pipe, latents)[0]
        t["total"] = sum(t.values())
        return SearchResult(image, np.full(n, np.nan), pick, seeds, dict(t), path.name)
    noise = initial_noise(pipe, seeds, gen)
    scores, kept = [], []
    for lo in range(0, n, batch_size):
        s, k = path.score(run, noise[lo:lo + batch_size], t)
        scores.append(np.asarray(s, float))
        kept.append(k)
    scores = np.concatenate(scores)
    chosen = int(np.argmax(scores))
    with t("finish_winner"):
        image = path.finish(run, noise, kept, chosen)
    t["total"] = sum(t.values())
    return SearchResult(image, scores, chosen, seeds, dict(t), path.name)


@dataclass
class Picture:
    """What `generate_picture` made: the search (`search`, its image not enlarged), the enlarged image to
    save (`image`), the verifier's site and the evaluator's verdict of the winner (`correct`).
    `to_json()` is what `vhslab generate --json` prints after the file it wrote."""

    prompt: str
    site: str
    search: SearchResult
    image: np.ndarray
    correct: bool

    def to_json(self) -> dict:
        """Prompt, N, site, chosen index, every score (4 places), the winner's seed, per-stage milliseconds
        and the evaluator's verdict."""
        res = self.search
        return {"prompt": self.prompt, "n": res.n, "site": self.site, "chosen": res.chosen,
                "scores": [round(float(s), 4) for s in res.scores], "seed_of_chosen": res.seeds[res.chosen],
                "timings_ms": {k: round(1000 * t, 2) for k, t in res.timings.items()},
                "evaluator_correct": self.correct}


def generate_picture(world, verifier, prompt: str, n: int = 8, *, seed: int = 0, batch_size: int = 8,
                     upscale: int = 1, spec=None) -> Picture:
    """`vhslab generate`: Best-of-`n` in `world` with `verifier` (`best_of_n`), the winner enlarged `upscale`
    times (nearest) and judged by the shapes evaluator against `spec` (default: the parsed prompt)."""
    res = best_of_n(world.pipeline, verifier, prompt, n, seed=seed, batch_size=batch_size, gen=world.gen_config)
    image = np.repeat(np.repeat(res.image, upscale, 0), upscale, 1)
    correct = bool(ShapesEvaluator().evaluate(res.image, spec if spec is not None else parse_prompt(prompt)).correct)
    return Picture(prompt, verifier.config.site, res, image, correct)
