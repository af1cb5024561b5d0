"""The shapes world: scenes of coloured shapes, rendered anti-aliased, sampled from prompts.

Coordinates are normalised: x grows right, y grows down, both in [0, 1]; an object's
`size` is the side of its bounding box as a fraction of the image side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from vhslab.shapes.geneval import Detection, judge
from vhslab.shapes.prompts import PromptError, PromptSpec

SHAPES = ("circle", "square", "triangle", "star")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars"}
COLORS = {
    "red": (220, 20, 30),
    "orange": (255, 140, 0),
    "yellow": (245, 225, 20),
    "green": (20, 160, 50),
    "blue": (30, 70, 230),
    "purple": (130, 40, 180),
    "pink": (255, 120, 200),
    "brown": (125, 70, 25),
    "black": (15, 15, 15),
    "white": (245, 245, 245),
}
BACKGROUND = (128, 128, 128)  # mid grey: far from all ten colours, black and white included
MAX_COUNT = 5  # counts 2-4 in prompts; 5 leaves room for "one too many" scenes
SIZE_RANGE = (0.2, 0.32)
EDGE_MARGIN = 0.03
GAP = 0.05  # minimal gap between two objects' boxes, so that objects never touch


def star_polygon(points: int = 5, inner: float = 0.45) -> np.ndarray:
    """A star of `points` tips (radius 1, inner radius `inner`), tip up, as (2 * points, 2) vertices."""
    angles = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def fit_unit_box(poly: np.ndarray) -> np.ndarray:
    """Scale and centre a polygon so that its bounding box is centred and its larger side is 1."""
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    return (poly - (lo + hi) / 2) / (hi - lo).max()


POLYGONS = {  # unit polygons, bounding box centred at 0 with larger side 1
    "square": np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]]),
    "triangle": np.array([[0.0, -0.5], [0.5, 0.5], [-0.5, 0.5]]),
    "star": fit_unit_box(star_polygon()),
}


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene: shape, colour, centre and size (normalised to the frame)."""

    shape: str
    color: str
    cx: float
    cy: float
    size: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Nominal bounding box (x0, y0, x1, y1), normalised."""
        if self.shape in POLYGONS:
            poly = POLYGONS[self.shape]
            (x0, y0), (x1, y1) = poly.min(axis=0), poly.max(axis=0)
        else:
            x0 = y0 = -0.5
            x1 = y1 = 0.5
        s = self.size
        return (self.cx + x0 * s, self.cy + y0 * s, self.cx + x1 * s, self.cy + y1 * s)


@dataclass(frozen=True)
class Scene:
    """The objects of one procedural image, checked for known shapes and colours."""

    objects: tuple[SceneObject, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        for i, obj in enumerate(self.objects):
            if obj.shape not in SHAPES:
                raise PromptError(f"objects[{i}].shape: unknown shape {obj.shape!r}; known: {SHAPES}")
            if obj.color not in COLORS:
                raise PromptError(f"objects[{i}].color: unknown colour {obj.color!r}; known: {tuple(COLORS)}")


def render(scene: Scene, resolution: int = 64, supersample: int = 4) -> np.ndarray:
    """Render a scene to an RGB uint8 array (resolution x resolution x 3), anti-aliased.

    Shapes are drawn at `supersample` times the resolution, then box-filtered down.
    """
    side = resolution * supersample
    canvas = Image.new("RGB", (side, side), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        fill = COLORS[obj.color]
        if obj.shape == "circle":
            x0, y0, x1, y1 = (v * side for v in obj.box)
            draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=fill)
        else:
            pts = (POLYGONS[obj.shape] * obj.size + (obj.cx, obj.cy)) * side
            draw.polygon([tuple(p) for p in pts], fill=fill)
    small = canvas.resize((resolution, resolution), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8)


def check_vocabulary(spec: PromptSpec) -> None:
    """Raise PromptError naming the field if the prompt uses words the world cannot render."""
    for kind, items in (("include", spec.include), ("exclude", spec.exclude)):
        for i, item in enumerate(items):
            if item.cls not in SHAPES:
                raise PromptError(f"{kind}[{i}].class: unknown shape {item.cls!r}; known: {SHAPES}")
            if item.color is not None and item.color not in COLORS:
                raise PromptError(f"{kind}[{i}].color: unknown colour {item.color!r}; known: {tuple(COLORS)}")
    total = sum(it.count for it in spec.include)
    if total > MAX_COUNT:
        raise PromptError(f"include: {total} objects in all, the world renders at most {MAX_COUNT}")


def separated(a: SceneObject, b: SceneObject) -> bool:
    """Whether the boxes of two objects lie at least GAP apart on one axis (the objects never touch)."""
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    return ax1 + GAP <= bx0 or bx1 + GAP <= ax0 or ay1 + GAP <= by0 or by1 + GAP <= ay0


def place(shapes_colors: list[tuple[str, str]], rng: np.random.Generator, tries: int = 200) -> list[SceneObject]:
    """Place objects at random, inside the frame and apart from each other."""
    n = len(shapes_colors)
    hi = min(SIZE_RANGE[1], 0.62 / math.sqrt(max(n, 1)))
    lo = min(SIZE_RANGE[0], hi)
    for _ in range(tries):
        objects: list[SceneObject] = []
        for shape, color in shapes_colors:
            size = float(rng.uniform(lo, hi))
            lo_c, hi_c = EDGE_MARGIN + size / 2, 1 - EDGE_MARGIN - size / 2
            for _ in range(50):
                obj = SceneObject(shape, color, float(rng.uniform(lo_c, hi_c)), float(rng.uniform(lo_c, hi_c)), size)
                if all(separated(obj, o) for o in objects):
                    objects.append(obj)
                    break
            else:
                break
        if len(objects) == n:
            return objects
    raise PromptError(f"cannot place {n} objects apart from each other in the frame")


def nominal_detections(scene: Scene) -> list:
    """The scene's objects as perfect detections (normalised boxes), for checking a scene."""
    return [Detection(o.shape, o.color, o.box, 1.0) for o in scene.objects]


