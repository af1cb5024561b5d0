"""Noise search: the same candidate budget as Best-of-N, spent in rounds around the best noise so far.

Zero-order search in the spirit of inference-time scaling work on flow models (Ma et al. 2025):
round 0 scores fresh noises (the first seeds Best-of-N would use, so the two are paired); every
later round scores neighbours of the best noise found so far, x = sqrt(1 - r^2) * best + r * eps,
which keeps each candidate a standard normal draw. Candidates run only to the verifier's block and
the winner is finished from its cached state, as in `best_of_n`'s VHS path.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vhslab.pipeline import GenConfig, sample_seed
from vhslab.search.best_of_n import SearchResult, Timer, check_search
from vhslab.search.costs import round_sizes
from vhslab.search.generation import Prompted, SearchError, initial_noise
from vhslab.search.paths import SearchRun

PERTURB = 1_000_000  # perturbation noise uses candidate indices from here: never a Best-of-N seed index in practice


@torch.no_grad()
def noise_search(pipe, verifier, prompt: str, n: int | None = None, *, budget_ms: float | None = None, cost_model=None,
                 rounds: int = 3, radius: float = 0.5, seed: int = 0, first: int = 0, batch_size: int = 8,
                 gen: GenConfig | None = None) -> SearchResult:
    """Spend N candidates (or what `budget_ms` buys on the VHS path, the rounds charged one after another)
    in `rounds` rounds; the winner is the best-scored candidate of all rounds. `extra` holds the round
    of each candidate. Round 0 uses the seeds `best_of_n(..., seed=seed, first=first)` starts with."""
    if not (isinstance(rounds, int) and rounds >= 1):
        raise SearchError(f"rounds must be an integer >= 1, got {rounds!r}")
    if not (isinstance(radius, (int, float)) and 0 < radius <= 1):
        raise SearchError(f"radius must be in (0, 1], got {radius!r}")
    gen = (gen or GenConfig()).resolve(pipe)
    path, block, n = check_search(pipe, verifier, n, gen, budget_ms, cost_model, prompt=prompt, batch_size=batch_size,
                                  rounds=rounds)
    if not path.to_block:
        raise SearchError(f"noise search runs on a block-site (VHS) verifier; this one is on the {path.name} path")
    t = Timer()
    with t("encode_prompt"):
        prompted = Prompted.encode(pipe, prompt, gen)
    run = SearchRun(prompted, verifier, prompt, block)
    sizes = round_sizes(n, rounds)
    seeds = [sample_seed(seed, prompt, first + j) for j in range(sizes[0])]
    noises, states, scores, round_of = [], [], [], []
    batch = initial_noise(pipe, seeds, gen)
    drawn = 0
    for r, size in enumerate(sizes):
        if r > 0:
            best = noises[int(np.argmax(scores))]
            eps = initial_noise(pipe, [sample_seed(seed, prompt, PERTURB + first + drawn + j) for j in range(size)], gen)
            drawn += size
            batch = math.sqrt(1 - radius ** 2) * best + radius * eps
        for lo in range(0, size, batch_size):
            x = batch[lo:lo + batch_size]
            s, h = path.score(run, x, t)
            noises.extend(x.split(1))
            states.extend(h.split(1))
            scores.extend(float(v) for v in s)
            round_of.extend([r] * len(x))
    chosen = int(np.argmax(scores))
    with t("finish_winner"):
        image = prompted.finish(noises[chosen], block, states[chosen])
    t["total"] = sum(t.values())
    return SearchResult(image, np.array(scores), chosen, seeds, dict(t), "noise",
                        {"round": round_of, "radius": radius, "winner_noise": noises[chosen]})
