"""`"shapes"`: a synthetic semantic-segmentation dataset, procedurally drawn (no download).

This is NOT a real benchmark. It exists so that segmentation code (per-pixel labels, an
ignore label, padded evaluation, sharded `[B, H, W]` label maps) can be trained and tested
end to end on a laptop, with data that ships as code.

What an example is:
  input: float32 `[64, 64, 3]`, an RGB image standardised per channel with the fixed
    constants `MEAN` / `STD` (computed once from the train pool and written below), so the
    train pool has roughly zero mean and unit variance per channel.
  label: int32 `[64, 64]`: the class of the visible object at each pixel (`CLASSES`: 0 is
    the background, then five shapes), or `IGNORE_LABEL` (255, as Pascal VOC marks object
    boundaries) on the thin ring of pixels next to a boundary between two labels: a pixel
    whose 4-neighbour has another class is ignored, so the ring is 2 pixels wide (one on
    each side of the boundary), about 8% of all pixels.

How an image is drawn (`draw_image`; coordinates in pixels, y down):
  background: a low-frequency colour gradient (two random colours along a random
    direction, plus a faint random sinusoidal brightness swell), with uniform pixel noise
    added to the whole image at the end (a random noise level per image).
  objects: 1 to 4 of them, each of a uniformly random shape class, radius (8 to 18 px),
    centre (at least 4 px inside the image; the object may hang off the edge) and rotation, painted in drawing order so later objects occlude
    earlier ones; the label map shows the visible class. The class is decided by SHAPE
    only: every object's colours and texture (flat, stripes of random angle / period,
    a checkerboard of random angle / cell size, or per-pixel colour noise) are drawn from
    the same distribution whatever its class. Shapes have roughly equal areas at the same
    radius; a ring's hole shows what lies beneath it.

Splits: a train pool of `NUM_TRAIN_POOL` = 2000 images and a separate test set of
`NUM_TEST` = 500, each image drawn from its own seed `(GENERATION_SEED, split id, index)`;
"train" / "validation" are carved from the pool by the embedded datasets' split seed
(see `spg_jax.data.embedded`). Arrays are stored compactly (uint8 images and label maps,
about 41 MB for both splits) and converted per example by `to_example`. Generating all
2500 images takes about 1-2 s on one CPU core; the result is cached per process and is the
same in every process (numpy's and Python's global RNGs are never used).
"""
from __future__ import annotations

import functools

import numpy as np

IMAGE_SIZE = 64
CLASSES = ("background", "disc", "square", "triangle", "ring", "cross")
NUM_CLASSES = len(CLASSES)
IGNORE_LABEL = 255
NUM_TRAIN_POOL = 2000
NUM_TEST = 500
GENERATION_SEED = 20240611
MAX_OBJECTS = 4
RADIUS_RANGE = (8.0, 18.0)  # >= 8 keeps ring walls and cross arms wider than the ignore ring
TEXTURES = ("flat", "stripes", "checker", "noise")
_TRAIN_POOL_ID, _TEST_ID = 0, 1  # the split id in every image's seed

# Per-channel mean / std of the train pool's pixels / 255 (computed once with
# `_pool_statistics()`; a test checks they still standardise the pool).
MEAN = (0.5038, 0.4984, 0.4999)
STD = (0.2528, 0.2526, 0.2522)


def _grid() -> tuple[np.ndarray, np.ndarray]:
  """Pixel-centre coordinates y, x: float32 `[S * S]` each, row-major (y down)."""
  r = np.arange(IMAGE_SIZE, dtype=np.float32) + np.float32(0.5)
  return np.repeat(r, IMAGE_SIZE), np.tile(r, IMAGE_SIZE)


