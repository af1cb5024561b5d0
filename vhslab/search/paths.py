"""Search paths as objects: each says what its candidates run, how they are scored and what they cost.

A path is one class, registered by `register` in `PATHS` (name -> path, in the order the table and
the errors list them). It says
- what it runs: candidates to the verifier's block (`to_block`, then the winner alone is finished
  from its cached state) or every block, then `run` (decode and vision encoder where it reads pixels);
- how it scores: `judge` (the verifier on the site it reads, or the evaluator for `oracle`), and how
  the budget table picks from a pool of scored candidates (`pool_pick`);
- what it costs: `stages`, the cost-model stages charged per candidate besides the DiT blocks (in
  the cost model's order), and `winner` ("finish": the later blocks in one more call and a decode;
  "decode"; "": nothing), or `plain` (one plain generation, as `none`).

    path, block = path_of(verifier)     # a LatentVerifier (by its site) or a name ("none", "random", "oracle")
    PATHS["vision"].stages              # ("decode", "vision_encode", "llm_prefill")

A new path is one subclass of `SearchPath` with `@register`; `best_of_n`, `noise_search`, the cost
models and the budget table read it from `PATHS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vhslab.search.generation import Prompted, SearchError, ae_tokens, decode
from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.phrasing import parse_prompt
from vhslab.trace.site import Site

PATHS: dict[str, SearchPath] = {}


def register(cls: type[SearchPath]) -> type[SearchPath]:
    """Class decorator: add one instance of a path class to `PATHS` under its `name`."""
    if not cls.name or cls.name in PATHS:
        raise SearchError(f"a search path needs a new name, got {cls.name!r}")
    PATHS[cls.name] = cls()
    return cls


@dataclass
class SearchRun:
    """What every batch of one search call shares: the encoded prompt, the verifier and the path's helpers."""

    prompted: Prompted
    verifier: object
    prompt: str
    block: int | None = None
    vision: object = None
    evaluator: object = None
    spec: object = None


class SearchPath:
    """One way of picking among candidates; subclass it and `register` the subclass to add a path."""

    name: str = ""
    site: str | None = None  # the kind of site its verifier reads (`Site.kind`: "block" for any block.k); None: none
    named: bool = False  # chosen by name (no verifier object)
    in_table: bool = True  # a row of the budget table
    to_block: bool = False  # candidates stop at the verifier's block
    stages: tuple[str, ...] = ()  # cost-model stages per candidate besides the DiT blocks, in the model's order
    winner: str = ""  # what the winner costs after scoring: "finish", "decode" or ""
    plain: bool = False  # one plain generation, no candidate scored
    cost_as: str = ""  # charged as this other path ("" = itself)

    def reads(self, site: Site) -> int | bool | None:
        """For a verifier reading `site`: its block (or None) when this path runs it, False otherwise."""
        return None if self.site is not None and site.kind == self.site else False

    def check(self, vision, prompt: str | None) -> None:
        """Errors of this path's own inputs, raised before any compute."""

    def prepare(self, run: SearchRun) -> None:
        """Set up what scoring needs once per call (the oracle's parsed prompt and evaluator)."""

    def run(self, run: SearchRun, batch: torch.Tensor, t) -> tuple[object, object]:
        """(what the winner needs later, what the verifier reads) for one batch of starting noise."""
        raise NotImplementedError

    def judge(self, run: SearchRun, hidden, kept, b: int) -> np.ndarray:
        """Scores of b candidates: the verifier on what it reads."""
        return run.verifier.score(hidden, [run.prompt] * b, batch_size=b)

    def score(self, run: SearchRun, batch: torch.Tensor, t) -> tuple[np.ndarray, object]:
        """(scores, what the winner needs later) for one batch of starting noise; stages timed by `t`."""
        kept, hidden = self.run(run, batch, t)
        with t("score"):
            return self.judge(run, hidden, kept, len(batch)), kept

    def finish(self, run: SearchRun, noise: torch.Tensor, kept: list, chosen: int) -> np.ndarray:
        """The chosen candidate's image (H, W, 3) uint8 from what its batch kept."""
        return np.concatenate(kept)[chosen]

    def pick(self, seeds: list[int]) -> int:
        """A plain path's choice among the seeds (only it is generated)."""
        raise NotImplementedError

    def pool_pick(self, verdict: np.ndarray, scores: np.ndarray | None, n: int) -> np.ndarray:
        """Per row of a pool (rows, candidates), the verdict of the candidate this path picks among the first n."""
        return verdict[np.arange(len(verdict)), np.argmax(scores[:, :n], 1)].astype(float)


