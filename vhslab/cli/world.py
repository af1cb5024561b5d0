"""`vhslab world ...`: the embedded shapes world."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import typer
from PIL import Image
from rich.progress import Progress

from vhslab.cli.common import MAX_SIDE, check_side, claim_outputs, console, emit, finite, guard
from vhslab.cli.options import JsonFlag, OverwriteFile, Seed, seed_option
from vhslab.errors import InputError
from vhslab.figures.grids import image_grid
from vhslab.outputs import Output, claim, save_figure, state, write_manifest
from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.gold import GOLD_FILE, images_file, read_gold, read_gold_images
from vhslab.shapes.phrasing import caption_scene, parse_prompt
from vhslab.shapes.prompts import TAGS
from vhslab.shapes.robustness import DISTORTIONS, robustness_suite
from vhslab.shapes.scenes import render, sample_scene
from vhslab.shapes.suites import load_suite
from vhslab.shapes.worldcheck import world_check
from vhslab.world import WORLD_DIR, load_world, stage
from vhslab.world.gold import gold_agreement
from vhslab.world.score import generate, score_world
from vhslab.world.teacher import TeacherConfig, train_teacher
from vhslab.world.train import STAGES, profile_configs, train_world

SceneSeed = seed_option("scene seed")

world_app = typer.Typer(help="The embedded shapes world: render, check, train, score.", no_args_is_help=True,
                        pretty_exceptions_enable=False)


@world_app.command("render")
@guard
def render_cmd(
    prompt: str = typer.Argument(..., help='e.g. "a photo of a blue star left of a red circle"'),
    out: Path = typer.Option(..., "-o", "--out", help="PNG file to write"),
    overwrite: OverwriteFile = False,
    seed: SceneSeed = 0,
    resolution: int = typer.Option(64, min=16, max=MAX_SIDE, help="image side in pixels"),
    upscale: int = typer.Option(1, min=1, max=MAX_SIDE, help=f"nearest-neighbour upscaling of the saved PNG, for viewing "
                                f"(at most {MAX_SIDE} px a side)"),
) -> None:
    """Render a random scene that satisfies a GenEval-style prompt."""
    if not prompt.strip():
        raise InputError("PROMPT is empty; give e.g. 'a photo of a blue star left of a red circle'")
    check_side(resolution * upscale, f"--upscale {upscale} of --resolution {resolution}")
    outs = claim_outputs("world render", overwrite, out=out)

    spec = parse_prompt(prompt)  # a PromptError is bad input: `guard` prints it, exit 2
    scene = sample_scene(spec, np.random.default_rng(seed))
    image = Image.fromarray(render(scene, resolution))
    if upscale > 1:
        image = image.resize((resolution * upscale,) * 2, Image.Resampling.NEAREST)
    save_figure(outs["out"], image)
    console.print(f"{spec.tag}: {caption_scene(scene)} -> {out}")


@world_app.command("check")
@guard
def check_cmd(
    n: int = typer.Option(200, "--n", min=1, help="scenes per tag"),
    resolution: int = typer.Option(64, min=16, max=MAX_SIDE, help="image side in pixels"),
    seed: Seed = 0,
    as_json: JsonFlag = False,
) -> None:
    """Judge n true and perturbed scenes per tag: agreement, rejection and speed."""

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("world check", total=n * len(TAGS))
        result = world_check(n, resolution, seed, progress=lambda: bar.advance(task))
    emit(result, as_json, "world check")


@world_app.command("gold")
@guard
def gold_cmd(
    world: Path = typer.Option(None, help="a world folder (default: the shipped world; the gold images are its own)"),
    gold: Path = typer.Option(None, help="gold file (default: the shipped vhslab/assets/gold/world_gold.jsonl)"),
    sheet: Path = typer.Option(None, help="PNG file for the disagreements as an image sheet"),
    overwrite: OverwriteFile = False,
    as_json: JsonFlag = False,
) -> None:
    """The evaluator's agreement with the gold set (generated images judged by eye), per split and tag."""
    outs = claim_outputs("world gold", overwrite, inputs={"--gold": gold, "--world": world}, sheet=sheet)
    path = gold or GOLD_FILE
    try:
        records = read_gold(path)
        judged = read_gold_images(records, images_file(path))  # None: no images beside it, the regeneration is scored
    except (OSError, ValueError) as err:
        console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    w = load_world(world)  # WorldMissingError is bad input: `guard` prints it, exit 2
    with console.status(f"judging {len(records)} gold images" + (" (regenerating them)" if judged is None else "")):
        res = gold_agreement(w, records, judged)  # a spinner on stderr: no silent minute
    if sheet is not None:
        fig = res.plot()
        if fig is not None:
            save_figure(outs["sheet"], fig)
            console.print(f"wrote {sheet}")
    emit(res.to_json(), as_json, "world gold")


