"""Palette-free object detection for shapes-world images.

1. Foreground: every pixel whose CIELAB distance from the background (the median of the
   image's border) is large, by hysteresis (a strong core, grown through weaker edges), so
   an object of any shade is found, not only the ten palette colours.
2. Objects: connected components of the foreground above a minimal area; a component that
   is no confident shape is split by colour when its parts are (two objects that touch).
3. Colour: the component's core pixels, named as the nearest of GenEval's ten colours by
   CIEDE2000, with a confidence (GenEval itself always names one of the ten).
4. Shape descriptors, invariant to rotation: the component's soft mask (alpha from its
   colour distance) upsampled 4x, then OpenCV's contour measures: circularity, solidity,
   fill of its minimum-area rectangle, enclosing circle and enclosing triangle, aspect,
   deep convexity defects and thickness (inscribed circle). `vhslab.shapes.shape_model` classifies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
from scipy import ndimage
from skimage import color as skcolor
from skimage.filters import apply_hysteresis_threshold

from vhslab.shapes.scenes import COLORS

COLOR_NAMES = tuple(COLORS)
FOREGROUND_LOW = 10.0  # CIE76 distance from the background: edge pixels down to this join an object
FOREGROUND_HIGH = 18.0  # ... whose core reaches this
SPLIT_DISTANCE = 30.0  # CIE76 between the two colour clusters of two touching objects
UPSAMPLE = 4
COLOR_SIGMA = 6.0  # CIEDE2000 scale of the colour confidence's softmax
FEATURES = ("circularity", "solidity", "rect_fill", "circle_fill", "triangle_fill", "aspect",
            "deep_defects", "max_defect_depth", "thickness")


@cache
def palette_lab() -> np.ndarray:
    """The world's colour palette (`scenes.COLORS`) in CIELAB, one row per colour."""
    rgb = np.array(list(COLORS.values()), np.float64)[None] / 255.0
    return skcolor.rgb2lab(rgb)[0]


@dataclass(frozen=True)
class Component:
    """One object candidate: its box (x0, y0, x1, y1) in pixels, area, soft mask over the box
    (padded by 2 pixels), mean core colour in CIELAB; `crop` keeps what `split_by_colour` needs
    (the box's slices, own-pixel mask, CIELAB pixels and distances from the background)."""

    box: tuple[float, float, float, float]
    area: int
    alpha: np.ndarray
    lab: np.ndarray
    crop: tuple = ()


def _component(sl: tuple, own: np.ndarray, lab: np.ndarray, dist: np.ndarray) -> Component:
    d = np.where(own, dist, 0.0)
    core_level = np.percentile(d[own], 75)
    core = own & (d >= 0.8 * core_level)
    alpha = np.clip(d / max(core_level, 1e-6), 0.0, 1.0)
    ys, xs = np.nonzero(alpha >= 0.5)  # the box of half coverage, as a renderer's box is drawn
    box = (float(sl[1].start + xs.min()), float(sl[0].start + ys.min()),
           float(sl[1].start + xs.max() + 1), float(sl[0].start + ys.max() + 1))
    return Component(box, int(own.sum()), np.pad(alpha, 2).astype(np.float32), lab[core].mean(axis=0),
                     (sl, own, lab, dist))


def components(image: np.ndarray, min_area: int) -> list[Component]:
    """Foreground components of an RGB uint8 image, largest first."""
    lab = skcolor.rgb2lab(image)
    border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    background = np.median(border, axis=0)
    dist = np.linalg.norm(lab - background, axis=-1)
    mask = apply_hysteresis_threshold(dist, FOREGROUND_LOW, FOREGROUND_HIGH)
    labels, _ = ndimage.label(mask, np.ones((3, 3), bool))
    out = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        own = labels[sl] == k
        if own.sum() >= min_area:
            out.append(_component(sl, own, lab[sl], dist[sl]))
    return sorted(out, key=lambda c: -c.area)