@register
class VHS(SearchPath):
    """A `block.k` verifier: candidates run only to block k and are scored there; the winner alone is
    finished from its cached hidden state and decoded once."""

    name, site, to_block, stages, winner = "vhs", "block", True, ("llm_prefill",), "finish"

    def reads(self, site: Site) -> int | bool | None:
        """The block k of a `block.k` site, else False."""
        return site.index if site.is_block else False

    def run(self, run, batch, t):
        """Hidden states of the verifier's block, kept for the winner."""
        with t("generate_to_site"):
            kept = hidden = run.prompted.to_block(batch, run.block)
        return kept, hidden

    def finish(self, run, noise, kept, chosen):
        """The later blocks and the decoder on the winner's cached state."""
        return run.prompted.finish(noise[chosen:chosen + 1], run.block, torch.cat(kept)[chosen:chosen + 1])


@register
class Vision(SearchPath):
    """A `vision` verifier: every block, decode, the vision encoder (`vision=`); the winner is decoded already."""

    name, site, stages = "vision", "vision", ("decode", "vision_encode", "llm_prefill")

    def check(self, vision, prompt):
        """The vision encoder is given."""
        if vision is None:
            raise SearchError("a vision verifier needs the vision encoder (pass vision=, e.g. world.vision)")

    def run(self, run, batch, t):
        """Decoded images, kept, and their vision features."""
        with t("generate"):
            latents = run.prompted.to_latent(batch)
        with t("decode"):
            kept = decode(run.prompted.pipe, latents)
        with t("vision_encode"):
            hidden = run.vision(kept)
        return kept, hidden


@register
class AE(SearchPath):
    """An `ae_latent` verifier: every block, no decode; the winner alone is decoded."""

    name, site, stages, winner = "ae", "ae_latent", ("llm_prefill",), "decode"

    def run(self, run, batch, t):
        """Final latents, kept, and their `ae_latent` tokens."""
        with t("generate"):
            latents = run.prompted.to_latent(batch)
        return latents, ae_tokens(run.prompted.pipe, latents)

    def finish(self, run, noise, kept, chosen):
        """The winner's latent decoded."""
        return decode(run.prompted.pipe, torch.cat(kept)[chosen:chosen + 1])[0]


@register
class Plain(SearchPath):
    """`none`: the first seed only, one plain generation."""

    name, named, stages, plain = "none", True, ("decode",), True

    def pick(self, seeds):
        """The first seed."""
        return 0

    def pool_pick(self, verdict, scores, n):
        """The pool's first candidate."""
        return verdict[:, 0].astype(float)


@register
class Random(Plain):
    """`random`: one of the N seeds chosen uniformly (seeded by the first), and only it generated."""

    name, in_table, cost_as = "random", False, "none"

    def pick(self, seeds):
        """A uniform draw among the seeds, seeded by the first."""
        return int(np.random.default_rng(seeds[0]).integers(len(seeds)))


@register
class Oracle(SearchPath):
    """`oracle`: every block and decode, judged by the evaluator (an upper bound, not a method; the
    evaluator counts as free)."""

    name, named, stages = "oracle", True, ("decode",)

    def check(self, vision, prompt):
        """The prompt is one of the shapes world (the evaluator judges only those)."""
        try:
            parse_prompt(prompt)
        except ValueError as e:
            raise SearchError(f"the oracle judges prompts of the shapes world only: {e}") from None

    def prepare(self, run):
        """The parsed prompt and the evaluator (the shapes world's unless one was given)."""
        run.spec, run.evaluator = parse_prompt(run.prompt), run.evaluator or ShapesEvaluator()

    def run(self, run, batch, t):
        """Decoded images (both kept and judged)."""
        with t("generate"):
            latents = run.prompted.to_latent(batch)
        with t("decode"):
            kept = decode(run.prompted.pipe, latents)
        return kept, kept

    def judge(self, run, hidden, kept, b):
        """The evaluator's verdict of each image (1 correct, 0 not)."""
        return np.array([float(run.evaluator.evaluate(im, run.spec).correct) for im in kept])

    def pool_pick(self, verdict, scores, n):
        """Correct if any of the first n candidates is."""
        return verdict[:, :n].max(1).astype(float)


def named_paths() -> list[str]:
    """The paths chosen by name instead of a verifier (none, random, oracle)."""
    return [name for name, p in PATHS.items() if p.named]


def path_of(verifier) -> tuple[SearchPath, int | None]:
    """(path, block) of a verifier object (by the site it reads) or a path's name (None = "none")."""
    if isinstance(verifier, str) or verifier is None:
        name = verifier or "none"
        if name not in PATHS or not PATHS[name].named:
            raise SearchError(f"unknown verifier {name!r}: a LatentVerifier or one of {', '.join(named_paths())}")
        return PATHS[name], None
    site = Site.parse(verifier.config.site)
    for path in PATHS.values():
        block = path.reads(site)
        if block is not False:
            return path, block
    raise SearchError(f"a verifier reading {str(site)!r} cannot pick among images (it sees no candidate)")


def charged(name: str) -> SearchPath:
    """The path whose costs `name` is charged (itself, or its `cost_as`); an error for an unknown name."""
    if name not in PATHS:
        raise SearchError(f"unknown path {name!r}; paths: {', '.join(PATHS)}")
    path = PATHS[name]
    return PATHS[path.cost_as] if path.cost_as else path