@world_app.command("robustness")
@guard
def robustness_cmd(
    n: int = typer.Option(100, "--n", min=1, help="scenes per tag and distortion"),
    seed: Seed = 0,
    as_json: JsonFlag = False,
) -> None:
    """Agreement and rejection on renders distorted by albumentations, per distortion and tag."""

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("robustness", total=n * len(TAGS) * len(DISTORTIONS))
        result = robustness_suite(n, seed, progress=lambda: bar.advance(task))
    emit(result, as_json, "world robustness")


def _check_per_tag(suite, n: int) -> None:
    """Before compute: every tag has n distinct prompts to draw."""
    tag, have = min(Counter(s.tag for s in suite).items(), key=lambda item: item[1])
    if n > have:
        raise InputError(f"--per-tag {n}: the suite has {have} prompts of tag {tag!r}; at most that many")


def _pick(suite, tag: str, n: int, rng) -> list:
    """n distinct prompts of one tag, drawn with `rng`."""
    specs = [s for s in suite if s.tag == tag]
    return [specs[i] for i in rng.choice(len(specs), n, replace=False)]


@world_app.command("grid")
@guard
def grid_cmd(
    out: Path = typer.Option(..., "-o", "--out", help="PNG file to write"),
    overwrite: OverwriteFile = False,
    per_tag: int = typer.Option(6, min=1, help="examples per tag"),
    seed: Seed = 0,
    resolution: int = typer.Option(64, min=16, max=MAX_SIDE),
) -> None:
    """A grid of rendered examples of the evaluation prompts, one row per tag."""
    outs = claim_outputs("world grid", overwrite, out=out)

    rng = np.random.default_rng(seed)
    suite = load_suite("geneval-shapes")
    _check_per_tag(suite, per_tag)
    rows, captions = {}, {}
    for tag in TAGS:
        picks = _pick(suite, tag, per_tag, rng)
        rows[tag] = [render(sample_scene(s, rng), resolution) for s in picks]
        captions[tag] = [s.prompt.removeprefix("a photo of ") for s in picks]
    save_figure(outs["out"], image_grid(rows, captions), dpi=150, bbox_inches=None)
    console.print(f"wrote {out}")


