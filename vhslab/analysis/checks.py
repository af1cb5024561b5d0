"""Attribution sanity checks that can fail: every check on the trained maps beside controls.

Maps (sample, token), ranked by |value|: the trained verifier's (`ig`, and `ablation` if given), the
model-free controls (`token_norm`: each token's norm after the verifier's normalisation; `random`: a
seeded Gaussian draw) and the weight-randomised verifier's IG (`randomised_ig`). Checks, each a ratio of
per-sample sums so that one cluster bootstrap (over prompts) gives every interval:

- `deletion` / `deletion_road`: |margin change| when the top tokens are removed over that of as many
  random ones (summed over the fractions); passes above 1. `deletion` sets removed tokens to the
  verifier's mean (the IG baseline: off the data, so a token far from the mean moves the margin whatever
  the model reads), `deletion_road` imputes them from their grid neighbours (`vhslab.analysis.road`).
- `insertion` / `insertion_road`: |margin gap to the full input| keeping only random tokens over keeping
  only the top ones (the rest removed as above); passes above 1.
- `pointing`: share of |map| on the cells under the named objects minus their share of the grid (needs
  images); passes above 0.
- `randomisation` (Adebayo et al. 2018): Spearman correlation of a map with the same map computed on the
  randomised verifier (a model-free map does not change: 1); passes below `max_rank_corr`.

A trained map's check is "uninformative" unless the paired difference to every model-free control is
on the check's good side with its 95% interval (same bootstrap draws for both maps); otherwise it is
"passed" or "failed" by the check's own rule. Controls are labelled by the rule alone.
"""

from __future__ import annotations

import numpy as np
import torch

from vhslab.analysis.attribution import margin
from vhslab.analysis.road import road_impute
from vhslab.analysis.sanity import by_fraction, object_cells, pointing, rank_correlation
from vhslab.errors import InputError
from vhslab.stats import cluster_draws, interval, paired_interval, row_weights

MODEL_FREE = ("token_norm", "random")
# check: (sign: +1 higher is better / -1 lower, the level its interval must clear, what it measures)
RULES = {
    "deletion": (1, 1.0, "|margin change| removing the top tokens (set to the verifier's mean) / removing random ones"),
    "deletion_road": (1, 1.0, "|margin change| removing the top tokens (ROAD imputation) / removing random ones"),
    "insertion": (1, 1.0, "|gap to the full margin| keeping random tokens / keeping the top ones (rest set to the mean)"),
    "insertion_road": (1, 1.0, "|gap to the full margin| keeping random tokens / keeping the top ones (rest imputed, ROAD)"),
    "pointing": (1, 0.0, "share of |map| on the named objects' cells minus those cells' share of the grid"),
    "randomisation": (-1, 0.5, "Spearman correlation with the same map on the weight-randomised verifier"),
}


def token_norm_map(verifier, hidden: torch.Tensor) -> np.ndarray:
    """(sample, token) model-free map: each token's norm after the verifier's per-channel normalisation."""
    x = (hidden.float() - verifier.mean.float()) / torch.sqrt(verifier.var.float() + verifier.config.eps)
    return x.norm(dim=-1).numpy()


