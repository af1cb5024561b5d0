"""`vhslab extract` and `vhslab inspect`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from vhslab.cli.common import console, emit


def load_model(model: str) -> tuple[Any, Any, str, Any]:
    """`world` -> the shipped world (`vhslab.world.load_world()`); else a diffusers pipeline folder.
    Returns (pipeline, vision encoder or None, model id, default GenConfig)."""
    from vhslab.data.generate import GenConfig

    if model == "world":
        try:
            from vhslab.world import load_world
        except ImportError:
            raise typer.BadParameter(
                "--model world needs vhslab.world.load_world(), which is not available in this checkout; "
                "pass a pipeline folder instead"
            ) from None
        try:
            world = load_world()
        except FileNotFoundError as err:
            raise typer.BadParameter(str(err)) from None
        return world.pipeline, world.vision, "world", world.gen_config
    path = Path(model)
    if not (path / "model_index.json").is_file():
        raise typer.BadParameter(f"--model {model!r}: expected 'world' or a diffusers pipeline folder (model_index.json)")
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe, None, str(path.resolve()), GenConfig(max_sequence_length=300)


def load_prompts(prompts: str) -> list:
    from vhslab.data.prompts import load_suite, read_prompts

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
    n_per_prompt: int = typer.Option(4, help="candidates (seeds) per prompt"),
    sites: str = typer.Option("all", help="'all' (every block), or a comma list: block.0,block.7,ae_latent,image,vision"),
    batch_size: int = typer.Option(8, help="samples per pipeline call (= store chunk)"),
    dtype: str = typer.Option("float16", help="float16 | bfloat16 | float32"),
    seed: int = typer.Option(0, help="root seed; candidate k of a prompt draws its noise from the stream (seed, prompt, k)"),
    steps: int = typer.Option(None, help="denoising steps (default: 1 for SANA-Sprint, else the pipeline's default)"),
    guidance_scale: float = typer.Option(None, help="pipeline default when omitted"),
    height: int = typer.Option(None, help="default: DiT sample size x VAE factor"),
    width: int = typer.Option(None),
    max_sequence_length: int = typer.Option(None, help="text tokens (default: the world's, else 300)"),
    limit: int = typer.Option(None, help="use only the first N prompts"),
    shard: str = typer.Option(None, help="i/n: write only shard i of n (default: the rank under accelerate)"),
    device: str = typer.Option(None, help="torch device (default: cuda if available, else cpu)"),
    progress: bool = typer.Option(True, help="show a progress bar"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object as the last line"),
) -> None:
    """Generate candidates, capture DiT hidden states (and baselines) and label them into a zarr store."""
    import torch

    from vhslab.data.extract import extract, parse_shard
    from vhslab.data.generate import GenConfig

    specs = load_prompts(prompts)[:limit]
    rank_world = parse_shard(shard)
    pipe, vision, model_id, defaults = load_model(model)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if rank_world[1] > 1 and dev == "cuda":
        dev = f"cuda:{rank_world[0] % torch.cuda.device_count()}"
    pipe.to(dev)
    if guidance_scale is None:
        guidance_scale = defaults.guidance_scale
    gen = GenConfig(height, width, steps, guidance_scale, max_sequence_length or defaults.max_sequence_length)
    try:
        result = extract(
            pipe, specs, out, n_per_prompt=n_per_prompt, sites=sites, seed=seed, batch_size=batch_size,
            dtype=dtype, gen=gen, vision=vision, shard=rank_world, model_id=model_id, progress=progress,
        )
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    emit(result, as_json, title="extract")


def summarize_store(path: Path) -> dict[str, Any]:
    """A short summary of a store (reads only the small label variables)."""
    import numpy as np

    from vhslab.data.store import open_store, written_mask

    ds = open_store(path)
    written = written_mask(ds, path)
    verdict = ds["verdict"].values[written]
    tags = ds["tag"].values[written]
    nbytes = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    return {
        "path": str(path),
        "pipeline": ds.attrs.get("pipeline", ""),
        "model_id": ds.attrs["model_id"],
        "sites": ds.attrs["sites"],
        "dtype": ds.attrs["dtype"],
        "dims": {k: int(v) for k, v in ds.sizes.items()},
        "samples": int(ds.sizes["sample"]),
        "written": int(written.sum()),
        "accuracy": float(verdict.mean()) if verdict.size else None,
        "accuracy_by_tag": {str(t): float(verdict[tags == t].mean()) for t in np.unique(tags)},
        "disk_mb": round(nbytes / 1e6, 3),
        "content_key": ds.attrs["content_key"],
    }


def inspect_cmd(
    path: Path = typer.Argument(..., help="a store written by `vhslab extract`"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object as the last line"),
) -> None:
    """Summarise an activation store: sites, dims, written samples, accuracy."""
    from vhslab.data.store import StoreError

    try:
        result = summarize_store(path)
    except (StoreError, FileNotFoundError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    emit(result, as_json, title=f"store {path}")


if __name__ == "__main__":  # `python -m vhslab.cli.extract extract|inspect ...`
    app = typer.Typer()
    app.command("extract")(extract_cmd)
    app.command("inspect")(inspect_cmd)
    app()
