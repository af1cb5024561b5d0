"""GenEval prompt metadata: one dataclass per prompt, read and written in GenEval's format.

GenEval stores one JSON object per line (`.jsonl`); a JSON array of the same objects is
accepted too. Key order on write follows GenEval's file (tag, include, exclude, prompt),
so a read/write round trip of the real file is byte-identical.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vhslab.errors import InputError
from vhslab.schemas import RELATIONS, TAGS, ItemRow, PromptRow, check, read_text  # noqa: F401 (TAGS: imported from here)

# the real GenEval prompt set (djghosh13/geneval, MIT licence beside it), shipped as-is
GENEVAL_FILE = Path(__file__).resolve().parents[1] / "assets" / "geneval" / "geneval_evaluation_metadata.jsonl"
MIRROR = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


class PromptError(InputError):
    """A prompt or its metadata is malformed; the message names the field."""


@dataclass(frozen=True)
class Item:
    """One `include` (or `exclude`) entry: `count` objects of `cls`, optionally coloured and placed.

    `position` is `(relation, index)`: this item stands in `relation` to include item `index`.
    """

    cls: str
    count: int = 1
    color: str | None = None
    position: tuple[str, int] | None = None

    def to_json(self) -> dict:
        """The item as GenEval's JSON object."""
        out: dict = {"class": self.cls, "count": self.count}
        if self.color is not None:
            out["color"] = self.color
        if self.position is not None:
            out["position"] = [self.position[0], self.position[1]]
        return out

    @classmethod
    def from_json(cls, obj: dict, where: str = "item") -> Item:
        """An item from its JSON object, checked by the schema (`vhslab.schemas.ItemRow`)."""
        return cls.from_row(check(ItemRow, obj, where, PromptError))

    @classmethod
    def from_row(cls, row) -> Item:
        """An item from a checked schema row (`vhslab.schemas.ItemRow`)."""
        return cls(row.cls, row.count, row.color, row.position)


@dataclass(frozen=True)
class PromptSpec:
    """A GenEval prompt: its text, its tag and what a correct image contains."""

    tag: str
    prompt: str
    include: tuple[Item, ...]
    exclude: tuple[Item, ...] = field(default=())
    source: str = field(default="", compare=False, repr=False)  # "file.jsonl:12" when read from a file

    def __post_init__(self) -> None:
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        self.check()

    def check(self) -> None:
        """Raise PromptError naming the first malformed field (vocabulary-free checks)."""
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise PromptError("prompt: empty")
        if not self.include:
            raise PromptError(f"include: empty in {self.prompt!r}")
        for kind, items in (("include", self.include), ("exclude", self.exclude)):
            for i, item in enumerate(items):
                where = f"{kind}[{i}]"
                if item.count < 1:
                    raise PromptError(f"{where}.count: must be >= 1, got {item.count} in {self.prompt!r}")
                if item.position is None:
                    continue
                relation, index = item.position
                if relation not in RELATIONS:
                    raise PromptError(f"{where}.position: unknown relation {relation!r}; known: {RELATIONS}")
                if kind == "exclude" or not 0 <= index < len(self.include) or index == i:
                    raise PromptError(
                        f"{where}.position: refers to include item {index}, which does not exist"
                        f" (the prompt has {len(self.include)} include items) in {self.prompt!r}"
                    )

    @property
    def meaning(self) -> str:
        """What a correct image must show, independent of wording: include items in any order
        ("a red circle and a blue square" = "a blue square and a red circle") and relations up to
        mirroring ("a circle left of a square" = "a square right of a circle"). Readable, e.g.
        "1 circle + 1 square ; 1 circle left of 1 square" or "1 blue square + 1 red circle"."""
        names = [_item_key(it) for it in self.include]
        relations = []
        for i, item in enumerate(self.include):
            if item.position is not None:
                relation, j = item.position
                relations.append(min(f"{names[i]} {relation} {names[j]}", f"{names[j]} {MIRROR[relation]} {names[i]}"))
        parts = [" + ".join(sorted(names)), *sorted(relations)]
        if self.exclude:
            parts.append("not " + " + ".join(sorted(_item_key(it) for it in self.exclude)))
        return " ; ".join(parts)

    def to_json(self) -> dict:
        """The spec as GenEval's JSON object (key order of GenEval's file)."""
        out: dict = {"tag": self.tag, "include": [it.to_json() for it in self.include]}
        if self.exclude:
            out["exclude"] = [it.to_json() for it in self.exclude]
        out["prompt"] = self.prompt
        return out

    @classmethod
    def from_json(cls, obj: dict | str, where: str = "prompt") -> PromptSpec:
        """A spec from a GenEval row (an object or its JSON text), checked by the schema
        (`vhslab.schemas.PromptRow`: GenEval's tags, types, counts >= 1), then by `check`."""
        row = check(PromptRow, obj, where, PromptError)
        try:
            return cls(row.tag, row.prompt, tuple(map(Item.from_row, row.include)), tuple(map(Item.from_row, row.exclude)))
        except PromptError as err:
            raise PromptError(f"{where}: field {err}") from None


def _item_key(item: Item) -> str:
    return " ".join(w for w in (str(item.count), item.color, item.cls) if w)


def read_prompts(path: str | Path) -> list[PromptSpec]:
    """Read GenEval metadata: `.jsonl` (one object per line) or a JSON array. Every bad entry is
    reported at once, each as `file:line: reason` (`file[i]` in an array)."""
    path = Path(path)
    text = read_text(path, PromptError)
    if text.lstrip().startswith("["):
        rows = check(Any, text, str(path), PromptError, whole_file=True)
        located, errors = [(f"{path.name}[{i}]", r) for i, r in enumerate(rows)], []
    else:
        located = [(f"{path.name}:{n}", line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
        errors = []
    specs = []
    for where, row in located:
        try:
            spec = PromptSpec.from_json(row, where)
        except PromptError as err:
            errors.append(str(err))
            continue
        specs.append(PromptSpec(spec.tag, spec.prompt, spec.include, spec.exclude, source=where))
    if errors:
        errors.sort(key=_line_of)
        raise PromptError(_all_errors(path, errors))
    if not specs:
        raise PromptError(f"{path}: no prompts in the file")
    return specs


def _line_of(error: str) -> int:
    found = re.match(r"[^:\[]*[:\[](\d+)", error)
    return int(found.group(1)) if found else 0


def _all_errors(path: Path, errors: list[str]) -> str:
    head = f"{len(errors)} bad entr{'y' if len(errors) == 1 else 'ies'} in {path}: " if len(errors) > 1 else ""
    return head + "; ".join(errors)


def write_prompts(specs: list[PromptSpec], path: str | Path) -> None:
    """Write GenEval metadata; `.json` writes an array, anything else one object per line."""
    path = Path(path)
    rows = [s.to_json() for s in specs]
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
