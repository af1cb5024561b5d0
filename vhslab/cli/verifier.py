"""`vhslab verifier train | eval | sweep`: LatentVerifiers on activation stores."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import typer

from vhslab.cli.common import (
    ALLOW_INCOMPLETE,
    claim_outputs,
    comma_list,
    emit,
    finite,
    fit_batch,
    guard,
    positive,
    verifier_row_bytes,
)

verifier_app = typer.Typer(help="LatentVerifiers: train one, evaluate one, sweep every site.", no_args_is_help=True,
                           pretty_exceptions_enable=False)
LOSS_NAMES = {"xe": "xe", "weighted-xe": "weighted", "focal": "focal"}

DATA_HELP = "training store (default: the world's `verifier-train` store, extracted into the cache on first use)"
TEST_HELP = "test store (default: the world's `verifier-test` store: geneval-shapes x 4, seeds never used in training)"


def _store(path: Path | None, name: str, progress: bool, option: str = "--data", allow_incomplete: bool = False):
    """The store at `path` (or the world's default store `name`); an unusable one is named by `option`."""
    from vhslab.data.default_stores import default_store
    from vhslab.probes import open_store

    try:
        return open_store(path if path is not None else default_store(name, progress), allow_incomplete=allow_incomplete)
    except ValueError as err:
        raise ValueError(f"{option} {path if path is not None else name}: {err}") from None


def _check_site(ds, site: str, where: str) -> None:
    """The store holds rows at `site` ('text' needs none), or an error naming the store."""
    from vhslab.trace.site import find_site

    if site != "text":
        try:
            find_site(ds, site)
        except ValueError as err:
            raise ValueError(f"{where}: no rows of the verifier's site: {err}") from None


def _check_eval_stores(site: str, n: int, stores: dict) -> None:
    """Before compute: each store (keyed by `--option path`) holds rows at the verifier's site, and the
    test store's prompt rows hold at least n candidates each."""
    import numpy as np

    for where, ds in stores.items():
        if ds.sizes["sample"] == 0:
            raise ValueError(f"{where}: the store holds no rows")
        _check_site(ds, site, where)
    where, test = next(iter(stores.items()))
    fewest = int(np.unique(test["prompt_index"].values, return_counts=True)[1].min())
    if fewest < n:
        raise ValueError(f"--n {n}: a prompt row of {where} holds only {fewest} candidates; Best-of-{n} needs {n} (lower --n)")


def _llm(llm: str | None):
    """The world's LLM and tokenizer, or any transformers causal LM folder."""
    if llm is None:
        import vhslab

        world = vhslab.load_world()
        return world.llm, world.tokenizer
    from transformers import AutoModelForCausalLM

    if not (Path(llm) / "config.json").is_file():
        raise FileNotFoundError(f"--llm {llm}: not a transformers model folder (config.json missing)")
    try:
        return AutoModelForCausalLM.from_pretrained(llm, local_files_only=True, use_safetensors=True), folder_tokenizer(llm)
    except OSError as err:  # transformers' word for an incomplete model folder (no weights, ...)
        raise FileNotFoundError(f"--llm {llm}: {str(err).strip().splitlines()[0]}") from None


def folder_tokenizer(folder: str | Path):
    """A model folder's tokenizer. A bare `tokenizers` one (the world's word-level tokenizer, saved with
    tokenizer_class TokenizersBackend) loads as saved: AutoTokenizer would follow config.json's
    model_type (qwen2) and rebuild a byte-level BPE from its vocabulary, which maps words to wrong ids."""
    from transformers import AutoTokenizer

    from vhslab.schemas import read_json
    from vhslab.world.llm_train import load_tokenizer

    config = Path(folder) / "tokenizer_config.json"
    raw = read_json(config) if config.is_file() else {}
    cls = raw.get("tokenizer_class") if isinstance(raw, dict) else None
    if cls in ("TokenizersBackend", "PreTrainedTokenizerFast"):
        return load_tokenizer(folder)
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def _train_config(steps, align_steps, batch_size, lr, llm_lr, loss, seed, balance=0.0, select="within", rank_weight=1.0,
                  mix_chunks=8, teacher_weight=0.0, teacher_c=0.01):
    from vhslab.verifier.train import VerifierTrainConfig

    if loss not in LOSS_NAMES:
        raise ValueError(f"--loss {loss!r}: one of {', '.join(LOSS_NAMES)}")
    if select not in ("within", "auroc"):
        raise ValueError(f"--select {select!r}: 'within' or 'auroc'")
    return VerifierTrainConfig(steps=steps, align_steps=align_steps, batch_size=batch_size, lr=lr, llm_lr=llm_lr,
                               loss=LOSS_NAMES[loss], seed=seed, balance=balance, select=select,
                               rank_weight=rank_weight, mix_chunks=mix_chunks, teacher_weight=teacher_weight,
                               teacher_c=teacher_c)


STEPS = typer.Option(600, min=1, help="stage-2 steps (yes/no; early stopping on the validation metric --select)")
SELECT = typer.Option("within", help="early stopping on validation 'within' (within-prompt AUROC) or 'auroc'")
RANK = typer.Option(1.0, min=0.0, callback=finite, help="weight of the pairwise ranking loss inside each prompt row (0: answer loss only)")
ALIGN = typer.Option(200, min=0, help="stage-1 steps (connector only, caption loss); 0 skips it")
GRID = typer.Option(4, min=0, help="pool the token grid to g x g visual tokens (0: every token)")
TEACHER = typer.Option(0.0, min=0.0, callback=finite, help="weight of the within-prompt linear ranker distilled pairwise in stage 2 "
                       "(a logistic regression on the site's mean states, fit on the training rows; the shipped verifier: "
                       "5; 0: none)")
TEACHER_C = typer.Option(0.01, min=1e-9, callback=finite, help="the distilled ranker's inverse L2 strength (logistic regression C)")
MIX = typer.Option(8, min=1, help="a batch mixes the rows of this many store chunks (more prompts per batch; 1: the "
                   "recipe before; reads keep 2x that many chunks)")


@verifier_app.command("train")
@guard
def train_cmd(
    out: Path = typer.Option(..., "--out", help="folder for the verifier (save_pretrained layout)"),
    site: str = typer.Option("block.9", help="block.k, ae_latent, vision or text (no visual tokens)"),
    loss: str = typer.Option("weighted-xe", help="xe, weighted-xe (class-weighted) or focal"),
    data: Path = typer.Option(None, "--data", help=DATA_HELP),
    llm: str = typer.Option(None, help="a transformers causal LM folder (default: the world's Qwen2)"),
    steps: int = STEPS, align_steps: int = ALIGN, grid: int = GRID,
    batch_size: int = typer.Option(32, min=2, help="rows per step (clipped to the store's rows)"),
    lr: float = typer.Option(1e-3, callback=positive, help="learning rate of the connector (> 0)"),
    llm_lr: float = typer.Option(1e-4, min=0.0, callback=finite, help="learning rate of the LLM (0 freezes it)"),
    seed: int = typer.Option(0, min=0),
    balance: float = typer.Option(0.0, min=0.0, callback=finite, help="oversample rare tags: (largest tag / tag) ** balance per epoch"),
    select: str = SELECT, rank_weight: float = RANK, mix_chunks: int = MIX,
    teacher_weight: float = TEACHER, teacher_c: float = TEACHER_C,
    overwrite: bool = typer.Option(False, help="replace a verifier already saved in --out"),
    allow_incomplete: bool = ALLOW_INCOMPLETE,
    progress: bool = typer.Option(True, help="show progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object as the last line"),
) -> None:
    """Train one verifier (stage 1 then stage 2); a stopped run resumes from --out/checkpoint.safetensors."""
    from vhslab.outputs import Output, claim, state, write_manifest
    from vhslab.verifier.model import VERIFIER_KIND
    from vhslab.verifier.train import CHECKPOINT, train_verifier

    cfg = _train_config(steps, align_steps, batch_size, lr, llm_lr, loss, seed, balance, select, rank_weight, mix_chunks,
                        teacher_weight, teacher_c)
    target = Output(out, VERIFIER_KIND, "--out", folder=True, resumable=True)
    earlier = state(out, VERIFIER_KIND)  # an incomplete one of ours resumes from its checkpoint
    claim([target], overwrite, inputs={"--data": data, "--llm": llm})
    model, tokenizer = _llm(llm)
    ds = _store(data, "verifier-train", progress, allow_incomplete=allow_incomplete)
    _check_site(ds, site, f"--data {data or 'verifier-train'}")
    cfg.batch_size = fit_batch(batch_size, max(2, ds.sizes["sample"]), verifier_row_bytes(model, grid or None, ds))
    from accelerate import PartialState

    drop_checkpoints = lambda: [(out / c).unlink(missing_ok=True) for c in (CHECKPOINT, CHECKPOINT + ".refit")]  # noqa: E731
    if PartialState().is_main_process:
        if earlier == "complete":  # replaced (--overwrite): its finished run's checkpoint is not resumed
            drop_checkpoints()
        write_manifest(target, complete=False)
    t0 = time.perf_counter()
    verifier, info = train_verifier(ds, site, model, tokenizer, cfg, token_grid=grid or None, progress=progress,
                                    checkpoint=out / CHECKPOINT)
    verifier.config.extra.update({"data": str(data or "verifier-train"), "store": ds.attrs.get("content_key"),
                                  "best_val_auroc": info["best_val_auroc"], "best_val_within": info["best_val_within"]})
    if PartialState().is_main_process:
        verifier.save_pretrained(out)
        drop_checkpoints()
    emit({"out": str(out), "site": site, "loss": loss, "train_s": round(time.perf_counter() - t0, 1),
          "best_val_auroc": info["best_val_auroc"], "best_val_within": info["best_val_within"],
          "best_step": info["best_step"], "n_train": info["n_train"], "n_val": info["n_val"],
          "processes": info["processes"], "history": info["history"]}, as_json, title="verifier trained")


@verifier_app.command("eval")
@guard
def eval_cmd(
    verifier: str = typer.Argument("default", help="'default' (the shipped verifier) or a saved verifier folder"),
    test: Path = typer.Option(None, "--test", help=TEST_HELP),
    data: Path = typer.Option(None, "--data", help=DATA_HELP + "; fits the probe shown beside the verifier"),
    text_only: str = typer.Option("default", help="text-only verifier: 'default' (shipped), a folder, or 'none'"),
    runs: str = typer.Option("default", help="the recipe's training runs (comma list of >= 3 verifier folders, other "
                             "seeds of the verifier's recipe; 'default': the shipped recipe's runs for the shipped "
                             "verifier, none for a folder; 'none': skip)"),
    n: int = typer.Option(4, min=2, help="Best-of-n"),
    n_boot: int = typer.Option(300, min=10, help="bootstrap resamples of meanings"),
    allow_incomplete: bool = ALLOW_INCOMPLETE,
    progress: bool = typer.Option(True, help="show progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object as the last line"),
) -> None:
    """Score a test store: AUROC, within-prompt AUROC, balanced accuracy, ECE, Bo1 / Bo-n picked / oracle,
    each with an interval over meanings; the best probe of the verifier's site beside it (paired difference), and the
    linear ranker it was distilled from, if any."""
    import vhslab
    from vhslab.verifier.evaluate import evaluate_scores
    from vhslab.verifier.sweep import best_probe_scores, candidate_rows, mean_states, score_store, teacher_scores

    v = vhslab.load_verifier(None if verifier == "default" else verifier)
    text = None if text_only == "none" else vhslab.load_verifier(None if text_only == "default" else text_only, kind="text")
    test_ds = _store(test, "verifier-test", progress, "--test", allow_incomplete)
    train_ds = _store(data, "verifier-train", progress, allow_incomplete=allow_incomplete)
    from vhslab.verifier.model import check_generator

    for ds in (test_ds, train_ds):  # before any compute: states of another generator mean nothing to it
        check_generator(v, ds)
    site = v.config.site
    _check_eval_stores(site, n, {f"--test {test or 'verifier-test'}": test_ds, f"--data {data or 'verifier-train'}": train_ds})
    cfg = v.config.extra.get("train", {})
    feats = None if site == "text" else mean_states(train_ds, test_ds, site)  # read once: the probe and the teacher
    probe, kind = best_probe_scores(train_ds, test_ds, site, cfg.get("seed", 0), cfg.get("val_fraction", 0.2),
                                    cfg.get("select", "within"), feats=feats)
    y, rows = candidate_rows(test_ds)
    t0 = time.perf_counter()
    score = score_store(v, test_ds)
    speed = len(y) / (time.perf_counter() - t0)
    res = evaluate_scores(y, {"verifier": score, "probe": probe}, n=n, n_boot=n_boot, reference="probe", **rows)
    ver = res["models"]["verifier"]
    out = {"verifier": verifier, "site": site, "test": str(test or "verifier-test"), "n_candidates": len(y),
           "n_prompt_rows": res["n_prompt_rows"], "n_meanings": res["n_meanings"],
           **{k: ver[k] for k in ("auroc", "within_prompt_auroc", "balanced_accuracy", "ece", "bo1")},
           f"bo{n}_verifier": ver[f"bo{n}"], f"bo{n}_oracle": ver[f"bo{n}_oracle"], "gain": ver["gain"]}
    if text is not None:
        t = evaluate_scores(y, {"text": score_store(text, test_ds)}, n=n, n_boot=n_boot, **rows)["models"]["text"]
        out.update({"text_only_auroc": t["auroc"], "text_only_within_prompt_auroc": t["within_prompt_auroc"],
                    f"text_only_bo{n}": t[f"bo{n}"]})
    out.update({"probe": {"kind": kind, **res["models"]["probe"]}, "verifier_minus_probe": res["difference"],
                "candidates_per_s": round(speed, 1)})
    run_dirs = _recipe_runs(runs, verifier)
    if run_dirs:
        out["recipe"] = _recipe(v, score, run_dirs, test_ds, y, rows, n, n_boot)
    if cfg.get("teacher_weight"):  # what the LLM adds to the linear ranker it was distilled from
        pair = evaluate_scores(y, {"verifier": score, "teacher": teacher_scores(train_ds, test_ds, site, cfg, feats)}, n=n,
                               n_boot=n_boot, reference="teacher", **rows)
        out.update({"teacher": {"kind": f"within-linear-C{cfg.get('teacher_c', 0.01):g}", **pair["models"]["teacher"]},
                    "verifier_minus_teacher": pair["difference"]})
    emit(out, as_json, title="verifier evaluation")


def _recipe_runs(runs: str, verifier: str) -> list[Path]:
    """The recipe's run folders: given, or the shipped recipe's for the shipped verifier."""
    if runs == "none" or (runs == "default" and verifier != "default"):
        return []
    if runs == "default":
        import vhslab

        root = Path(vhslab.__file__).parent / "assets" / "verifier_runs"
        return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [Path(p) for p in comma_list(runs, option="--runs", what="verifier folders")]


def _recipe(v, score, run_dirs: list[Path], test_ds, y, rows, n: int, n_boot: int) -> dict:
    """Every run of the verifier's recipe scored on the test store (the evaluated verifier's own run reuses
    its `score`): mean and spread, the rule's choice."""
    import vhslab
    from vhslab.verifier.evaluate import recipe_report
    from vhslab.verifier.sweep import score_store

    loaded = {p.name: vhslab.load_verifier(p) for p in run_dirs}
    for name, run in loaded.items():
        if run.config.site != v.config.site:
            raise ValueError(f"--runs {name}: a verifier of site {run.config.site}, not the evaluated one's ({v.config.site})")
    val = {name: float(run.config.extra.get("best_val_within", float("nan"))) for name, run in loaded.items()}
    shipped = next((name for name, run in loaded.items() if run.fingerprint() == v.fingerprint()), None)
    scores = {name: score if name == shipped else score_store(run, test_ds) for name, run in loaded.items()}
    report = recipe_report(scores, val, y, n=n, n_boot=n_boot, shipped=shipped, **rows)
    report["runs_dirs"] = [str(p) for p in run_dirs]
    return report


@verifier_app.command("sweep")
@guard
def sweep_cmd(
    out: Path = typer.Option(..., "--out", help="sweep dataset to write (.nc)"),
    sites: str = typer.Option("", help="comma list of sites (default: every block, ae_latent, vision, text)"),
    data: Path = typer.Option(None, "--data", help=DATA_HELP),
    test: Path = typer.Option(None, "--test", help=TEST_HELP),
    loss: str = typer.Option("weighted-xe", help="xe, weighted-xe or focal"),
    steps: int = typer.Option(300, min=1, help="stage-2 steps per site (fewer than `train`'s: 15 sites in 30 min)"),
    align_steps: int = typer.Option(100, min=0, help="stage-1 steps per site; 0 skips it"),
    select: str = SELECT, rank_weight: float = RANK, grid: int = GRID, mix_chunks: int = MIX,
    teacher_weight: float = TEACHER, teacher_c: float = TEACHER_C,
    seed: int = typer.Option(0, min=0),
    n_boot: int = typer.Option(300, min=10),
    dev: str = typer.Option(None, "--dev", help="also choose the site on this store (the test's prompts, other seeds; "
                            "'default': the world's verifier-dev), cross-fitted: each half of the test's meanings is "
                            "reported with the site best on the other half's dev rows (dev_choice_*); the shipped "
                            "site is chosen on the training validation split"),
    plot: Path = typer.Option(None, help="save the depth plot (verifier and probe against depth) to this image"),
    overwrite: bool = typer.Option(False, help="replace --out / --plot if they exist"),
    allow_incomplete: bool = ALLOW_INCOMPLETE,
    progress: bool = typer.Option(True, help="show progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object as the last line"),
) -> None:
    """One verifier per site (the layer ablation) beside the best probe of each site; the site with the best
    within-prompt AUROC on the training store's validation split (no test meaning) is the selected one; with --dev,
    the cross-fitted choice on it is reported too.
    Finished sites are kept in OUT.partial/, so a stopped sweep resumes."""
    from vhslab.verifier.sweep import run_verifier_sweep, verifier_table

    cfg = _train_config(steps, align_steps, 32, 1e-3, 1e-4, loss, seed, select=select, rank_weight=rank_weight,
                        mix_chunks=mix_chunks, teacher_weight=teacher_weight, teacher_c=teacher_c)
    outs = claim_outputs("verifier sweep", overwrite, inputs={"--data": data, "--test": test, "--dev": dev}, out=out,
                         plot=plot)
    model, tokenizer = _llm(None)
    train_ds = _store(data, "verifier-train", progress, allow_incomplete=allow_incomplete)
    test_ds = _store(test, "verifier-test", progress, "--test", allow_incomplete)
    dev_ds = None if dev is None else _store(None if dev == "default" else Path(dev), "verifier-dev", progress, "--dev",
                                             allow_incomplete)
    t0 = time.perf_counter()
    res = run_verifier_sweep(train_ds, test_ds, model, tokenizer, comma_list(sites) or None,
                             cfg, token_grid=grid or None, n_boot=n_boot, progress=progress,
                             partial=out.with_name(out.name + ".partial"), dev=dev_ds)
    from vhslab.outputs import save_figure, save_netcdf

    save_netcdf(outs["out"], res)
    shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
    result = {"out": str(out), "elapsed_s": round(time.perf_counter() - t0, 1), "selected_site": res.attrs["selected_site"],
              "selected_by": json.loads(res.attrs["selected_by"]),
              **({"dev_choice": json.loads(res.attrs["dev_choice"]),
                  **{k: res.attrs[k] for k in ("dev_choice_within", "dev_choice_within_ci", "dev_choice_gain",
                                               "dev_choice_gain_ci")}} if "dev_choice" in res.attrs else {}),
              "sites": {s: {**{m: round(float(res["value"].sel(model="verifier", site=s, metric=m)), 4)
                               for m in ("auroc", "within_prompt_auroc", "bo4", "gain")},
                            **({"dev_within": round(float(res["dev_within"].sel(site=s)), 4)} if dev is not None else {})}
                        for s in res.site.values}}
    if plot is not None:
        from vhslab.figures.verifiers import plot_verifier_depth

        save_figure(outs["plot"], plot_verifier_depth(res))
        result["plot"] = str(plot)
    if not as_json:
        print(verifier_table(res))
    emit(result, as_json, title="verifier sweep")
