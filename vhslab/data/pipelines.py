"""The generator an extraction reads: the shipped world, or any diffusers pipeline folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vhslab.errors import InputError, MissingError
from vhslab.pipeline import GenConfig
from vhslab.threads import fit
from vhslab.world import load_world


def load_pipeline(model: str, option: str = "--model", teacher: bool = False) -> tuple[Any, Any, str, Any]:
    """`world` -> the shipped world (`vhslab.world.load_world()`), its multi-step teacher with
    `teacher` (and the teacher's GenConfig); else a diffusers pipeline folder (an unusable one is
    refused, named by `option`). Returns (pipeline, vision encoder or None, model id, default GenConfig)."""
    if teacher and model != "world":
        raise InputError(f"--teacher picks the world's teacher; {option} {model!r} is a pipeline folder already (drop --teacher)")
    if model == "world":
        world = load_world()  # WorldMissingError (a MissingError) when there is none
        if not teacher:
            return world.pipeline, world.vision, "world", world.gen_config
        if world.teacher is None:
            raise MissingError("--teacher: this world ships no teacher (no teacher/model_index.json)")
        return world.teacher, world.vision, "world-teacher", world.teacher_gen_config
    path = Path(model)
    if not (path / "model_index.json").is_file():
        raise MissingError(f"{option} {model!r}: expected 'world' or a diffusers pipeline folder (model_index.json)")
    from diffusers import DiffusionPipeline

    try:
        pipe = DiffusionPipeline.from_pretrained(path, local_files_only=True)
    except Exception as err:  # diffusers raises many types for an incomplete folder
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{option} {model!r}: cannot load a diffusers pipeline ({type(err).__name__}: {first})") from None
    pipe.set_progress_bar_config(disable=True)
    fit(pipe)  # --threads' default, by this model's size
    return pipe, None, str(path.resolve()), GenConfig(max_sequence_length=300)


__all__ = ["load_pipeline"]
