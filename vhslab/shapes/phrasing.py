"""GenEval's phrasing: prompt text <-> PromptSpec, and captions of scenes or detections."""

from __future__ import annotations

import re

from vhslab.shapes.geneval import dominant_relation
from vhslab.shapes.prompts import RELATIONS, Item, PromptError, PromptSpec
from vhslab.shapes.scenes import PLURALS, Scene, check_vocabulary

NUMBER_WORDS = {"zero": 0, "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
COUNT_WORDS = {1: "a", 2: "two", 3: "three", 4: "four", 5: "five"}
SINGULARS = {plural: single for single, plural in PLURALS.items()}
PREFIX = "a photo of "
_NP = re.compile(r"^(\w+) (?:(\w+) )?(\w+)$")
_REL = re.compile(r"^(.+?) (" + "|".join(RELATIONS) + r") (.+)$")


def noun_phrase(cls: str, count: int = 1, color: str | None = None) -> str:
    """GenEval's noun phrase for `count` objects of `cls` ("a red circle", "two stars")."""
    words = ([color] if color else []) + [cls if count == 1 else PLURALS.get(cls, cls + "s")]
    head = COUNT_WORDS.get(count, str(count))
    if count == 1 and words[0][0] in "aeiou":
        head = "an"
    return " ".join([head, *words])


def prompt_text(spec: PromptSpec) -> str:
    """The GenEval sentence for a spec ("a photo of a dog right of a teddy bear")."""
    inc = spec.include
    phrases = [noun_phrase(it.cls, it.count, it.color) for it in inc]
    if len(inc) == 2 and inc[1].position is not None and inc[1].position[1] == 0:
        return f"{PREFIX}{phrases[1]} {inc[1].position[0]} {phrases[0]}"
    if len(phrases) > 2:
        return PREFIX + ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return PREFIX + " and ".join(phrases)


def _parse_np(text: str, index: int) -> Item:
    match = _NP.match(text)
    if match is None or match.group(1) not in NUMBER_WORDS:
        raise PromptError(f"include[{index}]: cannot read {text!r} (expected e.g. 'a red circle' or 'two stars')")
    count = NUMBER_WORDS[match.group(1)]
    noun = match.group(3)
    return Item(SINGULARS.get(noun, noun), count, match.group(2))


def infer_tag(include: list[Item]) -> str:
    """The GenEval tag that `include` items belong to ("custom" when none fits)."""
    if len(include) == 1:
        item = include[0]
        if item.count > 1:
            return "counting"
        return "colors" if item.color else "single_object"
    if len(include) == 2:
        if any(it.position for it in include):
            return "position"
        if all(it.color for it in include):
            return "color_attr"
        if not any(it.color for it in include):
            return "two_object"
    return "custom"


def parse_prompt(text: str) -> PromptSpec:
    """Read a GenEval-style sentence into a spec the shapes world can render.

    Raises PromptError naming the field for unknown shapes or colours, a count of 0, etc.
    """
    body = " ".join(text.lower().strip().rstrip(".").split())
    body = body[len(PREFIX):] if body.startswith(PREFIX) else body
    rel = _REL.match(body)
    if rel:
        subject, relation, reference = rel.groups()
        ref_item = _parse_np(reference, 0)
        sub_item = _parse_np(subject, 1)
        include = [ref_item, Item(sub_item.cls, sub_item.count, sub_item.color, (relation, 0))]
    else:
        parts = [p for chunk in body.split(", ") for p in chunk.split(" and ")]
        include = [_parse_np(p.strip(), i) for i, p in enumerate(parts)]
    tag = infer_tag(include)
    exclude = [Item(include[0].cls, include[0].count + 1)] if tag == "counting" else []
    spec = PromptSpec(tag, text.strip(), tuple(include), tuple(exclude))
    check_vocabulary(spec)
    return spec


def describe(objects: list[tuple[str, str, tuple]]) -> str:
    """Caption of (shape, colour, box) triples: groups of equal shape and colour, and the
    relation of the first object to the second when there are exactly two."""
    if not objects:
        return "a photo of nothing"
    if len(objects) == 2 and objects[0][:2] != objects[1][:2]:
        relation = dominant_relation(objects[0][2], objects[1][2])
        if relation:
            (s0, c0, _), (s1, c1, _) = objects
            return f"{PREFIX}{noun_phrase(s0, 1, c0)} {relation} {noun_phrase(s1, 1, c1)}"
    groups: dict[tuple[str, str], int] = {}
    for shape, color, _ in objects:
        groups[(shape, color)] = groups.get((shape, color), 0) + 1
    phrases = [noun_phrase(s, n, c) for (s, c), n in groups.items()]
    if len(phrases) > 2:
        return PREFIX + ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return PREFIX + " and ".join(phrases)


def caption_scene(scene: Scene) -> str:
    """The caption of a scene's objects (`describe`)."""
    return describe([(o.shape, o.color, o.box) for o in scene.objects])


def caption_detections(detections) -> str:
    """Re-caption an image from what the evaluator really found in it."""
    kept = [d for d in detections if d.accepted and d.cls is not None]
    return describe([(d.cls, d.color, d.box) for d in sorted(kept, key=lambda d: (d.box[0], d.box[1]))])


def check_prompts(specs: list[PromptSpec], check) -> list[str]:
    """Run `check(spec)` (raising PromptError, e.g. an evaluator's `check_prompt`) on every prompt;
    raise one PromptError naming every failure (`file:line` or position, and reason). Returns
    warnings for prompts whose text, read in GenEval's phrasing, means something else than their
    `include` says."""
    errors, warnings = [], []
    for i, spec in enumerate(specs):
        where = spec.source or f"prompt {i}"
        try:
            check(spec)
        except PromptError as err:
            errors.append(f"{where}: {err} in {spec.prompt!r}")
            continue
        try:
            said = parse_prompt(spec.prompt)
        except PromptError:
            continue  # free wording: nothing to compare
        if said.meaning != spec.meaning:
            warnings.append(f"{where}: the text {spec.prompt!r} reads as {said.meaning!r}, its include says {spec.meaning!r}")
    if errors:
        head = f"{len(errors)} of {len(specs)} prompts cannot be used: " if len(errors) > 1 else ""
        raise PromptError(head + "; ".join(errors))
    return warnings
