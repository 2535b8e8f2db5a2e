r"""Random scenes of shapes in clutter: the images and boxes of the generated dataset.

:func:`render_scene` draws one image and its objects from a ``numpy.random.Generator``
and a :class:`SynthConfig`; :mod:`spikelib.data.synth` writes many of them as a VOC tree.

Scene statistics (default :class:`SynthConfig`, 128x128 RGB, seed 0; measured values are
in ``data/README.md`` and in the ``manifest.json`` written beside the images):

* 6 classes with distinct outlines: ellipse, rectangle, triangle, star, cross, ring,
  equally likely. Each shape varies (star and ring inner radius, cross arm width).
* Object box area 5 % to 60 % of the image (log-uniform; 5 % to 25 % when an image holds
  several objects), aspect ratio 1/2 to 2, any rotation, any position.
* Luminance contrast to the local background 0.2 to 0.6 (on [0, 1]), so the objects stay
  visible in grayscale; texture solid, stripes, smooth noise or a gradient, with an
  amplitude up to half the contrast; a random colour tint per object and background.
* Background: a level, a linear gradient, low-frequency blobs, 0 to 6 random lines and
  0 to 3 soft blobs (clutter that is not an object), pixel noise (std 0.04).
* 25 % of images hold 2 or 3 objects (boxes overlap by at most 10 % of the smaller one);
  15 % of objects are cut by the image border (``truncated=1``; 50 % to 90 % of their
  width or height inside).
* 15 % of images get one extra ``difficult=1`` object: tiny (0.6 % to 2 % of the area) or
  of very low contrast (0.04 to 0.08). Every image has at least one non-difficult object.

Boxes follow VOC: integer, 1-based, inclusive pixel indices; a box ``xmin..xmax`` covers
the continuous interval ``[xmin - 1, xmax]``. The box is the tight box of the pixels that
the object covers by at least half, after clipping to the image and occlusion by objects
drawn later.

Every random choice comes from the generator passed in; the global random state is never
touched.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw

SHAPE_CLASSES = ("ellipse", "rectangle", "triangle", "star", "cross", "ring")
SYNTH_NAME = "SHAPES"
_SUPERSAMPLE = 4
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides the generated dataset: sizes, seed and difficulty.

    Build it from a dict with :meth:`from_dict`, which rejects unknown keys. Areas are
    box areas as a fraction of the image area; contrasts are luminance differences on
    ``[0, 1]``; probabilities are per image, except ``p_truncated`` (per object).
    """

    name: str = SYNTH_NAME
    image_size: int = 128
    num_train: int = 3000
    num_val: int = 500
    num_test: int = 1000
    seed: int = 0
    classes: tuple[str, ...] = SHAPE_CLASSES
    min_area: float = 0.05
    max_area: float = 0.60
    multi_max_area: float = 0.25
    max_aspect: float = 2.0
    p_multi: float = 0.25
    max_objects: int = 3
    p_truncated: float = 0.15
    p_difficult: float = 0.15
    min_contrast: float = 0.2
    max_contrast: float = 0.6
    texture_amplitude: float = 0.5
    background_gradient: float = 0.3
    background_blobs: float = 0.15
    noise_std: float = 0.04
    max_clutter_lines: int = 6
    max_clutter_blobs: int = 3
    max_saturation: float = 0.5
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        unknown = sorted(set(self.classes) - set(SHAPE_CLASSES))
        if not self.classes or unknown or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be distinct names from {SHAPE_CLASSES}, got {self.classes}")
        if not self.name or not all(c.isalnum() or c in "_-" for c in self.name):
            raise ValueError(f"name must be a non-empty folder name of letters, digits, _ or -, got {self.name!r}")
        checks = {
            "image_size": 16 <= self.image_size <= 4096,
            "num_train": self.num_train >= 0,
            "num_val": self.num_val >= 0,
            "num_test": self.num_test >= 0,
            "min_area": 0 < self.min_area <= self.max_area <= 1,
            "multi_max_area": self.min_area <= self.multi_max_area <= self.max_area,
            "max_aspect": self.max_aspect >= 1,
            "max_objects": self.max_objects >= 1,
            "min_contrast": 0 < self.min_contrast <= self.max_contrast <= 0.9,
            "jpeg_quality": 1 <= self.jpeg_quality <= 100,
        }
        for key in (
            "p_multi",
            "p_truncated",
            "p_difficult",
            "texture_amplitude",
            "background_gradient",
            "background_blobs",
            "noise_std",
            "max_saturation",
        ):
            checks[key] = 0 <= getattr(self, key) <= 1
        checks["max_clutter_lines"] = self.max_clutter_lines >= 0
        checks["max_clutter_blobs"] = self.max_clutter_blobs >= 0
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"SynthConfig.{key}={getattr(self, key)!r} is out of range")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SynthConfig:
        """Build a config from a dict; unknown keys raise ``ValueError`` naming them."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ValueError(f"unknown SynthConfig keys {unknown}; allowed: {allowed}")
        return cls(**values)

    def num_images(self, split: str) -> int:
        """Number of images of ``split`` ("train", "val" or "test")."""
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]


class SynthObject(NamedTuple):
    """One annotated object: class name, VOC box (1-based inclusive ints) and flags."""

    name: str
    box: tuple[int, int, int, int]
    truncated: bool
    difficult: bool


class Scene(NamedTuple):
    """A rendered image ``uint8[H, W, 3]`` and its objects."""

    image: np.ndarray
    objects: list[SynthObject]


def _unit_outline(name: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Polygons ``[N, 2]`` of a shape around the origin, radius about 1; polygon 2 is a hole."""
    circle = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    ring = np.stack([np.cos(circle), np.sin(circle)], axis=1)
    if name == "ellipse":
        return [ring]
    if name == "rectangle":
        return [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)]
    if name == "triangle":
        angles = np.deg2rad([-90, 30, 150])
        return [np.stack([np.cos(angles), np.sin(angles)], axis=1)]
    if name == "star":
        angles = np.linspace(-np.pi / 2, 1.5 * np.pi, 10, endpoint=False)
        radii = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.55))
        return [np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)]
    if name == "cross":
        a = rng.uniform(0.25, 0.4)
        return [
            np.array(
                [
                    [-a, -1],
                    [a, -1],
                    [a, -a],
                    [1, -a],
                    [1, a],
                    [a, a],
                    [a, 1],
                    [-a, 1],
                    [-a, a],
                    [-1, a],
                    [-1, -a],
                    [-a, -a],
                ]
            )
        ]
    return [ring, ring * rng.uniform(0.45, 0.65)]  # "ring": an outer circle and a hole


