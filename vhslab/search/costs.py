"""Cost models: per-stage milliseconds of a generator + verifier, and the N a time budget buys.

A cost model is a small JSON (shipped in `vhslab/assets/costs/`, or any file) naming the card it
was measured on, the number of DiT blocks, per-stage costs at batch 1 and per candidate at batch 4
(`dit_block`, `decode`, `vision_encode`, `llm_prefill`) and the costs paid once per call
(`per_call`: `prompt_encode`, once per search; `call_overhead`, a pipeline call's cost beyond its
DiT, paid by every batch of candidates and by the winner's finishing call). A file without
`per_call` (older ones) loads with both at 0 and a `note` saying so.

A batch of b candidates costs, per stage, the batch-1 cost at b = 1, b x the batch-4 rate from
b = 4, and in between the line joining the two (never less than the batch-1 cost), so a call's
cost grows with N. Paths, per batch of candidates (`batch_ms`) and for the winner (`winner_ms`):

- `vhs` (block l): blocks 0..l + LLM prefill; the winner alone finishes blocks l+1..L-1 in a
  pipeline call and is decoded once.
- `ae` (verifier on the autoencoder latent): every block + LLM prefill; the winner is decoded.
- `vision`: every block + decode + vision encoder + LLM prefill; the winner is decoded already.
- `oracle`: every block + decode; the evaluator counts as free (an upper bound).
- `none`: one plain generation (prompt encoding, one call of every block + decode, batch 1).

`call_ms` adds the prompt's encoding, the batches (of `batch_size`, the last one smaller) and the
winner; noise search's rounds run one after another, so each round pays its own batches and
overheads (`rounds`). A verifier's block on a generator with another number of blocks than the
cost model's is mapped by relative depth (`block_at`): block 10 of the world's 12 is block 17 of
SANA-Sprint 1.6B's 20.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from vhslab.errors import MissingError
from vhslab.outputs import check_complete
from vhslab.schemas import CostModelFile, load
from vhslab.search.generation import SearchError
from vhslab.search.paths import SearchPath, charged

COSTS = Path(__file__).resolve().parents[1] / "assets" / "costs"
STAGES = ("dit_block", "decode", "vision_encode", "llm_prefill")
PER_CALL = ("prompt_encode", "call_overhead")
BATCH = 8  # candidates per call, as best_of_n and noise_search batch them by default
NO_PER_CALL = "no per_call stages in the file (an older cost model): prompt encoding and per-call overhead count as 0"


def round_sizes(n: int, rounds: int) -> list[int]:
    """n candidates in `rounds` rounds as equal as possible (the first rounds take the remainder)."""
    rounds = max(1, min(rounds, n))
    base, extra = divmod(n, rounds)
    return [base + (i < extra) for i in range(rounds)]


@dataclass(frozen=True)
class CostModel:
    """Per-stage milliseconds of a generator + verifier on one card, and what a search call costs on each path."""

    name: str
    card: str
    num_blocks: int
    batch_1: dict
    batch_4: dict
    per_call: dict = field(default_factory=lambda: dict.fromkeys(PER_CALL, 0.0))
    note: str = ""  # e.g. that the file had no per-call stages

    def stage_ms(self, stage: str, b: int) -> float:
        """ms of `stage` for a batch of b candidates (see the module's docstring)."""
        one, rate = self.batch_1[stage], self.batch_4[stage]
        line = one + (min(b, 4) - 1) * (4 * rate - one) / 3 + max(0, b - 4) * rate
        return max(one, line)

    def _blocks(self, path: SearchPath, block: int | None) -> int:
        if path.to_block:
            if block is None or not 0 <= block < self.num_blocks:
                raise SearchError(f"the VHS path needs a block in 0-{self.num_blocks - 1} for cost model {self.name}, got {block}")
            return block + 1
        return self.num_blocks

    def batch_ms(self, path: str, b: int, block: int | None = None) -> float:
        """One pipeline call scoring b candidates on `path` (its overhead included): its DiT blocks and
        the stages the path is charged per candidate (`SearchPath.stages`)."""
        p = charged(path)
        blocks, ms = self._blocks(p, block), self.stage_ms
        cost = self.per_call["call_overhead"] + blocks * ms("dit_block", b)
        for stage in p.stages:
            cost += ms(stage, b)
        return cost

    def winner_ms(self, path: str, block: int | None = None) -> float:
        """What the winner costs after scoring (`SearchPath.winner`): the VHS path finishes it in one more
        call, `ae` decodes it."""
        p = charged(path)
        used = self._blocks(p, block)
        if p.winner == "finish":
            return self.per_call["call_overhead"] + (self.num_blocks - used) * self.batch_1["dit_block"] + self.batch_1["decode"]
        return self.batch_1["decode"] if p.winner == "decode" else 0.0

    def call_ms(self, path: str, n: int, block: int | None = None, batch_size: int = BATCH, rounds: int = 1) -> float:
        """Predicted ms of a whole search call: `best_of_n` with N = n (or `noise_search` with `rounds`)."""
        if charged(path).plain:
            return self.plain_ms()
        if not (isinstance(n, int) and n >= 1 and batch_size >= 1):
            raise SearchError(f"N and the batch size are integers >= 1, got {n!r} and {batch_size!r}")
        total = self.per_call["prompt_encode"] + self.winner_ms(path, block)
        for size in round_sizes(n, rounds):
            full, rest = divmod(size, batch_size)
            total += full * self.batch_ms(path, batch_size, block) + (self.batch_ms(path, rest, block) if rest else 0.0)
        return total

    def plain_ms(self) -> float:
        """One plain generation: the prompt encoded, one call of every block and one decode, batch 1."""
        return self.per_call["prompt_encode"] + self.batch_ms("none", 1)

    def block_at(self, block: int, of: int) -> int:
        """The block at the same relative depth (block + 1 of `of`) in this model's blocks."""
        return max(0, min(self.num_blocks - 1, round((block + 1) * self.num_blocks / of) - 1))

    def split_ms(self, path: str, block: int | None = None) -> tuple[float, float]:
        """(fixed ms, ms per candidate) of a Best-of-N call on `path` in full batches of 4: the fixed part
        is the prompt's encoding and the winner, the per-candidate part a quarter of a batch of 4
        (its call overhead included); `none` is (0, one plain generation)."""
        if charged(path).plain:
            return 0.0, self.plain_ms()
        return self.per_call["prompt_encode"] + self.winner_ms(path, block), self.batch_ms(path, 4, block) / 4

    def n_for_budget(self, budget_ms: float, path: str, block: int | None = None, batch_size: int = BATCH,
                     rounds: int = 1) -> int:
        """The most candidates whose call (`call_ms`) fits in `budget_ms`; an error if not even one fits."""
        one = self.call_ms(path, 1, block, batch_size, rounds)
        if not math.isfinite(budget_ms) or budget_ms < one:
            raise SearchError(f"a budget of {budget_ms:g} ms is too small for one candidate on the {path} path of "
                              f"{self.name} ({one:.1f} ms)")
        if charged(path).plain:
            return 1
        lo, hi = 1, 2  # call_ms grows with n: double, then bisect
        while self.call_ms(path, hi, block, batch_size, rounds) <= budget_ms:
            lo, hi = hi, 2 * hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.call_ms(path, mid, block, batch_size, rounds) <= budget_ms else (lo, mid)
        return lo


def load_cost_model(name_or_path: str, card: str | None = None) -> CostModel:
    """A shipped cost model by name (e.g. "sana-sprint-1.6b") or a JSON file; with `card`, a model
    measured on another card is refused. A file without per-call stages loads with them at 0 (`note`)."""
    path = Path(name_or_path)
    if not path.is_file():
        path = COSTS / f"{name_or_path}.json"
        if not path.is_file():
            known = sorted(p.stem for p in COSTS.glob("*.json"))
            raise MissingError(f"no cost model {name_or_path!r}: not a file, and the shipped ones are {known}")
    check_complete(path, "--cost-model")  # one a stopped `bench --save-cost-model` left half-written
    raw = load(path, CostModelFile, SearchError, "not a cost model")  # stage costs finite and > 0, blocks >= 1
    if card is not None and card.lower() not in raw.card.lower():
        raise SearchError(f"cost model {raw.name or path.stem} was measured on {raw.card}, not {card}")
    stages = raw.stages_ms
    per_call = stages.per_call.model_dump() if stages.per_call is not None else dict.fromkeys(PER_CALL, 0.0)
    return CostModel(raw.name or path.stem, raw.card, raw.num_blocks, stages.batch_1.model_dump(),
                     stages.batch_4.model_dump(), per_call, "" if stages.per_call is not None else NO_PER_CALL)
