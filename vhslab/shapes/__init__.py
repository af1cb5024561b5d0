"""The shapes world: GenEval-style prompts and their phrasing, the prompt suites, procedural scenes,
the detector and the exact evaluator (GenEval rules), and the gold set it is validated on.

The bottom of the package: nothing here imports the world's models, the data stores, the probes or
the verifier (the gold set's regeneration by a world is `vhslab.world.gold`)."""

from vhslab.shapes.evaluate import ShapesEvaluator, overall_score, summarize
from vhslab.shapes.geneval import Detection, Verdict, judge
from vhslab.shapes.gold import GOLD_FILE, GoldError, GoldRecord, read_gold
from vhslab.shapes.phrasing import caption_detections, caption_scene, check_prompts, parse_prompt, prompt_text
from vhslab.shapes.prompts import RELATIONS, TAGS, Item, PromptError, PromptSpec, read_prompts, write_prompts
from vhslab.shapes.robustness import robustness_suite
from vhslab.shapes.scenes import COLORS, SHAPES, Scene, SceneObject, render, sample_scene
from vhslab.shapes.suites import SUITES, build_suite, load_suite, prompt_space
from vhslab.shapes.worldcheck import world_check

__all__ = [
    "COLORS", "GOLD_FILE", "RELATIONS", "SHAPES", "SUITES", "TAGS", "Detection", "GoldError", "GoldRecord", "Item",
    "PromptError", "PromptSpec", "Scene", "SceneObject", "ShapesEvaluator", "Verdict", "build_suite",
    "caption_detections", "caption_scene", "check_prompts", "judge", "load_suite", "overall_score", "parse_prompt",
    "prompt_space", "prompt_text", "read_gold", "read_prompts", "render", "robustness_suite", "sample_scene",
    "summarize", "world_check", "write_prompts",
]