def sample_scene(spec: PromptSpec, rng: np.random.Generator, tries: int = 200) -> Scene:
    """A random scene that satisfies `spec` by GenEval's rules, with a safety margin on relations.

    Items without a colour get random colours. Raises PromptError if the prompt uses words
    outside the world's vocabulary or cannot be satisfied.
    """
    check_vocabulary(spec)
    for i, ex in enumerate(spec.exclude):
        wanted = sum(it.count for it in spec.include if it.cls == ex.cls)
        if wanted >= ex.count:
            raise PromptError(
                f"exclude[{i}]: forbids {ex.count} {ex.cls} while include asks for {wanted}: unsatisfiable"
            )
    names = list(COLORS)
    for _ in range(tries):
        wanted_objects = [
            (item.cls, item.color or names[rng.integers(len(names))])
            for item in spec.include
            for _ in range(item.count)
        ]
        scene = Scene(tuple(place(wanted_objects, rng)))
        if judge(spec, nominal_detections(scene), shrink=0.15, threshold=0.62).correct:
            return scene
    raise PromptError(f"the world cannot render {spec.prompt!r}: no scene satisfied it in {tries} tries")


def sample_free_scene(rng: np.random.Generator, max_objects: int = 4) -> Scene:
    """A random scene of 1..max_objects objects (fewer objects are more likely)."""
    weights = np.array([0.35, 0.3, 0.2, 0.15, 0.1][:max_objects])
    n = int(rng.choice(np.arange(1, max_objects + 1), p=weights / weights.sum()))
    names = list(COLORS)
    wanted = [(SHAPES[rng.integers(len(SHAPES))], names[rng.integers(len(names))]) for _ in range(n)]
    return Scene(tuple(place(wanted, rng)))


def with_object(scene: Scene, index: int, **changes) -> Scene:
    """A copy of the scene with object `index` changed (e.g. color='red')."""
    objects = list(scene.objects)
    objects[index] = replace(objects[index], **changes)
    return Scene(tuple(objects))