def _shape_mask(cls: int, u: np.ndarray, v: np.ndarray, radius: float,
                rng: np.random.Generator) -> np.ndarray:
  """bool like `u`: the points (u, v) of the shape's own rotated, centred frame inside it."""
  r = np.float32(radius)
  if cls == 1:  # disc
    return u * u + v * v <= r * r
  if cls == 2:  # square of the disc's area: half side = radius * sqrt(pi) / 2
    half = r * np.float32(0.886)
    return np.maximum(np.abs(u), np.abs(v)) <= half
  if cls == 3:  # equilateral triangle of the disc's area (inradius = 0.78 * radius)
    inradius = r * np.float32(0.78)
    c, s = np.float32(-0.5), np.float32(np.sqrt(3) / 2)  # the other two edge normals
    return (u <= inradius) & (c * u + s * v <= inradius) & (c * u - s * v <= inradius)
  if cls == 4:  # ring: an annulus with a random hole, outer radius 1.1 * radius
    outer = r * np.float32(1.1)
    inner = outer * np.float32(rng.uniform(0.45, 0.6))
    d2 = u * u + v * v
    return (d2 <= outer * outer) & (d2 >= inner * inner)
  if cls == 5:  # plus-shaped cross with random arm width, arms 1.15 * radius long
    arm = r * np.float32(1.15)
    half_width = arm * np.float32(rng.uniform(0.28, 0.38))
    au, av = np.abs(u), np.abs(v)
    return ((au <= half_width) & (av <= arm)) | ((av <= half_width) & (au <= arm))
  raise ValueError(f"cls={cls!r}: must be in [1, {NUM_CLASSES})")


def _colour(rng: np.random.Generator) -> np.ndarray:
  """float32 `[3, 1]`: a uniformly random RGB colour in [0, 1] (channel-first, to broadcast)."""
  return rng.random((3, 1), dtype=np.float32)


