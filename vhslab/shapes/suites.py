"""Seeded, versioned prompt suites of the shapes world in GenEval's schema and phrasing.

Every tag's finite space of distinct prompts is split once, by a seeded shuffle of its meanings
(`PromptSpec.meaning`), into an evaluation pool and a training pool, so `train` never holds a
`geneval-shapes` prompt nor one that means the same.
`geneval-shapes` follows GenEval's tag counts, cycling through its pool where the pool is
smaller (4 shapes allow only 4 single-object prompts); single-object prompts all go to
evaluation. Changing anything here changes SUITE_VERSION.
"""

from __future__ import annotations

import itertools
from functools import cache
from pathlib import Path

import numpy as np

from vhslab.errors import InputError
from vhslab.shapes.phrasing import prompt_text
from vhslab.shapes.prompts import RELATIONS, TAGS, Item, PromptError, PromptSpec, read_prompts
from vhslab.shapes.scenes import COLORS, SHAPES

SUITE_VERSION = 2
SEED = 20260
GENEVAL_COUNTS = {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94, "position": 100, "color_attr": 100}
TRAIN_CAP = 150  # distinct prompts per tag at most in `train`
SUITES = ("geneval-shapes", "train")


def _spec(tag: str, include: list[Item]) -> PromptSpec:
    exclude = [Item(include[0].cls, include[0].count + 1)] if tag == "counting" else []
    stub = PromptSpec(tag, "-", tuple(include), tuple(exclude))
    return PromptSpec(tag, prompt_text(stub), stub.include, stub.exclude)


def prompt_space(tag: str) -> list[PromptSpec]:
    """Every distinct prompt of a tag over the world's vocabulary, in a fixed order."""
    pairs = list(itertools.permutations(SHAPES, 2))
    if tag == "single_object":
        return [_spec(tag, [Item(s)]) for s in SHAPES]
    if tag == "two_object":
        return [_spec(tag, [Item(a), Item(b)]) for a, b in pairs]
    if tag == "counting":
        return [_spec(tag, [Item(s, n)]) for s in SHAPES for n in (2, 3, 4)]
    if tag == "colors":
        return [_spec(tag, [Item(s, 1, c)]) for s in SHAPES for c in COLORS]
    if tag == "position":
        return [_spec(tag, [Item(b), Item(a, 1, None, (r, 0))]) for a, b in pairs for r in RELATIONS]
    if tag == "color_attr":
        colour_pairs = list(itertools.permutations(COLORS, 2))
        return [_spec(tag, [Item(a, 1, ca), Item(b, 1, cb)]) for a, b in pairs for ca, cb in colour_pairs]
    raise InputError(f"unknown tag {tag!r}; known: {TAGS}")


def _split(tag: str) -> tuple[list[PromptSpec], list[PromptSpec]]:
    """(evaluation pool, training pool) of a tag, split by meaning (`PromptSpec.meaning`): the
    prompts that mean the same ("a circle left of a square" / "a square right of a circle") fall
    on the same side."""
    space = prompt_space(tag)
    if tag == "single_object":
        return space, []
    groups: dict[str, list[PromptSpec]] = {}
    for spec in space:
        groups.setdefault(spec.meaning, []).append(spec)
    keys = sorted(groups)
    rng = np.random.default_rng([SEED, SUITE_VERSION, TAGS.index(tag)])
    n_eval = min(len(space) // 2, GENEVAL_COUNTS[tag])
    ev: list[PromptSpec] = []
    for i in rng.permutation(len(keys)):
        if len(ev) >= n_eval:
            break
        ev += groups[keys[i]]
    chosen = {s.meaning for s in ev}
    return ev, [s for s in space if s.meaning not in chosen]


@cache
def _build(name: str) -> tuple[PromptSpec, ...]:
    out: list[PromptSpec] = []
    for tag in TAGS:
        ev, tr = _split(tag)
        if name == "geneval-shapes":
            out += [ev[i % len(ev)] for i in range(GENEVAL_COUNTS[tag])]
        else:
            out += tr[:TRAIN_CAP]
    return tuple(out)


def build_suite(name: str) -> list[PromptSpec]:
    """The named suite (`SUITES`) as a list of prompts."""
    if name not in SUITES:
        raise InputError(f"unknown suite {name!r}; known: {SUITES}")
    return list(_build(name))


def load_suite(name: str) -> list[PromptSpec]:
    """A named prompt suite of the shapes world (`geneval-shapes`, `train`) or a metadata file."""
    if name in SUITES:
        return build_suite(name)
    if Path(name).exists():
        return read_prompts(name)
    raise PromptError(f"unknown prompt suite {name!r}: use one of {sorted(SUITES)} or a path to a .jsonl/.json file")
