"""`vhslab verifier train | eval | sweep`: LatentVerifiers on activation stores."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer
from accelerate import PartialState

from vhslab.cli.common import (
    claim_outputs,
    comma_list,
    emit,
    finite,
    fit_batch,
    guard,
    positive,
    verifier_row_bytes,
)
from vhslab.cli.options import AllowIncomplete, JsonFlag, OverwriteOutPlot, Progress, Seed, overwrite_flag, plot_option
from vhslab.errors import InputError
from vhslab.outputs import Output, claim, save_figure, save_netcdf, state, write_manifest
from vhslab.verifier.checkpoint import CHECKPOINT
from vhslab.verifier.load import load_llm, store_or_default
from vhslab.verifier.model import VERIFIER_KIND
from vhslab.verifier.report import check_site, evaluate_verifier
from vhslab.verifier.train import VerifierTrainConfig
from vhslab.verifier.trained import sweep_sites, train_on_store

verifier_app = typer.Typer(help="LatentVerifiers: train one, evaluate one, sweep every site.", no_args_is_help=True,
                           pretty_exceptions_enable=False)
LOSS_NAMES = {"xe": "xe", "weighted-xe": "weighted", "focal": "focal"}

DATA_HELP = "training store (default: the world's `verifier-train` store, extracted into the cache on first use)"
TEST_HELP = "test store (default: the world's `verifier-test` store: geneval-shapes x 4, seeds never used in training)"


def _train_config(steps, align_steps, batch_size, lr, llm_lr, loss, seed, balance=0.0, select="within", rank_weight=1.0,
                  mix_chunks=8, teacher_weight=0.0, teacher_c=0.01):
    """The training settings of `train` and `sweep`'s options (the loss and selection names checked)."""
    if loss not in LOSS_NAMES:
        raise InputError(f"--loss {loss!r}: one of {', '.join(LOSS_NAMES)}")
    if select not in ("within", "auroc"):
        raise InputError(f"--select {select!r}: 'within' or 'auroc'")
    return VerifierTrainConfig(steps=steps, align_steps=align_steps, batch_size=batch_size, lr=lr, llm_lr=llm_lr,
                               loss=LOSS_NAMES[loss], seed=seed, balance=balance, select=select,
                               rank_weight=rank_weight, mix_chunks=mix_chunks, teacher_weight=teacher_weight,
                               teacher_c=teacher_c)


OverwriteVerifier = overwrite_flag("replace a verifier already saved in --out")
DepthPlot = plot_option("save the depth plot (verifier and probe against depth) to this image")
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
    seed: Seed = 0,
    balance: float = typer.Option(0.0, min=0.0, callback=finite, help="oversample rare tags: (largest tag / tag) ** balance per epoch"),
    select: str = SELECT, rank_weight: float = RANK, mix_chunks: int = MIX,
    teacher_weight: float = TEACHER, teacher_c: float = TEACHER_C,
    overwrite: OverwriteVerifier = False,
    allow_incomplete: AllowIncomplete = False,
    progress: Progress = True,
    as_json: JsonFlag = False,
) -> None:
    """Train one verifier (stage 1 then stage 2); a stopped run resumes from --out/checkpoint.safetensors."""
    cfg = _train_config(steps, align_steps, batch_size, lr, llm_lr, loss, seed, balance, select, rank_weight, mix_chunks,
                        teacher_weight, teacher_c)
    target = Output(out, VERIFIER_KIND, "--out", folder=True, resumable=True)
    earlier = state(out, VERIFIER_KIND)  # an incomplete one of ours resumes from its checkpoint
    claim([target], overwrite, inputs={"--data": data, "--llm": llm})
    model, tokenizer = load_llm(llm)
    ds = store_or_default(data, "verifier-train", progress, allow_incomplete=allow_incomplete)
    check_site(ds, site, f"--data {data or 'verifier-train'}")
    cfg.batch_size = fit_batch(batch_size, max(2, ds.sizes["sample"]), verifier_row_bytes(model, grid or None, ds))
    drop_checkpoints = lambda: [(out / c).unlink(missing_ok=True) for c in (CHECKPOINT, CHECKPOINT + ".refit")]  # noqa: E731
    if PartialState().is_main_process:
        if earlier == "complete":  # replaced (--overwrite): its finished run's checkpoint is not resumed
            drop_checkpoints()
        write_manifest(target, complete=False)
    res = train_on_store(ds, site, model, tokenizer, cfg, data_name=str(data or "verifier-train"), loss=loss,
                         token_grid=grid or None, progress=progress, checkpoint=out / CHECKPOINT)
    if PartialState().is_main_process:
        res.verifier.save_pretrained(out)
        drop_checkpoints()
    emit({"out": str(out), **res.to_json()}, as_json, title="verifier trained")


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
    allow_incomplete: AllowIncomplete = False,
    progress: Progress = True,
    as_json: JsonFlag = False,
) -> None:
    """Score a test store: AUROC, within-prompt AUROC, balanced accuracy, ECE, Bo1 / Bo-n picked / oracle,
    each with an interval over meanings; the best probe of the verifier's site beside it (paired difference), and the
    linear ranker it was distilled from, if any."""
    res = evaluate_verifier(verifier, test, data, text_only, runs, n, n_boot, allow_incomplete, progress)
    emit(res.to_json(), as_json, title="verifier evaluation")


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
    seed: Seed = 0,
    n_boot: int = typer.Option(300, min=10),
    dev: str = typer.Option(None, "--dev", help="also choose the site on this store (the test's prompts, other seeds; "
                            "'default': the world's verifier-dev), cross-fitted: each half of the test's meanings is "
                            "reported with the site best on the other half's dev rows (dev_choice_*); the shipped "
                            "site is chosen on the training validation split"),
    plot: DepthPlot = None,
    overwrite: OverwriteOutPlot = False,
    allow_incomplete: AllowIncomplete = False,
    progress: Progress = True,
    as_json: JsonFlag = False,
) -> None:
    """One verifier per site (the layer ablation) beside the best probe of each site; the site with the best
    within-prompt AUROC on the training store's validation split (no test meaning) is the selected one; with --dev,
    the cross-fitted choice on it is reported too.
    Finished sites are kept in OUT.partial/, so a stopped sweep resumes."""
    cfg = _train_config(steps, align_steps, 32, 1e-3, 1e-4, loss, seed, select=select, rank_weight=rank_weight,
                        mix_chunks=mix_chunks, teacher_weight=teacher_weight, teacher_c=teacher_c)
    outs = claim_outputs("verifier sweep", overwrite, inputs={"--data": data, "--test": test, "--dev": dev}, out=out,
                         plot=plot)
    model, tokenizer = load_llm(None)
    train_ds = store_or_default(data, "verifier-train", progress, allow_incomplete=allow_incomplete)
    test_ds = store_or_default(test, "verifier-test", progress, "--test", allow_incomplete)
    dev_ds = None if dev is None else store_or_default(None if dev == "default" else Path(dev), "verifier-dev", progress,
                                                       "--dev", allow_incomplete)
    res = sweep_sites(train_ds, test_ds, model, tokenizer, comma_list(sites) or None, cfg, token_grid=grid or None,
                      n_boot=n_boot, progress=progress, partial=out.with_name(out.name + ".partial"), dev=dev_ds)
    save_netcdf(outs["out"], res.ds)
    shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
    result = {"out": str(out), **res.to_json()}
    if plot is not None:
        save_figure(outs["plot"], res.plot())
        result["plot"] = str(plot)
    if not as_json:
        print(res.table())
    emit(result, as_json, title="verifier sweep")
