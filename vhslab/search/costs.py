"""Cost models: per-stage milliseconds of a generator + verifier, and the N a time budget buys.

A cost model is a small JSON (shipped in `vhslab/assets/costs/`, or any file) naming the card it
was measured on, the number of DiT blocks and per-stage costs at batch 1 and per candidate at
batch 4: `dit_block`, `decode`, `vision_encode`, `llm_prefill`. Paths, per candidate:

- `vhs` (block l): blocks 0..l + LLM prefill, batched; then the winner alone finishes blocks
  l+1..L-1 and is decoded once.
- `ae` (verifier on the autoencoder latent): every block + LLM prefill, batched; the winner is decoded.
- `vision`: every block + decode + vision encoder + LLM prefill, batched; the winner is decoded.
- `oracle`: every block + decode, batched; the evaluator counts as free (an upper bound).
- `none`: one plain generation (every block + decode, batch 1).

A verifier's block on a generator with another number of blocks than the cost model's is mapped by
relative depth (`block_at`): block 10 of the world's 12 is block 17 of SANA-Sprint 1.6B's 20.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from vhslab.search.generation import SearchError

COSTS = Path(__file__).resolve().parents[1] / "assets" / "costs"
STAGES = ("dit_block", "decode", "vision_encode", "llm_prefill")


@dataclass(frozen=True)
class CostModel:
    name: str
    card: str
    num_blocks: int
    batch_1: dict
    batch_4: dict

    def plain_ms(self) -> float:
        """One plain generation: every block and one decode, batch 1."""
        return self.num_blocks * self.batch_1["dit_block"] + self.batch_1["decode"]

    def block_at(self, block: int, of: int) -> int:
        """The block at the same relative depth (block + 1 of `of`) in this model's blocks."""
        return max(0, min(self.num_blocks - 1, round((block + 1) * self.num_blocks / of) - 1))

    def split_ms(self, path: str, block: int | None = None) -> tuple[float, float]:
        """(fixed ms, ms per candidate) of a Best-of-N call on `path` ("vhs" needs the block)."""
        one, many, blocks = self.batch_1, self.batch_4, self.num_blocks
        if path == "vhs":
            if block is None or not 0 <= block < blocks:
                raise SearchError(f"the VHS path needs a block in 0-{blocks - 1} for cost model {self.name}, got {block}")
            return (blocks - block - 1) * one["dit_block"] + one["decode"], (block + 1) * many["dit_block"] + many["llm_prefill"]
        if path == "ae":
            return one["decode"], blocks * many["dit_block"] + many["llm_prefill"]
        if path == "oracle":
            return 0.0, blocks * many["dit_block"] + many["decode"]
        if path == "vision":
            return 0.0, blocks * many["dit_block"] + many["decode"] + many["vision_encode"] + many["llm_prefill"]
        if path == "none":
            return 0.0, self.plain_ms()
        raise SearchError(f"unknown path {path!r}; paths: vhs, ae, vision, oracle, none")

    def n_for_budget(self, budget_ms: float, path: str, block: int | None = None) -> int:
        """The most candidates whose Best-of-N call fits in `budget_ms`; an error if not even one fits."""
        fixed, per = self.split_ms(path, block)
        if not math.isfinite(budget_ms) or budget_ms < fixed + per:
            raise SearchError(f"a budget of {budget_ms:g} ms is too small for one candidate on the {path} path of "
                              f"{self.name} ({fixed + per:.1f} ms)")
        return 1 if path == "none" else int((budget_ms - fixed) // per)


def load_cost_model(name_or_path: str, card: str | None = None) -> CostModel:
    """A shipped cost model by name (e.g. "sana-sprint-1.6b") or a JSON file; with `card`, a model
    measured on another card is refused."""
    path = Path(name_or_path)
    if not path.is_file():
        path = COSTS / f"{name_or_path}.json"
        if not path.is_file():
            known = sorted(p.stem for p in COSTS.glob("*.json"))
            raise FileNotFoundError(f"no cost model {name_or_path!r}: not a file, and the shipped ones are {known}")
    from vhslab.outputs import check_complete
    from vhslab.schemas import CostModelFile, load

    check_complete(path, "--cost-model")  # one a stopped `bench --save-cost-model` left half-written
    raw = load(path, CostModelFile, SearchError, "not a cost model")  # stage costs finite and > 0, blocks >= 1
    if card is not None and card.lower() not in raw.card.lower():
        raise SearchError(f"cost model {raw.name or path.stem} was measured on {raw.card}, not {card}")
    stages = raw.stages_ms
    return CostModel(raw.name or path.stem, raw.card, raw.num_blocks, stages.batch_1.model_dump(), stages.batch_4.model_dump())
