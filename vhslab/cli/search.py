"""`vhslab generate`: one good picture, picked by a latent verifier from N one-step candidates."""

from __future__ import annotations

from pathlib import Path

import typer

from vhslab.cli.common import check_new_file, emit


def generate_cmd(
    prompt: str = typer.Argument(..., help='e.g. "a photo of two red circles"'),
    out: Path = typer.Option(..., "-o", "--out", help="PNG file to write"),
    n: int = typer.Option(8, "--n", min=1, help="candidates to score"),
    verifier: str = typer.Option("default", help="'default' (the shipped verifier) or a saved verifier folder"),
    seed: int = typer.Option(0, min=0),
    batch_size: int = typer.Option(8, min=1),
    upscale: int = typer.Option(1, min=1, help="enlarge the saved image by this integer factor (nearest)"),
    overwrite: bool = typer.Option(False, help="replace --out if it exists"),
    as_json: bool = typer.Option(False, "--json", help="print scores and per-stage timings as one JSON object"),
) -> None:
    """Generate N candidates with the world's generator up to the verifier's block, score them, finish and
    decode only the winner; the evaluator's verdict of the winner is reported when the world can judge the prompt."""
    import numpy as np
    from PIL import Image

    import vhslab
    from vhslab.search import best_of_n

    check_new_file(out, overwrite)
    world = vhslab.load_world()
    v = vhslab.load_verifier(None if verifier == "default" else verifier)
    res = best_of_n(world.pipeline, v, prompt, n, seed=seed, batch_size=batch_size, gen=world.gen_config)
    image = np.repeat(np.repeat(res.image, upscale, 0), upscale, 1)
    Image.fromarray(image).save(out)
    result = {"out": str(out), "prompt": prompt, "n": res.n, "site": v.config.site, "chosen": res.chosen,
              "scores": [round(float(s), 4) for s in res.scores], "seed_of_chosen": res.seeds[res.chosen],
              "timings_ms": {k: round(1000 * t, 2) for k, t in res.timings.items()}}
    try:
        from vhslab.data.evaluate import ShapesEvaluator
        from vhslab.data.phrasing import parse_prompt

        result["evaluator_correct"] = bool(ShapesEvaluator().evaluate(res.image, parse_prompt(prompt)).correct)
    except ValueError:  # a prompt the shapes world cannot judge: no verdict, the picture still stands
        result["evaluator_correct"] = None
    emit(result, as_json, title="generate")
