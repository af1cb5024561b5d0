"""Verifiers per site (the paper's layer ablation) beside the best probe of each site, as one dataset.

Every site gets a verifier trained on the training store and scored on a test store whose
candidates were never used in training; next to it, the best probe of the same site trained on
the same rows (linear, MLP or within-prompt linear on mean-pooled tokens, chosen on the verifier's own
validation split by the verifier's selection metric; for the text-only verifier, the prompt-only baseline). Metrics come with 95%
intervals over meanings, and verifier - probe with a paired interval (same draws).

    res = run_verifier_sweep(open_store("train.zarr"), open_store("test.zarr"), world.llm, world.tokenizer)
    res.to_netcdf("verifier_sweep.nc"); verifier_table(res)
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from vhslab.outputs import read_resumable_json, write_json_atomic
from vhslab.probes.data import check_store, site_features
from vhslab.probes.metrics import auroc_binary, auroc_within
from vhslab.probes.models import WithinPromptLinear, make_probe, make_prompt_baseline, prompt_structure
from vhslab.probes.selection import by_training_validation, crossfit
from vhslab.trace.site import Site, find_site, store_sites
from vhslab.verifier.data import ChunkReader, prompt_rows, validation_split
from vhslab.verifier.evaluate import evaluate_scores
from vhslab.verifier.model import LatentVerifier, check_generator
from vhslab.verifier.teacher import teacher_model
from vhslab.verifier.train import VerifierTrainConfig, score_rows, train_verifier

MARK = "vhslab_verifier_sweep"
PROBE_C = (0.01, 0.1, 1.0)  # the probes' regularisation grid (inverse L2 strength), fixed before any run


def _strs(values) -> np.ndarray:
    return np.array([str(v) for v in values])


def candidate_rows(ds: xr.Dataset) -> tuple[np.ndarray, dict]:
    """A test store's verdicts and the row keys `evaluate_scores` takes (group, tag, meaning, prompts)."""
    rows = {"group": ds["prompt_index"].values, "tag": _strs(ds["tag"].values), "meaning": _strs(ds["meaning"].values),
            "prompts": _strs(ds["prompt"].values)}
    return ds["verdict"].values.astype(int), rows


def score_store(verifier: LatentVerifier, ds: xr.Dataset, prompts: np.ndarray | None = None) -> np.ndarray:
    """The verifier's score of every row of a store, read chunk by chunk, asked each row's prompt (or
    `prompts`, one per row)."""
    site = verifier.config.site
    check_generator(verifier, ds)
    read = None if site == "text" else ChunkReader(ds, find_site(ds, site), int(ds.attrs.get("sample_chunk", 64)))
    prompts = _strs(ds["prompt"].values) if prompts is None else np.asarray(prompts)
    return score_rows(verifier, read, np.arange(ds.sizes["sample"]), prompts)


def best_probe_scores(train: xr.Dataset, test: xr.Dataset, site: str, seed: int = 0, val_fraction: float = 0.2,
                      select: str = "within", feats: tuple[np.ndarray, np.ndarray] | None = None):
    """Test P(yes) of the best probe of `site` fitted on the training store's training split, chosen
    on the verifier's validation split by `select` ("within": within-prompt AUROC, as the verifier's
    default; "auroc") among an MLP, linear probes and within-prompt linear probes (`WithinPromptLinear`: trained
    on what ranks candidates of one prompt, as the verifier's ranking loss is), both linear families over the
    grid C in PROBE_C, all on the same split and rule as the verifier's checkpoint;
    for "text" the prompt-only baseline. `feats`: the two stores' mean states at `site`, if already read.
    Returns (scores, name)."""
    y = train["verdict"].values.astype(int)
    fit_rows, val_rows = validation_split(train, val_fraction, seed)
    prompts, groups = _strs(train["prompt"].values), prompt_rows(train)[fit_rows]
    if site == "text":
        x_train, x_test = prompt_structure(train), prompt_structure(test)
        candidates = {"prompt-only": make_prompt_baseline("linear", True, seed)}
    else:
        x_train, x_test = feats or mean_states(train, test, site)
        candidates = {"mlp": make_probe("mlp", True, seed)}
        for c in PROBE_C:  # every linear family over one regularisation grid, chosen like the rest
            candidates[f"linear-C{c:g}"] = make_probe("linear", True, seed)
            candidates[f"linear-C{c:g}"].set_params(logisticregression__C=c)
            candidates[f"within-linear-C{c:g}"] = WithinPromptLinear(C=c)
    take = (lambda x, r: x.iloc[r]) if hasattr(x_train, "iloc") else (lambda x, r: x[r])  # DataFrame or array
    best = None
    for name, model in candidates.items():
        extra = {"groups": groups} if isinstance(model, WithinPromptLinear) else {}
        model.fit(take(x_train, fit_rows), y[fit_rows], **extra)
        val = model.predict_proba(take(x_train, val_rows))[:, 1]
        score = (auroc_within(y[val_rows], val, prompts[val_rows]) if select == "within"
                 else auroc_binary(y[val_rows], val))
        if best is None or score > best[0]:
            best = (score, name, model)
    return best[2].predict_proba(x_test)[:, 1], best[1]