def _coverage(polygons: list[np.ndarray], size: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Anti-aliased coverage ``float32[S, S]`` in [0, 1] of polygons in pixel coordinates,
    and the (rows, cols) window outside which it is zero."""
    k = _SUPERSAMPLE
    lo = np.floor(np.clip(polygons[0].min(0), 0, size)).astype(int)
    hi = np.maximum(np.ceil(np.clip(polygons[0].max(0), 0, size)).astype(int), lo + 1)
    window = (slice(int(lo[1]), int(hi[1])), slice(int(lo[0]), int(hi[0])))
    mask = Image.new("L", (int(hi[0] - lo[0]) * k, int(hi[1] - lo[1]) * k), 0)
    draw = ImageDraw.Draw(mask)
    for i, poly in enumerate(polygons):
        draw.polygon([tuple(p) for p in ((poly - lo) * k - 0.5).tolist()], fill=0 if i else 255)
    out = np.zeros((size, size), dtype=np.float32)
    out[window] = np.asarray(mask.reduce(k), dtype=np.float32) / 255
    return out, window


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-peak smooth noise ``float32[H, W]`` from a ``cells x cells`` grid."""
    grid = Image.fromarray(rng.standard_normal((cells, cells)).astype(np.float32))
    field = np.asarray(grid.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    field = field - field.mean()
    return field / max(float(np.abs(field).max()), 1e-6)


def _tint(rng: np.random.Generator, max_saturation: float) -> np.ndarray:
    """A random RGB multiplier with luminance 1, so colour never changes the gray level."""
    rgb = 1 - rng.uniform(0, max_saturation) * rng.dirichlet(np.ones(3))
    return rgb / float(rgb @ _LUMA)


def _background(rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    size = cfg.image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size) - np.float32(0.5)
    angle = rng.uniform(0, 2 * np.pi)
    level = rng.uniform(0.2, 0.8) + rng.uniform(0, cfg.background_gradient) * (xx * np.cos(angle) + yy * np.sin(angle))
    level = level + rng.uniform(0, cfg.background_blobs) * _smooth_noise(rng, size, size, 4)
    lines = Image.new("L", (size * 2, size * 2), 0)
    draw = ImageDraw.Draw(lines)
    for _ in range(rng.integers(0, cfg.max_clutter_lines + 1)):
        (x0, y0), (x1, y1) = rng.uniform(-0.1, 1.1, size=(2, 2)) * size * 2
        draw.line([(x0, y0), (x1, y1)], fill=int(rng.integers(40, 256)), width=int(rng.integers(2, 5)))
    line_cov = np.asarray(lines.reduce(2), dtype=np.float32) / 255
    level = level + line_cov * rng.choice([-1, 1]) * rng.uniform(0.1, 0.35)
    for _ in range(rng.integers(0, cfg.max_clutter_blobs + 1)):
        cx, cy = rng.uniform(-0.5, 0.5, size=2)
        sx, sy = rng.uniform(0.02, 0.1, size=2)
        blob = np.exp(-0.5 * (((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
        level = level + rng.choice([-1, 1]) * rng.uniform(0.1, 0.3) * blob
    return np.clip(level, 0.02, 0.98).astype(np.float32)


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A texture ``float32[H, W]`` in [-1, 1]: solid, stripes, smooth noise or gradient."""
    kind = rng.integers(0, 4)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phi = rng.uniform(0, np.pi)
    along = xx * np.float32(np.cos(phi)) + yy * np.float32(np.sin(phi))
    if kind == 0:
        return np.zeros((height, width), dtype=np.float32)
    if kind == 1:
        return np.sign(np.sin(along * np.float32(2 * np.pi / rng.uniform(6, 16)) + np.float32(rng.uniform(0, 7))))
    if kind == 2:
        return _smooth_noise(rng, height, width, int(rng.integers(4, 12)))
    return (along - along.mean()) / max(float(np.ptp(along)) / 2, 1e-6)


def _place(rng, cfg, name, area, truncate, taken) -> tuple[list[np.ndarray], float] | None:
    """Pose one shape: its polygons in pixel coordinates and its full area, or None."""
    size = cfg.image_size
    polygons = _unit_outline(name, rng)
    aspect = math.exp(rng.uniform(-1, 1) * math.log(cfg.max_aspect))
    theta = rng.uniform(0, 2 * np.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    polygons = [(p * [math.sqrt(aspect), 1 / math.sqrt(aspect)]) @ rot.T for p in polygons]
    lo, hi = polygons[0].min(0), polygons[0].max(0)
    scale = min(math.sqrt(area * size * size / float(np.prod(hi - lo))), size / float(np.max(hi - lo)))
    lo, hi = lo * scale, hi * scale
    for _ in range(20):
        centre = rng.uniform(-lo, np.maximum(size - hi, -lo))  # (a shape as wide as the image: one place)
        if truncate:  # push the shape across one border, keeping 50 % to 90 % of its extent
            axis, side = rng.integers(0, 2), rng.integers(0, 2)
            cut = rng.uniform(0.1, 0.5) * (hi[axis] - lo[axis])
            centre[axis] = -lo[axis] - cut if side == 0 else size - hi[axis] + cut
        box = np.concatenate([centre + lo, centre + hi])
        if all(_overlap(box, other) <= 0.1 for other in taken):
            taken.append(box)
            placed = [p * scale + centre for p in polygons]
            return placed, _area(placed[0]) - sum(_area(p) for p in placed[1:])
    return None


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection of two xyxy boxes over the smaller box's area."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / max(smaller, 1e-9)


def render_scene(rng: np.random.Generator, cfg: SynthConfig = SynthConfig()) -> Scene:
    """Draw one random scene.

    Args:
        rng: the generator every random choice is drawn from.
        cfg: sizes and difficulty.

    Returns:
        A :class:`Scene`: ``image`` ``uint8[S, S, 3]`` (S = ``cfg.image_size``) and the
        annotated objects with VOC boxes, in drawing order (later objects on top).
    """
    size = cfg.image_size
    n_main = int(rng.integers(2, cfg.max_objects + 1)) if rng.random() < cfg.p_multi else 1
    max_area = cfg.multi_max_area if n_main > 1 else cfg.max_area
    # (class, area, truncate, contrast, difficult) for each object to draw
    plans = [
        (
            rng.choice(cfg.classes),
            math.exp(rng.uniform(math.log(cfg.min_area), math.log(max_area))),
            rng.random() < cfg.p_truncated,
            rng.uniform(cfg.min_contrast, cfg.max_contrast),
            False,
        )
        for _ in range(n_main)
    ]
    if rng.random() < cfg.p_difficult:
        tiny = rng.random() < 0.5
        area = math.exp(rng.uniform(math.log(0.006), math.log(0.02))) if tiny else rng.uniform(0.05, 0.2)
        contrast = rng.uniform(cfg.min_contrast, cfg.max_contrast) if tiny else rng.uniform(0.04, 0.08)
        plans.append((rng.choice(cfg.classes), min(area, cfg.max_area), False, contrast, True))
    level = _background(rng, cfg)
    rgb = level[..., None] * _tint(rng, cfg.max_saturation).astype(np.float32)
    taken: list[np.ndarray] = []
    drawn = []
    for name, area, truncate, contrast, difficult in plans:
        placed = _place(rng, cfg, str(name), area, truncate, taken)
        if placed is None:
            continue  # no room left in this image: fewer objects, never overlapping boxes
        polygons, full_area = placed
        cov, window = _coverage(polygons, size)
        inside = level[cov > 0.5]
        mean = float(inside.mean()) if inside.size else 0.5
        sign = rng.choice([-1, 1]) if 0.05 <= mean - contrast and mean + contrast <= 0.95 else (1 if mean < 0.5 else -1)
        height, width = cov[window].shape
        value = mean + sign * contrast + cfg.texture_amplitude * contrast * _texture(rng, height, width)
        alpha = cov[window][..., None]
        colour = np.clip(value, 0, 1)[..., None] * _tint(rng, cfg.max_saturation).astype(np.float32)
        rgb[window] = rgb[window] * (1 - alpha) + colour * alpha
        drawn.append((str(name), cov, float(cov.sum()) / max(full_area, 1e-9) < 0.95, difficult))
    objects = []
    for i, (name, cov, truncated, difficult) in enumerate(drawn):
        visible = cov.copy()
        for _, later, _, _ in drawn[i + 1 :]:
            visible *= 1 - later
        rows, cols = np.nonzero(visible.max(1) >= 0.5)[0], np.nonzero(visible.max(0) >= 0.5)[0]
        if rows.size and cols.size:
            box = (int(cols[0]) + 1, int(rows[0]) + 1, int(cols[-1]) + 1, int(rows[-1]) + 1)
            objects.append(SynthObject(name, box, bool(truncated), bool(difficult)))
    rgb += np.float32(cfg.noise_std) * rng.standard_normal((size, size, 1), dtype=np.float32)
    return Scene((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), objects)
