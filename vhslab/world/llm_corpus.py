"""The world LLM's corpus (`vhslab.world.llm_train`): captions of free scenes, GenEval-style prompts
and verifier dialogues whose answer is the world's own verdict on a sampled, perturbed or unrelated scene."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np

from vhslab.shapes.geneval import judge
from vhslab.shapes.phrasing import caption_scene
from vhslab.shapes.prompts import TAGS, PromptError
from vhslab.shapes.scenes import COLORS, SHAPES, Scene, nominal_detections, place, sample_free_scene, sample_scene
from vhslab.shapes.suites import prompt_space
from vhslab.world.text import verifier_messages

EOS = " <eos>"
KINDS = ("caption", "prompt", "dialogue")
_SPECS: dict | None = None


def specs_by_tag() -> dict:
    """Every tag's prompt space (cached)."""
    global _SPECS
    if _SPECS is None:
        _SPECS = {tag: prompt_space(tag) for tag in TAGS}
    return _SPECS


def random_spec(rng: np.random.Generator):
    """A prompt: a tag uniformly, then a prompt of that tag uniformly (color_attr would drown the rest)."""
    space = specs_by_tag()[TAGS[rng.integers(len(TAGS))]]
    return space[rng.integers(len(space))]


def _shuffled(scene: Scene, rng: np.random.Generator) -> Scene:
    return Scene(tuple(scene.objects[i] for i in rng.permutation(len(scene.objects))))


def _perturb(spec, scene: Scene, rng: np.random.Generator) -> Scene:
    """A scene near `scene` that probably breaks `spec`: hard negatives of every kind."""
    objs = list(scene.objects)
    n = len(objs)
    names = list(COLORS)
    options = ["color", "shape", "add", "free", "mirror"]
    if n > 1:
        options += ["remove", "swap_colors"]
    kind = options[rng.integers(len(options))]
    if kind == "color":
        i = int(rng.integers(n))
        objs[i] = replace(objs[i], color=str(rng.choice([c for c in names if c != objs[i].color])))
    elif kind == "shape":
        i = int(rng.integers(n))
        objs[i] = replace(objs[i], shape=str(rng.choice([s for s in SHAPES if s != objs[i].shape])))
    elif kind == "remove":
        del objs[int(rng.integers(n))]
    elif kind == "swap_colors":
        i, j = rng.choice(n, size=2, replace=False)
        objs[i], objs[j] = replace(objs[i], color=objs[j].color), replace(objs[j], color=objs[i].color)
    elif kind == "mirror":
        axis = "cx" if rng.random() < 0.5 else "cy"
        objs = [replace(o, **{axis: 1.0 - getattr(o, axis)}) for o in objs]
    elif kind == "add":
        item = spec.include[int(rng.integers(len(spec.include)))]
        extra = (item.cls, item.color or names[rng.integers(len(names))]) if rng.random() < 0.6 else (
            SHAPES[rng.integers(len(SHAPES))], names[rng.integers(len(names))])
        with contextlib.suppress(PromptError):  # no room for one more: keep the scene
            objs = place([(o.shape, o.color) for o in objs] + [extra], rng)
    else:  # an unrelated scene
        return sample_free_scene(rng)
    return Scene(tuple(objs))


def dialogue_prefix(tokenizer, prompt: str, caption: str) -> str:
    """The verifier chat up to the generation prompt, the image described by its caption."""
    messages = verifier_messages(prompt)
    messages[1] = dict(messages[1], content=messages[1]["content"].replace("<image>", "<image> " + caption, 1))
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def verifier_example(tokenizer, rng: np.random.Generator, tries: int = 4) -> tuple[str, str, str]:
    """(prefix, answer, tag): a prompt, a scene described in words and the world's verdict, ~half yes."""
    while True:
        spec = random_spec(rng)
        try:
            base = sample_scene(spec, rng)
        except PromptError:  # pragma: no cover - every prompt of the space is renderable
            continue
        break
    want_yes = rng.random() < 0.5
    scene = base
    if not want_yes:
        for _ in range(tries):
            scene = _perturb(spec, base, rng)
            if not judge(spec, nominal_detections(scene)).correct:
                break
    scene = _shuffled(scene, rng)
    answer = "yes" if judge(spec, nominal_detections(scene)).correct else "no"
    return dialogue_prefix(tokenizer, spec.prompt, caption_scene(scene)), answer, spec.tag


def sample_text(tokenizer, rng: np.random.Generator, mix=(0.2, 0.15, 0.65)) -> tuple[str, str]:
    """(kind, text): one piece of world text from the mixture."""
    kind = KINDS[int(rng.choice(3, p=np.asarray(mix) / np.sum(mix)))]
    if kind == "caption":
        return kind, caption_scene(sample_free_scene(rng)) + EOS
    if kind == "prompt":
        return kind, random_spec(rng).prompt + EOS
    prefix, answer, _ = verifier_example(tokenizer, rng)
    return kind, prefix + answer + " <|im_end|>"


def texts(tokenizer, n: int, seed, mix=(0.2, 0.15, 0.65)) -> list[tuple[str, str]]:
    """`n` (kind, text) pairs of the corpus, seeded by `seed`."""
    rng = np.random.default_rng(seed)
    return [sample_text(tokenizer, rng, mix) for _ in range(n)]