def split_by_colour(comp: Component, min_area: int) -> list[Component]:
    """The parts of a component made of two clearly different colours (two objects that touch),
    by 2-means on its strong pixels' CIELAB colour; [] if its colours do not split. Callers try
    it only on components that are no confident shape: shaded single objects split too."""
    from scipy.cluster.vq import kmeans2

    sl, own, lab, dist = comp.crop
    strong = own & (dist >= FOREGROUND_HIGH)
    if strong.sum() < 2 * min_area:
        return []
    centroids, assign = kmeans2(lab[strong], 2, minit="++", seed=0)
    if np.bincount(assign, minlength=2).min() < min_area or np.linalg.norm(centroids[0] - centroids[1]) < SPLIT_DISTANCE:
        return []
    side = np.linalg.norm(lab[..., None, :] - centroids, axis=-1).argmin(-1)
    parts = []
    for s in (0, 1):
        pieces, _ = ndimage.label(own & (side == s), np.ones((3, 3), bool))
        for k, sub in enumerate(ndimage.find_objects(pieces), start=1):
            mine = pieces[sub] == k
            if mine.sum() >= min_area:
                whole = (slice(sl[0].start + sub[0].start, sl[0].start + sub[0].stop),
                         slice(sl[1].start + sub[1].start, sl[1].start + sub[1].stop))
                parts.append(_component(whole, mine, lab[sub], dist[sub]))
    return parts


def name_color(lab: np.ndarray) -> tuple[str, float]:
    """The nearest of the ten colour names by CIEDE2000, and a softmax confidence."""
    pal = palette_lab()
    d = skcolor.deltaE_ciede2000(np.broadcast_to(lab, pal.shape), pal)
    logits = -0.5 * (d / COLOR_SIGMA) ** 2
    p = np.exp(logits - logits.max())
    p /= p.sum()
    best = int(np.argmin(d))
    return COLOR_NAMES[best], float(p[best])


def shape_features(alpha: np.ndarray) -> np.ndarray | None:
    """Rotation-invariant descriptors (see FEATURES) of a soft mask, or None if it has no outline."""
    big = cv2.resize(alpha, None, fx=UPSAMPLE, fy=UPSAMPLE, interpolation=cv2.INTER_LINEAR)
    binary = (big >= 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    c = max(contours, key=cv2.contourArea)
    area = cv2.contourArea(c)
    if area < 16 or len(c) < 5:
        return None
    perimeter = cv2.arcLength(c, True)
    hull_idx = cv2.convexHull(c, returnPoints=False)
    hull_area = cv2.contourArea(c[hull_idx[:, 0]])
    (_, _), (rw, rh), _ = cv2.minAreaRect(c)
    _, radius = cv2.minEnclosingCircle(c)
    tri_area, _ = cv2.minEnclosingTriangle(c.astype(np.float32))
    scale = np.sqrt(area)
    depths = np.zeros(0)
    if len(hull_idx) > 3:
        hull_idx = np.sort(hull_idx, axis=0)
        try:
            defects = cv2.convexityDefects(c, hull_idx)
        except cv2.error:  # self-intersecting outlines of ragged blobs
            defects = None
        if defects is not None:
            depths = defects.reshape(-1, 4)[:, 3] / 256.0 / scale
    thickness = 2 * cv2.distanceTransform(binary, cv2.DIST_L2, 5).max() / scale  # wisps are thin, shapes are not
    return np.array([
        4 * np.pi * area / perimeter**2,
        area / max(hull_area, 1e-6),
        area / max(rw * rh, 1e-6),
        area / (np.pi * radius**2),
        area / max(tri_area, 1e-6),
        min(rw, rh) / max(rw, rh, 1e-6),
        min(int((depths > 0.12).sum()), 8),
        float(depths.max()) if len(depths) else 0.0,
        thickness,
    ])
