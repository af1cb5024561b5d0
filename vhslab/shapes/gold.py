"""The gold set: images made by the shipped world, judged by eye, that validate the evaluator.

Each record names a prompt and a seed (the image is regenerated from them by the world's
one-step pipeline at its default guidance), the person's judgement by GenEval's rules, a
short note and an ambiguity flag. `split` is "dev" (used while building the evaluator) or
"holdout" (judged at the same time, looked at by the evaluator only once it was frozen).
The judged images themselves lie beside the records (`world_gold_images.png`, lossless): a
regeneration on another CPU may differ from them in the last bit of a few pixels (AVX-512 and
AVX2 kernels round differently), so the evaluator is scored on the images the people saw, and
the regeneration is checked against them.
Protocol: docs/evaluator.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel

from vhslab.errors import InputError
from vhslab.schemas import Int0, Tag, check, expect, from_dataclass, read_text, to_dataclass
from vhslab.shapes.prompts import TAGS, PromptSpec

GOLD_FILE = Path(__file__).resolve().parents[1] / "assets" / "gold" / "world_gold.jsonl"
GOLD_SEED_BASE = 7_000_000  # far from every seed that scoring, extraction or training draws


@dataclass(frozen=True)
class GoldRecord:
    """One gold image: its prompt and seed, the person's verdict by GenEval's rules, a note and an ambiguity flag."""

    index: int
    split: str
    tag: str
    prompt: str
    seed: int
    correct: bool | None = None  # the person's verdict
    ambiguous: bool = False
    note: str = ""
    image_sha1: str = ""  # of the image as first generated, to tell whether a regeneration matches


class GoldError(InputError):
    """A gold file or its images are not what the records say."""


@functools.cache
def gold_schema() -> type[BaseModel]:
    """The schema of one gold record (a JSONL line of a gold file)."""
    return from_dataclass(GoldRecord, {"index": Int0, "seed": Int0, "tag": Tag,
                                       "split": expect(Literal["dev", "holdout"], "'dev' or 'holdout'")})


def image_sha1(image: np.ndarray) -> str:
    """The first 12 hex digits of the SHA-1 of an image's bytes."""
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()[:12]


def draw_gold_samples(suite: list[PromptSpec], per_tag: int, holdout_per_tag: int, seed: int = 0) -> list[GoldRecord]:
    """per_tag + holdout_per_tag samples of every tag: distinct prompts drawn uniformly (with
    replacement once a tag's distinct prompts run out), one fresh seed each."""
    rng = np.random.default_rng(seed)
    records: list[GoldRecord] = []
    for tag in TAGS:
        prompts = sorted({s.prompt for s in suite if s.tag == tag})
        n = per_tag + holdout_per_tag
        order = np.concatenate([rng.permutation(len(prompts)) for _ in range(-(-n // len(prompts)))])[:n]
        for k, p in enumerate(order):
            i = len(records)
            split = "dev" if k < per_tag else "holdout"
            records.append(GoldRecord(i, split, tag, prompts[int(p)], GOLD_SEED_BASE + i))
    return records


def images_file(gold_path: str | Path) -> Path:
    """Where the judged images of a gold file lie: `<stem>_images.png` beside it."""
    gold_path = Path(gold_path)
    return gold_path.with_name(gold_path.stem + "_images.png")


GOLD_IMAGES = images_file(GOLD_FILE)


def write_gold_images(images: np.ndarray, records: list[GoldRecord], path: str | Path = GOLD_IMAGES) -> Path:
    """The judged images (N, S, S, 3) uint8, stacked top to bottom in record order, as one lossless PNG;
    refuses images that are not the records' (hash)."""
    from PIL import Image

    _check_hashes(images, records, "images to write")
    Image.fromarray(np.ascontiguousarray(images).reshape(-1, images.shape[2], 3)).save(path, optimize=True)
    return Path(path)


def read_gold_images(records: list[GoldRecord], path: str | Path = GOLD_IMAGES) -> np.ndarray | None:
    """The images the people judged, (N, S, S, 3) uint8 in record order; None when there is no file.
    Each must have its record's hash: a clear error names the first that does not."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        return None
    strip = np.asarray(Image.open(path).convert("RGB"))
    side = strip.shape[1]
    if strip.shape[0] != side * len(records):
        raise GoldError(f"{path}: {strip.shape[0] // side} images of {side}x{side} for {len(records)} gold records")
    images = strip.reshape(len(records), side, side, 3)
    _check_hashes(images, records, str(path))
    return images


def _check_hashes(images: np.ndarray, records: list[GoldRecord], what: str) -> None:
    for r, im in zip(records, images, strict=True):
        if r.image_sha1 and image_sha1(im) != r.image_sha1:
            raise GoldError(f"{what}: the image of gold record {r.index} does not have the record's hash {r.image_sha1}")


def read_gold(path: str | Path = GOLD_FILE) -> list[GoldRecord]:
    """The records of a gold file, each checked by its schema (`gold_schema`)."""
    path = Path(path)
    return [to_dataclass(GoldRecord, check(gold_schema(), line, f"{path}:{n}: not a gold record", GoldError))
            for n, line in enumerate(read_text(path, GoldError).splitlines(), start=1) if line.strip()]


def write_gold(records: list[GoldRecord], path: str | Path = GOLD_FILE) -> None:
    """Write gold records, one JSON object per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(r)) + "\n" for r in records), encoding="utf-8")


def contact_sheet(images: np.ndarray, labels: list[str], cols: int = 4, upscale: int = 4):
    """A PIL image: the images upscaled (nearest), each under its label, `cols` per row."""
    from PIL import Image, ImageDraw

    h, w = images.shape[1] * upscale, images.shape[2] * upscale
    pad = 18
    rows = -(-len(images) // cols)
    sheet = Image.new("RGB", (cols * (w + 6), rows * (h + pad + 6)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, (img, label) in enumerate(zip(images, labels, strict=True)):
        x, y = (k % cols) * (w + 6), (k // cols) * (h + pad + 6)
        draw.text((x + 2, y + 2), label, fill=(0, 0, 0))
        sheet.paste(Image.fromarray(img).resize((w, h), Image.Resampling.NEAREST), (x, y + pad))
    return sheet


def disagreement_sheet(disagreements: list, records: list[GoldRecord], images: np.ndarray):
    """A contact sheet of the disagreements (None if there are none): index, gold verdict and
    the evaluator's; `images` are in `records` order, as `gold_report` returns them."""
    if not disagreements:
        return None
    position = {r.index: k for k, r in enumerate(records)}
    labels = [f"#{r.index} gold {'yes' if r.correct else 'no'} / ev {'yes' if v.correct else 'no'}"
              for r, v in disagreements]
    return contact_sheet(images[[position[r.index] for r, _ in disagreements]], labels, cols=6, upscale=3)