def random_map(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """(sample, token) model-free map: a seeded Gaussian draw (the same whatever the model)."""
    return np.random.default_rng([seed, 34]).standard_normal(shape)


def top_mask(attr: np.ndarray, k: int) -> np.ndarray:
    """(sample, token) bool: the k tokens of largest |attr| per sample."""
    out = np.zeros(attr.shape, bool)
    np.put_along_axis(out, np.argsort(-np.abs(attr), 1, kind="stable")[:, :k], True, 1)
    return out


def removed(verifier, hidden: torch.Tensor, drop: np.ndarray, fill: str, rng: np.random.Generator,
            noise: float = 0.01) -> torch.Tensor:
    """`hidden` with the tokens in `drop` removed: set to the verifier's mean (`fill="mean"`) or imputed
    from their grid neighbours (`fill="road"`)."""
    if fill == "mean":
        out = hidden.clone()
        out[torch.as_tensor(drop)] = verifier.mean.float().reshape(-1).to(out.dtype)
        return out
    if fill == "road":
        return road_impute(hidden, drop, torch.sqrt(verifier.var.float() + verifier.config.eps), noise, rng)
    raise InputError(f"fill must be 'mean' or 'road', got {fill!r}")


def perturbation(verifier, hidden: torch.Tensor, prompts: list[str], maps: dict[str, np.ndarray],
                 fractions=(0.1, 0.2, 0.3, 0.5), fill: str = "mean", n_random: int = 8, seed: int = 0,
                 noise: float = 0.01) -> dict:
    """Per fraction (rows of each array) and sample: |margin change| removing each map's top tokens
    (`deletion_top[name]`) and random ones (`deletion_random`, mean of `n_random` draws, the same draws
    for every map), and |gap to the full margin| keeping only those (`insertion_top`, `insertion_random`)."""
    n, t = hidden.shape[:2]
    base = margin(verifier, hidden, prompts)
    masks = np.random.default_rng(seed)

    def move(drop, *key):  # ROAD's noise: seeded per (fraction, role), the same draw for every map's top tokens
        rng = np.random.default_rng([seed, *key])
        return np.abs(margin(verifier, removed(verifier, hidden, drop, fill, rng, noise), prompts) - base)

    tokens = [min(max(1, round(f * t)), t - 1) for f in fractions]
    out = {"fractions": list(fractions), "tokens": tokens, "deletion_random": np.zeros((len(tokens), n)),
           "insertion_random": np.zeros((len(tokens), n))}
    out["deletion_top"] = {name: np.zeros((len(tokens), n)) for name in maps}
    out["insertion_top"] = {name: np.zeros((len(tokens), n)) for name in maps}
    for i, k in enumerate(tokens):
        for j in range(n_random):
            pick = top_mask(masks.random((n, t)), k)
            out["deletion_random"][i] += move(pick, i, 0, j) / n_random
            out["insertion_random"][i] += move(~pick, i, 1, j) / n_random
        for name, attr in maps.items():
            top = top_mask(np.asarray(attr).reshape(n, t), k)
            out["deletion_top"][name][i] = move(top, i, 2)
            out["insertion_top"][name][i] = move(~top, i, 3)
    return out


def deletion(verifier, hidden: torch.Tensor, prompts: list[str], attr: np.ndarray, fractions=(0.1, 0.2, 0.3, 0.5),
             n_random: int = 8, n_boot: int = 1000, seed: int = 0, fill: str = "mean") -> dict:
    """Per fraction f: mean |margin change| when the top-f tokens by |attribution| are removed (`fill`:
    set to the verifier's mean, or "road": imputed from their neighbours) vs f random tokens (mean of
    `n_random` draws per sample); `ratio` (top / random) with its 95% interval. Alone, this cannot tell a
    model's map from a model-free one: see `check_table` below for the checks with controls."""
    curves = perturbation(verifier, hidden, prompts, {"map": attr}, fractions, fill, n_random, seed)
    return by_fraction(curves, "map", n_boot, seed)


def perturbation_values(curves: dict, suffix: str = "") -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """{check: {map: (numerator, denominator)}} per sample, summed over the fractions, from `perturbation`."""
    d_rnd, i_rnd = curves["deletion_random"].sum(0), curves["insertion_random"].sum(0)
    return {f"deletion{suffix}": {m: (v.sum(0), d_rnd) for m, v in curves["deletion_top"].items()},
            f"insertion{suffix}": {m: (i_rnd, v.sum(0)) for m, v in curves["insertion_top"].items()}}


def _replicates(num: np.ndarray, den: np.ndarray, draws) -> np.ndarray:
    w = row_weights(draws)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ num) / (w @ den)