def _plain_line(text: str) -> None:
    """A stage's result line as it is: no rich markup (`[stage]` is not a tag), no wrapping."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


@world_app.command("train")
@guard
def train_cmd(
    out: Path = typer.Option(..., "--out", help="run folder (created; re-running resumes it)"),
    seed: Seed = 0,
    stages: str = typer.Option("all", help="'all' or a comma list of: autoencoder,decoder,teacher,refine,distill,vision,llm,assemble"),
    profile: str = typer.Option("default", help="'default' (CPU-sized), 'gpu' (larger, for one H100/H200) or 'tiny' (smoke test)"),
    device: str = typer.Option(None, help="torch device (default: cuda if available)"),
    threads: int = typer.Option(None, min=1, help="CPU threads (default: all cores)"),
    ship: bool = typer.Option(False, help="copy the assembled world into the package (vhslab/assets/world)"),
    as_json: JsonFlag = False,
) -> None:
    """Train the embedded world: every stage seeded, checkpointed and resumable."""

    try:
        configs = profile_configs(profile)
    except ValueError as err:
        raise typer.BadParameter(f"--profile: {err}") from None
    chosen = STAGES if stages == "all" else tuple(s.strip() for s in stages.split(","))
    run = Output(out, "world train", "--out", folder=True, resumable=True)
    claim([run], overwrite=True)  # a run folder of ours is resumed (each stage refuses other settings); never another's
    if state(out, run.kind) == "absent":
        write_manifest(run, complete=False)
    already = [s for s in chosen if stage.finished_metrics(out / s) is not None]
    start = time.perf_counter()
    metrics = train_world(out, seed, stages=chosen, device=device, log=_plain_line, threads=threads, **configs)
    if all(stage.finished_metrics(out / s) is not None for s in STAGES):
        write_manifest(run, complete=True)
    if ship:
        src = out / "assemble"
        if not (src / "pipeline" / "model_index.json").is_file():
            console.print("[red]error:[/red] nothing to ship: the assemble stage has not run")
            raise typer.Exit(2)
        tmp = WORLD_DIR.with_name("world.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        shutil.rmtree(WORLD_DIR, ignore_errors=True)
        tmp.rename(WORLD_DIR)
        console.print(f"shipped {src} -> {WORLD_DIR}; its teacher was trained from the replaced student: "
                      "run `vhslab world teacher --out RUN --ship` for the new one")
    # this command's wall time; stages finished by an earlier call were skipped, not timed
    emit({**metrics, "wall_seconds": round(time.perf_counter() - start, 1), "already_finished": already},
         as_json, "world train")


@world_app.command("teacher")
@guard
def teacher_cmd(
    out: Path = typer.Option(..., "--out", help="run folder (created; re-running resumes it)"),
    world: Path = typer.Option(None, help="a world folder (default: the shipped world)"),
    seed: Seed = 0,
    profile: str = typer.Option("default", help="'default' (1000 steps, ~12 min on 2 cores) or 'tiny' (smoke test)"),
    ship: bool = typer.Option(False, help="copy the trained teacher into the package (vhslab/assets/world/teacher)"),
    as_json: JsonFlag = False,
) -> None:
    """Train the world's multi-step flow-matching teacher from its student's DiT (seeded, resumable)."""
    if profile not in ("default", "tiny"):
        raise InputError(f"--profile is 'default' or 'tiny', got {profile!r}")
    run = Output(out, "world teacher", "--out", folder=True, resumable=True)
    claim([run], overwrite=True)  # a run folder of ours is resumed (its config is checked); never another's
    if state(out, run.kind) == "absent":
        write_manifest(run, complete=False)
    w = load_world(world)  # WorldMissingError is bad input: `guard` prints it, exit 2
    cfg = TeacherConfig() if profile == "default" else TeacherConfig.tiny()
    metrics = train_teacher(out, w, cfg, seed)
    write_manifest(run, complete=True)
    if ship:
        dest = WORLD_DIR / "teacher"
        tmp = WORLD_DIR / "teacher.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(out / "pipeline", tmp)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        console.print(f"shipped {out / 'pipeline'} -> {dest}")
    emit(metrics, as_json, "world teacher")


@world_app.command("score")
@guard
def score_cmd(
    n_per_prompt: int = typer.Option(4, min=1, help="samples per prompt"),
    suite: str = typer.Option("geneval-shapes", help="prompt suite or GenEval metadata file"),
    world: Path = typer.Option(None, help="a world folder (default: the shipped world)"),
    guidance_scale: float = typer.Option(None, callback=finite, help="default: the world's"),
    limit: int = typer.Option(None, min=1, help="only the first N prompts"),
    generator: str = typer.Option("student", help="'student' (one step) or 'teacher' (multi-step flow matching)"),
    steps: int = typer.Option(None, min=1, help="the teacher's denoising steps (default: the world's, 8)"),
    seed: Seed = 0,
    as_json: JsonFlag = False,
) -> None:
    """GenEval-style scores of a world's generator: Bo1, oracle Best-of-N, images/s."""

    w = load_world(world)  # WorldMissingError is bad input: `guard` prints it, exit 2
    res = score_world(w, load_suite(suite)[:limit], n_per_prompt, guidance_scale, seed, generator, steps)
    emit(res.to_json(), as_json, "world score")


@world_app.command("samples")
@guard
def samples_cmd(
    out: Path = typer.Option(..., "-o", "--out", help="PNG file to write"),
    overwrite: OverwriteFile = False,
    per_tag: int = typer.Option(8, min=1, help="generations per tag"),
    world: Path = typer.Option(None, help="a world folder (default: the shipped world)"),
    seed: Seed = 0,
) -> None:
    """A grid of one-step generations per tag, framed green (judged correct) or red."""
    outs = claim_outputs("world samples", overwrite, inputs={"--world": world}, out=out)

    suite = load_suite("geneval-shapes")
    _check_per_tag(suite, per_tag)
    w = load_world(world)  # WorldMissingError is bad input: `guard` prints it, exit 2
    rng = np.random.default_rng(seed)
    ev = ShapesEvaluator()
    rows, captions, marks = {}, {}, {}
    for tag in TAGS:
        picks = _pick(suite, tag, per_tag, rng)
        imgs = generate(w.pipeline, [s.prompt for s in picks], list(range(seed, seed + per_tag)),
                        w.gen_config.resolve(w.pipeline))
        rows[tag] = list(imgs)
        captions[tag] = [s.prompt.removeprefix("a photo of ") for s in picks]
        marks[tag] = [ev.evaluate(img, s).correct for img, s in zip(imgs, picks, strict=True)]
    save_figure(outs["out"], image_grid(rows, captions, marks), dpi=150, bbox_inches=None)
    console.print(f"wrote {out}")