def _texture(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """One object's paint at pixel centres `y`, `x` (float32 `[K]`, the pixels it covers):
  float32 `[3, 1]` (flat) or `[3, K]`, in [0, 1]; the same distribution for every class."""
  a, b = _colour(rng), _colour(rng)
  kind = TEXTURES[int(rng.integers(len(TEXTURES)))]
  if kind == "flat":
    return a
  if kind == "noise":
    t = rng.random(y.shape, dtype=np.float32)
  else:
    phi = rng.uniform(0, np.pi)
    c, s = np.float32(np.cos(phi)), np.float32(np.sin(phi))
    period = np.float32(rng.uniform(3.0, 10.0))
    p = (x * c + y * s) / period
    if kind == "stripes":
      t = np.floor(p + np.float32(rng.random())) % 2
    else:  # checker
      q = (y * c - x * s) / period
      t = (np.floor(p) + np.floor(q)) % 2
  return a + (b - a) * t


def _background(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """float32 `[3, S * S]`: a colour gradient along a random direction plus a faint
  brightness swell (one slow sinusoid), both low-frequency."""
  a, b = _colour(rng), _colour(rng)
  phi = rng.uniform(0, 2 * np.pi)
  t = x * np.float32(np.cos(phi)) + y * np.float32(np.sin(phi))
  t -= t.min()
  t /= max(float(t.max()), 1e-6)
  psi = rng.uniform(0, 2 * np.pi)
  freq = np.float32(rng.uniform(0.5, 2.0) * 2 * np.pi / IMAGE_SIZE)
  swell = np.float32(0.1) * np.sin(freq * (x * np.float32(np.cos(psi)) +
                                           y * np.float32(np.sin(psi)))
                                   + np.float32(rng.uniform(0, 2 * np.pi)))
  return a + (b - a) * t + swell


def _boundary(label: np.ndarray) -> np.ndarray:
  """bool `[S, S]`: pixels with a 4-neighbour of another label (both sides of a boundary)."""
  edge = np.zeros(label.shape, bool)
  dy = label[1:] != label[:-1]
  dx = label[:, 1:] != label[:, :-1]
  edge[1:] |= dy
  edge[:-1] |= dy
  edge[:, 1:] |= dx
  edge[:, :-1] |= dx
  return edge


def draw_image(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """One example drawn from `rng` (see the module docstring for how).

  Returns:
    image: uint8 `[64, 64, 3]`.
    label: uint8 `[64, 64]`, values in [0, NUM_CLASSES) or IGNORE_LABEL.
  """
  # Channel-first flat pixels: numpy broadcasts `[3, 1]` colours over `[3, S * S]` much
  # faster than over a trailing axis of 3.
  y, x = _grid()
  image = _background(y, x, rng)
  label = np.zeros(IMAGE_SIZE * IMAGE_SIZE, np.uint8)
  for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
    cls = int(rng.integers(1, NUM_CLASSES))
    radius = rng.uniform(*RADIUS_RANGE)
    cy, cx = rng.uniform(4.0, IMAGE_SIZE - 4.0, size=2)
    theta = rng.uniform(0, 2 * np.pi)
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    dy, dx = y - np.float32(cy), x - np.float32(cx)
    mask = _shape_mask(cls, dx * c + dy * s, dy * c - dx * s, radius, rng)
    # Paint only the covered pixels: most of the image is not.
    image[:, mask] = _texture(y[mask], x[mask], rng)
    label[mask] = cls
  # Uniform pixel noise, std drawn per image in [0.02, 0.08]: much cheaper than Gaussian.
  noise = np.float32(rng.uniform(0.02, 0.08) * np.sqrt(12.0))
  image += noise * (rng.random(image.shape, dtype=np.float32) - np.float32(0.5))
  label = label.reshape(IMAGE_SIZE, IMAGE_SIZE)
  label[_boundary(label)] = IGNORE_LABEL
  image = np.clip(image * np.float32(255) + np.float32(0.5), 0, 255).astype(np.uint8)
  return image.reshape(3, IMAGE_SIZE, IMAGE_SIZE).transpose(1, 2, 0), label


def _draw_split(split_id: int, n: int) -> tuple[np.ndarray, np.ndarray]:
  images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
  labels = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
  for i in range(n):
    # One seed per image: any image can be redrawn alone, and splits never share a stream.
    images[i], labels[i] = draw_image(np.random.default_rng([GENERATION_SEED, split_id, i]))
  images.setflags(write=False)  # cached arrays are shared between sources: forbid edits
  labels.setflags(write=False)
  return images, labels


@functools.lru_cache(maxsize=1)
def shapes_arrays() -> dict[str, np.ndarray]:
  """All images, generated once per process.

  Returns:
    `{"x": uint8 [2000, 64, 64, 3], "y": uint8 [2000, 64, 64], "x_test": uint8
    [500, 64, 64, 3], "y_test": uint8 [500, 64, 64]}` (read-only): the train pool and the
    test set; labels in [0, NUM_CLASSES) or IGNORE_LABEL.
  """
  x, y = _draw_split(_TRAIN_POOL_ID, NUM_TRAIN_POOL)
  x_test, y_test = _draw_split(_TEST_ID, NUM_TEST)
  return {"x": x, "y": y, "x_test": x_test, "y_test": y_test}


def to_example(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Raw `{"image": uint8 [64, 64, 3], "label": uint8 [64, 64]}` -> `{"input": float32
  [64, 64, 3] standardised with MEAN / STD, "label": int32 [64, 64]}`."""
  x = np.asarray(raw["image"], np.float32) * np.float32(1 / 255)
  x = (x - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
  return {"input": x, "label": np.asarray(raw["label"], np.int32)}


def _pool_statistics() -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Per-channel mean / std of the train pool's pixels / 255 (how MEAN / STD were set)."""
  x = shapes_arrays()["x"].reshape(-1, 3)
  levels = np.arange(256) / 255.0
  mean, std = [], []
  for c in range(3):  # exact, from a histogram of the uint8 levels (fast, no float copy)
    p = np.bincount(x[:, c], minlength=256) / len(x)
    m = float(p @ levels)
    mean.append(round(m, 4))
    std.append(round(float(np.sqrt(p @ (levels - m) ** 2)), 4))
  return tuple(mean), tuple(std)