def check_table(values: dict, clusters, trained=("ig", "ablation"), controls=MODEL_FREE, n_boot: int = 1000,
                seed: int = 0, rules: dict | None = None) -> dict:
    """Every check's value per map with its 95% cluster-bootstrap interval (whole `clusters`, e.g.
    prompts, resampled; the same draws for every map), and for each trained map the paired difference to
    every other map and its label (see the module's docstring). `values`: {check: {map: (num, den)}},
    a check's value being sum(num) / sum(den) over the samples."""
    rules = rules or RULES
    draws = cluster_draws(np.asarray(clusters), n_boot, seed)
    table = {}
    for check, per_map in values.items():
        sign, level, what = rules[check]
        per_map = {m: (np.asarray(a, float), np.asarray(b, float)) for m, (a, b) in per_map.items()}
        reps = {m: _replicates(a, b, draws) for m, (a, b) in per_map.items()}
        point = {m: float(a.sum() / b.sum()) if b.sum() else float("nan") for m, (a, b) in per_map.items()}
        rows = {}
        for m in per_map:
            lo, hi = interval(reps[m])
            row = {"value": point[m], "ci": [lo, hi], "label": "passed" if (lo > level if sign > 0 else hi < level) else "failed"}
            if m in trained:
                separated = [c for c in controls if c in per_map]
                for other in [c for c in per_map if c not in trained]:
                    d_lo, d_hi = paired_interval(reps[m], reps[other])
                    row[f"vs_{other}"] = {"diff": point[m] - point[other], "ci": [d_lo, d_hi]}
                    if other in separated and not (d_lo > 0 if sign > 0 else d_hi < 0):
                        separated.remove(other)
                if len(separated) < len([c for c in controls if c in per_map]):
                    row["label"] = "uninformative"
            rows[m] = row
        table[check] = {"rule": f"{what}; passes {'above' if sign > 0 else 'below'} {level:g}", "maps": rows}
    return table


def run_checks(verifier, hidden: torch.Tensor, prompts: list[str], maps: dict[str, np.ndarray],
               randomised: dict[str, np.ndarray], *, images: np.ndarray | None = None, specs=None,
               cells=None, fractions=(0.1, 0.2, 0.3, 0.5), n_random: int = 8, n_boot: int = 1000, seed: int = 0,
               noise: float = 0.01) -> tuple[dict, dict, dict]:
    """Every check on every map (`maps`: {name: (sample, token)}; `randomised`: the same maps computed on
    the weight-randomised verifier, for the randomisation check; `images` and parsed prompt `specs` for
    pointing, or their `sanity.object_cells` if already found). Returns (the check table, {check: {map: (num, den)}} per sample, the mean-fill curves)."""

    n, t = hidden.shape[:2]
    maps = {m: np.asarray(v, float).reshape(n, t) for m, v in maps.items()}
    curves = perturbation(verifier, hidden, prompts, maps, fractions, "mean", n_random, seed, noise)
    values = perturbation_values(curves)
    values.update(perturbation_values(perturbation(verifier, hidden, prompts, maps, fractions, "road", n_random, seed,
                                                   noise), "_road"))
    if images is not None:
        side = round(t**0.5)
        cells = object_cells(images, specs, side) if cells is None else cells
        values["pointing"] = {}
        for m, v in maps.items():
            share, chance = pointing(v.reshape(n, side, side), images, specs, cells=cells)
            found = np.isfinite(share)
            values["pointing"][m] = (np.where(found, share - chance, 0.0), found.astype(float))
    values["randomisation"] = {m: (rank_correlation(v, np.asarray(randomised[m]).reshape(n, t)), np.ones(n))
                               for m, v in maps.items() if m in randomised}
    return check_table(values, prompts, [m for m in ("ig", "ablation") if m in maps], n_boot=n_boot, seed=seed), values, curves