def mean_states(train: xr.Dataset, test: xr.Dataset, site: str) -> tuple[np.ndarray, np.ndarray]:
    """Both stores' mean-pooled states at `site` (one read each)."""
    return tuple(site_features(d, find_site(d, site))["mean"] for d in (train, test))


def teacher_scores(train: xr.Dataset, test: xr.Dataset, site: str, cfg: dict,
                   feats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Test scores of the linear ranker a verifier was distilled from (`teacher_weight` > 0): the same
    `WithinPromptLinear` on the same training rows as in training, so the table can show what the
    LLM adds to its teacher. `feats` as for `best_probe_scores`."""
    x_train, x_test = feats or mean_states(train, test, site)
    fit_rows, _ = validation_split(train, cfg.get("val_fraction", 0.2), cfg.get("seed", 0))
    model = teacher_model(x_train, fit_rows, train["verdict"].values.astype(int), prompt_rows(train), cfg.get("teacher_c", 0.01))
    return model.predict_proba(x_test)[:, 1]


def run_verifier_sweep(train: xr.Dataset, test: xr.Dataset, llm, tokenizer, sites: list[str] | None = None,
                       cfg: VerifierTrainConfig | None = None, token_grid: int | None = 4, n: int = 4,
                       n_boot: int = 300, progress: bool = True, partial: str | Path | None = None,
                       dev: xr.Dataset | None = None) -> xr.Dataset:
    """Train one verifier per site, score the test store, and return the sweep dataset. With
    `partial` (a folder), each finished site is kept there and a rerun with the same settings skips it
    (the text-only verifier has no stage 1). With `dev` (test-like prompts, other seeds), each verifier
    is also scored there and the site is chosen by its within-prompt AUROC on dev; otherwise by the
    training store's validation split."""
    cfg = cfg or VerifierTrainConfig()
    train, test = check_store(train), check_store(test)
    dev = check_store(dev) if dev is not None else None
    sites = sites or [str(s) for s in store_sites(train, text=True)]
    for site in sites:  # every site must exist in every store: errors before any training
        if site != "text":
            for store in (train, test, dev):
                if store is not None:
                    find_site(store, site)
    y, rows = candidate_rows(test)
    dev_y, dev_prompts = (None, None) if dev is None else (dev["verdict"].values.astype(int), _strs(dev["prompt"].values))
    key = {"train": train.attrs.get("content_key"), "test": test.attrs.get("content_key"), "config": asdict(cfg),
           "token_grid": token_grid, "n": n, "n_boot": n_boot, "dev": None if dev is None else dev.attrs.get("content_key"),
           "scores": 1}  # rows keep their dev and test scores (for the cross-fitted choice)
    done = Path(partial) if partial is not None else None
    results, extra = [], {k: [] for k in ("train_s", "val_auroc", "val_within", "dev_within", "probe_kind")}
    scored: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for site in tqdm(sites, desc="verifier sweep", disable=not progress):
        kept = done / f"{site}.json" if done is not None else None
        row = read_resumable_json(kept) if kept is not None and kept.is_file() else None  # damaged: warned, computed again
        if not (isinstance(row, dict) and row.get("key") == json.loads(json.dumps(key, default=float))):
            t0 = time.perf_counter()
            site_cfg = replace(cfg, align_steps=0, teacher_weight=0.0) if site == "text" else cfg  # no states
            verifier, info = train_verifier(train, site, llm, tokenizer, site_cfg, token_grid=token_grid, progress=False)
            seconds = time.perf_counter() - t0
            probe, kind = best_probe_scores(train, test, site, cfg.seed, cfg.val_fraction, cfg.select)
            dev_score = None if dev is None else score_store(verifier, dev)
            dev_within = np.nan if dev is None else auroc_within(dev_y, dev_score, dev_prompts)
            test_score = score_store(verifier, test)
            result = evaluate_scores(y, {"verifier": test_score, "probe": probe}, n=n, n_boot=n_boot,
                                     reference="probe", **rows)
            row = {"key": key, "train_s": seconds, "val_auroc": info["best_val_auroc"], "val_within": info["best_val_within"],
                   "dev_within": dev_within, "probe_kind": kind, "result": result, "test_score": test_score.tolist(),
                   "dev_score": None if dev_score is None else dev_score.tolist()}
            if kept is not None:
                kept.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(kept, row, default=float)
        results.append(row["result"])
        if row.get("dev_score") is not None:
            scored[site] = (np.asarray(row["dev_score"], float), np.asarray(row["test_score"], float))
        for k in extra:
            extra[k].append(row[k])
    ds = _as_dataset(sites, results, extra, train, test, cfg, token_grid, n)
    if dev is not None:
        ds.attrs.update(_crossfit_site(scored, dev, y, rows, n, n_boot))
    return ds


def _crossfit_site(scored: dict, dev: xr.Dataset, y: np.ndarray, rows: dict, n: int, n_boot: int) -> dict:
    """The site chosen on the dev store without the meanings it is reported on (`selection.crossfit`): each
    fold of test meanings takes the site best on the other folds' dev rows; the combined test numbers."""
    dev_y, dev_rows = candidate_rows(dev)
    combined, record = crossfit(scored, {"verdict": dev_y, "group": dev_rows["group"], "tag": dev_rows["tag"],
                                         "meaning": dev_rows["meaning"]},
                                {"verdict": y, "group": rows["group"], "tag": rows["tag"], "meaning": rows["meaning"]})
    res = evaluate_scores(y, {"crossfit": combined}, n=n, n_boot=n_boot, **rows)["models"]["crossfit"]
    return {"dev_choice": json.dumps(record), "dev_choice_within": res["within_prompt_auroc"]["value"],
            "dev_choice_within_ci": res["within_prompt_auroc"]["ci"], "dev_choice_gain": res["gain"]["value"],
            "dev_choice_gain_ci": res["gain"]["ci"]}


def _as_dataset(sites, results, extra, train, test, cfg, token_grid, n) -> xr.Dataset:
    site, record = by_training_validation(dict(zip(sites, extra["val_within"], strict=True)))
    models = list(results[0]["models"])
    metrics = list(results[0]["models"][models[0]])
    cube = np.array([[[[r["models"][m][k]["value"], *r["models"][m][k]["ci"]] for k in metrics] for r in results]
                     for m in models])  # (model, site, metric, 3)
    diff = np.array([[[r["difference"][k]["value"], *r["difference"][k]["ci"]] for k in metrics] for r in results])
    num = int(train.attrs.get("num_blocks", 1))
    depth = [Site.parse(s).index / num if Site.parse(s).is_block else np.nan for s in sites]
    ds = xr.Dataset(
        {"value": (("model", "site", "metric"), cube[..., 0]), "lo": (("model", "site", "metric"), cube[..., 1]),
         "hi": (("model", "site", "metric"), cube[..., 2]),
         "diff": (("site", "metric"), diff[..., 0]), "diff_lo": (("site", "metric"), diff[..., 1]),
         "diff_hi": (("site", "metric"), diff[..., 2]),
         **{k: ("site", np.array(v, dtype=object if k == "probe_kind" else float)) for k, v in extra.items()}},
        coords={"model": models, "site": sites, "metric": metrics, "depth": ("site", depth)},
        attrs={MARK: 1, "train_store": str(train.attrs.get("content_key")), "test_store": str(test.attrs.get("content_key")),
               "train_config": json.dumps(asdict(cfg)), "token_grid": token_grid or 0, "best_of": n,
               "n_meanings": int(results[0]["n_meanings"]), "n_prompt_rows": int(results[0]["n_prompt_rows"]),
               "selected_site": site, "selected_by": json.dumps(record),
               "note": "value/lo/hi: test metric and 95% interval over meanings; diff: verifier - probe, paired; "
                       "val_*: the training store's validation split (meaning-disjoint); dev_within: the verifier's "
                       "within-prompt AUROC on the dev store (test-like prompts, other seeds; NaN without one); "
                       "selected_by: the fixed rule (the best training-validation within-prompt AUROC: no test "
                       "meaning); with a dev store, dev_choice_* is the cross-fitted choice on it (each fold of test "
                       "meanings reported with the site best on the other folds' dev meanings)"})
    ds["probe_kind"] = ds["probe_kind"].astype(str)
    return ds


def sweep_summary(sweep: xr.Dataset, with_dev: bool = False) -> dict:
    """The sweep's JSON summary: the selected site and how, the cross-fitted dev choice (if any), and per site
    the verifier's AUROC, within-prompt AUROC, Bo4 and gain (4 places; `with_dev`: its dev within-prompt AUROC)."""
    res = sweep
    return {"selected_site": res.attrs["selected_site"], "selected_by": json.loads(res.attrs["selected_by"]),
            **({"dev_choice": json.loads(res.attrs["dev_choice"]),
                **{k: res.attrs[k] for k in ("dev_choice_within", "dev_choice_within_ci", "dev_choice_gain",
                                             "dev_choice_gain_ci")}} if "dev_choice" in res.attrs else {}),
            "sites": {s: {**{m: round(float(res["value"].sel(model="verifier", site=s, metric=m)), 4)
                             for m in ("auroc", "within_prompt_auroc", "bo4", "gain")},
                          **({"dev_within": round(float(res["dev_within"].sel(site=s)), 4)} if with_dev else {})}
                      for s in res.site.values}}


def verifier_table(sweep: xr.Dataset, metrics=("auroc", "within_prompt_auroc", "bo4", "gain")) -> str:
    """A markdown table: per site the verifier's and the probe's test metrics and the paired difference."""
    fmt = lambda v, lo, hi: f"{v:.3f} ({lo:.3f}-{hi:.3f})"  # noqa: E731
    head = "| site | " + " | ".join(f"{m} verifier | {m} probe | diff" for m in metrics) + " | val within |"
    lines = [head, "|" + "---|" * (2 + 3 * len(metrics))]
    for site in sweep.site.values:
        cells = []
        for m in metrics:
            for model in ("verifier", "probe"):
                v = sweep.sel(model=model, site=site, metric=m)
                cells.append(fmt(float(v["value"]), float(v["lo"]), float(v["hi"])))
            d = sweep.sel(site=site, metric=m)
            cells.append(f"{float(d['diff']):+.3f} ({float(d['diff_lo']):+.3f},{float(d['diff_hi']):+.3f})")
        dev = float(sweep["dev_within"].sel(site=site)) if "dev_within" in sweep else np.nan
        lines.append(f"| {site} | " + " | ".join(cells) + f" | {float(sweep['val_within'].sel(site=site)):.3f} |"
                     + ("" if np.isnan(dev) else f" {dev:.3f} |"))
    if "dev_within" in sweep and not np.isnan(sweep["dev_within"].values.astype(float)).all():
        lines[0] += " dev within |"
        lines[1] += "---|"
    return "\n".join(lines)


__all__ = ["best_probe_scores", "candidate_rows", "run_verifier_sweep", "score_store", "verifier_table"]
