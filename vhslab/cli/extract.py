"""`vhslab extract` and `vhslab inspect`."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import typer

from vhslab.cli.common import MAX_SIDE, comma_list, console, dit_row_bytes, emit, finite, fit_batch
from vhslab.cli.options import JsonFlag, progress_flag
from vhslab.data.extract import extract, parse_shard
from vhslab.data.pipelines import load_pipeline
from vhslab.data.summary import summarize_store
from vhslab.pipeline import GenConfig
from vhslab.shapes.prompts import read_prompts
from vhslab.shapes.suites import load_suite

ProgressBar = progress_flag("show a progress bar")


def load_prompts(prompts: str) -> list:
    """The --prompts option: a prompt file, or a suite by name."""
    if Path(prompts).is_file():
        return read_prompts(prompts)
    try:
        return load_suite(prompts)
    except (KeyError, ValueError) as err:
        raise typer.BadParameter(f"--prompts {prompts!r}: not a file nor a suite ({err})") from None


def extract_cmd(
    out: Path = typer.Option(..., "--out", help="zarr store to write (created, or resumed if it exists)"),
    model: str = typer.Option("world", help="'world' or a diffusers pipeline folder"),
    prompts: str = typer.Option("geneval-shapes", help="'geneval-shapes', 'train' or a GenEval .jsonl/.json file"),
    n_per_prompt: int = typer.Option(4, min=1, help="candidates (seeds) per prompt"),
    sites: str = typer.Option("all", help="'all' (every block), or a comma list: block.0,block.7,ae_latent,image,vision"),
    batch_size: int = typer.Option(8, min=1, help="samples per pipeline call (= store chunk; clipped to the samples there are)"),
    dtype: str = typer.Option("float16", help="float16 | bfloat16 | float32"),
    seed: int = typer.Option(0, min=0, help="root seed; candidate k of a prompt draws its noise from the stream (seed, prompt, k)"),
    steps: int = typer.Option(None, min=1, help="denoising steps (default: 1 for SANA-Sprint, the teacher's 8, else the pipeline's default)"),
    capture_steps: str = typer.Option(None, "--capture-steps", help="the steps to capture (0-based, comma list, e.g. 0,2,4; default every step)"),
    teacher: bool = typer.Option(False, "--teacher", help="the world's multi-step teacher (with its generation settings) instead of the student"),
    x_t: bool = typer.Option(False, "--x-t", help="also store x_t, the noisy latent entering each captured step"),
    x0_hat: bool = typer.Option(False, "--x0-hat", help="also store x0_hat, the model's clean-latent estimate at each captured step"),
    guidance_scale: float = typer.Option(None, callback=finite, help="pipeline default when omitted"),
    height: int = typer.Option(None, min=8, max=MAX_SIDE, help="default: DiT sample size x VAE factor"),
    width: int = typer.Option(None, min=8, max=MAX_SIDE),
    max_sequence_length: int = typer.Option(None, min=1, help="text tokens (default: the world's, else 300)"),
    limit: int = typer.Option(None, min=1, help="use only the first N prompts"),
    shard: str = typer.Option(None, help="i/n: write only shard i of n (default: the rank under accelerate)"),
    device: str = typer.Option(None, help="torch device (default: cuda if available, else cpu)"),
    verify: bool = typer.Option(True, help="on resume, find lost or damaged chunks and write them again"),
    progress: ProgressBar = True,
    as_json: JsonFlag = False,
) -> None:
    """Generate candidates, capture DiT hidden states (and baselines) and label them into a zarr store."""
    dev = check_device(device)
    specs = load_prompts(prompts)[:limit]
    rank_world = parse_shard(shard)
    at = comma_list(capture_steps, int, "--capture-steps", "step indices") if capture_steps is not None else None
    pipe, vision, model_id, defaults = load_pipeline(model, teacher=teacher)
    if rank_world[1] > 1 and dev == "cuda":
        dev = f"cuda:{rank_world[0] % torch.cuda.device_count()}"
    pipe.to(dev)
    if guidance_scale is None:
        guidance_scale = defaults.guidance_scale
    gen = GenConfig(height, width, steps or defaults.steps, guidance_scale, max_sequence_length or defaults.max_sequence_length)
    size = gen.resolve(pipe)
    batch_size = fit_batch(batch_size, len(specs) * n_per_prompt, dit_row_bytes(pipe, size.height, size.width))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        result = extract(
            pipe, specs, out, n_per_prompt=n_per_prompt, sites=sites, seed=seed, batch_size=batch_size,
            dtype=dtype, gen=gen, vision=vision, shard=rank_world, model_id=model_id, progress=progress, verify=verify,
            steps=at, x_t=x_t, x0_hat=x0_hat,
        )
    for w in caught:
        if issubclass(w.category, UserWarning):
            console.print(f"[yellow]warning:[/yellow] {w.message}", highlight=False, soft_wrap=True)
    emit(result, as_json, title="extract")


def check_device(device: str | None) -> str:
    """The torch device to use; a device this machine lacks is refused before anything is loaded."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise typer.BadParameter(f"--device {device!r}: not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise typer.BadParameter(f"--device {device!r}: this torch build sees no CUDA device; use --device cpu")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise typer.BadParameter(f"--device {device!r}: MPS is not available here; use --device cpu")
    return device


def inspect_cmd(
    path: Path = typer.Argument(..., help="a store written by `vhslab extract`"),
    verify: bool = typer.Option(False, "--verify", help="read every chunk and check it against its checksums"),
    as_json: JsonFlag = False,
) -> None:
    """Summarise an activation store: sites, dims, written samples, accuracy; --verify finds damaged chunks
    (exit 1 if any: `vhslab extract` with the same arguments writes them again)."""
    result = summarize_store(path, verify)
    emit(result, as_json, title=f"store {path}")
    if result.get("damaged"):
        for line in result["damaged"]:
            console.print(f"damaged: {line}", markup=False, highlight=False, soft_wrap=True)
        console.print(f"error: {len(result['damaged'])} damaged chunk(s) in {path}; resume `vhslab extract` with the "
                      "store's arguments to write them again", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if result["written_without_verdict"]:
        console.print(f"[yellow]warning:[/yellow] {result['written_without_verdict']} written samples have no verdict "
                      "(a lost chunk); run `vhslab inspect --verify`")


if __name__ == "__main__":  # `python -m vhslab.cli.extract extract|inspect ...`
    app = typer.Typer()
    app.command("extract")(extract_cmd)
    app.command("inspect")(inspect_cmd)
    app()
