"""`vhslab world ...`: the embedded shapes world."""

from __future__ import annotations

from pathlib import Path

import typer

from vhslab.cli.common import console, emit

world_app = typer.Typer(help="The embedded shapes world: render, check, train, score.", no_args_is_help=True)


@world_app.command("render")
def render_cmd(
    prompt: str = typer.Argument(..., help='e.g. "a photo of a blue star left of a red circle"'),
    out: Path = typer.Option(..., "-o", "--out", help="PNG file to write"),
    seed: int = typer.Option(0, help="scene seed"),
    resolution: int = typer.Option(64, help="image side in pixels"),
    upscale: int = typer.Option(1, help="nearest-neighbour upscaling of the saved PNG, for viewing"),
) -> None:
    """Render a random scene that satisfies a GenEval-style prompt."""
    import numpy as np
    from PIL import Image

    from vhslab.data.phrasing import caption_scene, parse_prompt
    from vhslab.data.prompts import PromptError
    from vhslab.data.shapes import render, sample_scene

    try:
        spec = parse_prompt(prompt)
        scene = sample_scene(spec, np.random.default_rng(seed))
    except PromptError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    image = Image.fromarray(render(scene, resolution))
    if upscale > 1:
        image = image.resize((resolution * upscale,) * 2, Image.Resampling.NEAREST)
    image.save(out)
    console.print(f"{spec.tag}: {caption_scene(scene)} -> {out}")


@world_app.command("check")
def check_cmd(
    n: int = typer.Option(200, "--n", help="scenes per tag"),
    resolution: int = typer.Option(64, help="image side in pixels"),
    seed: int = typer.Option(0),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object as the last line"),
) -> None:
    """Judge n true and perturbed scenes per tag: agreement, rejection and speed."""
    from rich.progress import Progress

    from vhslab.data.prompts import TAGS
    from vhslab.data.worldcheck import world_check

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("world check", total=n * len(TAGS))
        result = world_check(n, resolution, seed, progress=lambda: bar.advance(task))
    emit(result, as_json, "world check")


@world_app.command("grid")
def grid_cmd(
    out: Path = typer.Option(..., "-o", "--out", help="PNG file to write"),
    per_tag: int = typer.Option(6, help="examples per tag"),
    seed: int = typer.Option(0),
    resolution: int = typer.Option(64),
) -> None:
    """A grid of rendered examples of the evaluation prompts, one row per tag."""
    import numpy as np

    from vhslab.data.prompts import TAGS, load_suite
    from vhslab.data.shapes import render, sample_scene
    from vhslab.figures.grids import image_grid

    rng = np.random.default_rng(seed)
    suite = load_suite("geneval-shapes")
    rows, captions = {}, {}
    for tag in TAGS:
        specs = [s for s in suite if s.tag == tag]
        picks = [specs[i] for i in rng.choice(len(specs), per_tag, replace=False)]
        rows[tag] = [render(sample_scene(s, rng), resolution) for s in picks]
        captions[tag] = [s.prompt.removeprefix("a photo of ") for s in picks]
    image_grid(rows, captions).savefig(out, dpi=150)
    console.print(f"wrote {out}")
