"""The embedded world: the trained tiny SANA-Sprint pipeline, vision encoder and LLM (`load_world`);
its training is `vhslab.world.train`, its scoring `vhslab.world.score`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vhslab.errors import MissingError
from vhslab.pipeline import GenConfig
from vhslab.schemas import WorldInfo, load
from vhslab.trace.vision import VisionEncoder
from vhslab.world.gold import GoldAgreement, gold_agreement
from vhslab.world.llm_train import load_llm
from vhslab.world.score import WorldScore, score_world
from vhslab.world.teacher import TEACHER_STEPS, load_teacher
from vhslab.world.vision_train import load_vision

WORLD_DIR = Path(__file__).resolve().parents[1] / "assets" / "world"


class WorldMissingError(MissingError):
    """There is no world at the given folder (or the shipped one is missing)."""

    pass


@dataclass
class World:
    """The loaded world: its pipeline, vision encoder, CLIP model, LLM, tokenizer, generation defaults and info."""

    pipeline: Any  # diffusers.SanaSprintPipeline
    vision: Any  # vhslab.trace.vision.VisionEncoder over the CLIP vision tower (None if not shipped)
    clip: Any  # transformers.CLIPModel
    llm: Any  # transformers.Qwen2ForCausalLM
    tokenizer: Any  # the world's word-level tokenizer (shared by every component)
    gen_config: Any  # vhslab.pipeline.GenConfig with the world's defaults
    info: dict
    teacher: Any = None  # diffusers.SanaPipeline: the multi-step flow-matching teacher (None if not shipped)
    teacher_gen_config: Any = None  # its GenConfig: TEACHER_STEPS Euler steps, the world's guidance


def load_world(path: str | Path | None = None, device: str = "cpu") -> World:
    """Load the shipped world (or a `vhslab world train` output's `assemble` folder)."""
    from diffusers import SanaSprintPipeline


    root = Path(path) if path else WORLD_DIR
    if (root / "assemble").is_dir():
        root = root / "assemble"
    if not (root / "pipeline" / "model_index.json").is_file():
        raise WorldMissingError(
            f"no world at {root}: expected pipeline/model_index.json; build one with "
            "`vhslab world train --out DIR --ship`"
        )
    info = load(root / "world.json", WorldInfo, what="not a world's info").model_dump()
    pipe = SanaSprintPipeline.from_pretrained(root / "pipeline", local_files_only=True).to(device)  # modules in eval mode
    pipe.set_progress_bar_config(disable=True)
    clip = vision = llm = None
    if (root / "vision" / "config.json").is_file():
        clip, processor, _ = load_vision(root / "vision")
        clip = clip.to(device)
        vision = VisionEncoder(clip.vision_model, processor)
    if (root / "llm" / "config.json").is_file():
        llm = load_llm(root / "llm")[0].to(device)
    gen = GenConfig(guidance_scale=info["default_guidance"], max_sequence_length=info["max_sequence_length"])
    teacher = teacher_gen = None
    if (root / "teacher" / "model_index.json").is_file():
        teacher = load_teacher(root / "teacher", device)
        teacher_gen = GenConfig(steps=TEACHER_STEPS, guidance_scale=info["default_guidance"],
                                max_sequence_length=info["max_sequence_length"])
    return World(pipe, vision, clip, llm, pipe.tokenizer, gen, info, teacher, teacher_gen)


__all__ = ["WORLD_DIR", "GoldAgreement", "World", "WorldMissingError", "WorldScore", "gold_agreement", "load_world",
           "score_world"]
