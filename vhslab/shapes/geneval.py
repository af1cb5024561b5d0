"""GenEval's scoring rules, applied to detections from any detector.

Mirrors djghosh13/geneval's `evaluate` and `relative_position`: detections of a class are
ranked by confidence and the top `count` are checked for colour and position.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vhslab.shapes.prompts import PromptSpec

POSITION_SHRINK = 0.1  # each offset component shrinks by 0.1 * (size A + size B)
POSITION_THRESHOLD = 0.5  # normalised component beyond which a relation holds


@dataclass(frozen=True)
class Detection:
    """An object found in an image. `box` is (x0, y0, x1, y1) in pixels, x1/y1 exclusive."""

    cls: str | None
    color: str | None
    box: tuple[float, float, float, float]
    confidence: float
    area: int = 0
    accepted: bool = True
    color_confidence: float = 1.0

    @property
    def center(self) -> tuple[float, float]:
        """The centre (x, y) of the box, normalised."""
        x0, y0, x1, y1 = self.box
        return ((x0 + x1) / 2, (y0 + y1) / 2)


@dataclass(frozen=True)
class ItemFinding:
    """What the image holds for one include item."""

    found_count: int
    found_color: str | None
    found_relation: str | None
    correct: bool


@dataclass
class Verdict:
    """GenEval's judgement of one image: correct or not, why not, the detections and what each item found."""

    correct: bool
    reasons: list[str] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    items: list[ItemFinding] = field(default_factory=list)


def relation_components(
    box_a, box_b, shrink: float = POSITION_SHRINK
) -> tuple[float, float] | None:
    """GenEval's normalised offset of A relative to B, or None if the shrunk offset vanishes."""
    a, b = np.asarray(box_a, float), np.asarray(box_b, float)
    center_a, center_b = (a[:2] + a[2:]) / 2, (b[:2] + b[2:]) / 2
    dim_a, dim_b = np.abs(a[2:] - a[:2]), np.abs(b[2:] - b[:2])
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - shrink * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return None
    dx, dy = revised / np.linalg.norm(offset)
    return float(dx), float(dy)


def relative_position(
    box_a, box_b, shrink: float = POSITION_SHRINK, threshold: float = POSITION_THRESHOLD
) -> set[str]:
    """The set of relations ('left of', 'right of', 'above', 'below') of box A to box B."""
    comps = relation_components(box_a, box_b, shrink)
    if comps is None:
        return set()
    dx, dy = comps
    rels = set()
    if dx < -threshold:
        rels.add("left of")
    if dx > threshold:
        rels.add("right of")
    if dy < -threshold:
        rels.add("above")
    if dy > threshold:
        rels.add("below")
    return rels


def dominant_relation(box_a, box_b) -> str | None:
    """The single strongest relation of A to B (None if there is none)."""
    comps = relation_components(box_a, box_b)
    if comps is None:
        return None
    dx, dy = comps
    if max(abs(dx), abs(dy)) <= POSITION_THRESHOLD:
        return None
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def group_by_class(detections: list[Detection]) -> dict[str, list[Detection]]:
    """Accepted detections per class, most confident first."""
    groups: dict[str, list[Detection]] = {}
    for det in sorted(detections, key=lambda d: -d.confidence):
        if det.accepted and det.cls is not None:
            groups.setdefault(det.cls, []).append(det)
    return groups


def judge(
    spec: PromptSpec,
    detections: list[Detection],
    shrink: float = POSITION_SHRINK,
    threshold: float = POSITION_THRESHOLD,
) -> Verdict:
    """Apply GenEval's rules to detections. `shrink`/`threshold` are GenEval's unless a
    caller (the scene sampler) asks for a safety margin."""
    objects = group_by_class(detections)
    correct = True
    reasons: list[str] = []
    matched_groups: list[list[Detection] | None] = []
    findings: list[ItemFinding] = []
    for req in spec.include:
        all_found = objects.get(req.cls, [])
        found = all_found[: req.count]
        matched = True
        relation = None
        if len(found) < req.count:
            matched = False
            reasons.append(f"expected {req.cls}>={req.count}, found {len(found)}")
        else:
            if req.color is not None:
                colors = [d.color for d in found]
                if colors.count(req.color) < req.count:
                    matched = False
                    reasons.append(f"expected {req.color} {req.cls}>={req.count}, found colours {colors}")
            if req.position is not None and matched:
                expected, target = req.position
                targets = matched_groups[target]
                if targets is None:
                    matched = False
                    reasons.append(f"no target for {req.cls} to be {expected}")
                else:
                    for obj in found:
                        for tgt in targets:
                            rels = relative_position(obj.box, tgt.box, shrink, threshold)
                            if expected not in rels:
                                matched = False
                                reasons.append(f"expected {req.cls} {expected} target, found {sorted(rels)}")
                                break
                        if not matched:
                            break
                    relation = expected if matched else dominant_relation(found[0].box, targets[0].box)
        if req.position is not None and relation is None and found:
            target = req.position[1]
            ref = objects.get(spec.include[target].cls, []) if 0 <= target < len(spec.include) else []
            if ref:
                relation = dominant_relation(found[0].box, ref[0].box)
        correct &= matched
        matched_groups.append(found if matched else None)
        findings.append(
            ItemFinding(len(all_found), all_found[0].color if all_found else None, relation, matched)
        )
    for req in spec.exclude:
        n = len(objects.get(req.cls, []))
        if n >= req.count:
            correct = False
            reasons.append(f"expected {req.cls}<{req.count}, found {n}")
    return Verdict(correct, reasons, list(detections), findings)
