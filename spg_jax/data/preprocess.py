"""Per-example image preprocessing in numpy (+ Pillow for antialiased resizing).

Eval transforms are deterministic functions of the example; train transforms also take a
`np.random.Generator`, which grain's `random_map` seeds from the pipeline seed and the
example's position, so augmentation is reproducible and resumable.

ImageNet follows torchvision's reference recipe: train = RandomResizedCrop(224,
scale=(0.08, 1), ratio=(3/4, 4/3)) + horizontal flip; eval = Resize(256) (shorter side) +
CenterCrop(224); both then scale to [0, 1] and normalise with torchvision's mean/std.
Resizing uses Pillow's bilinear filter, as torchvision does on PIL images.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CROP = 224
IMAGENET_RESIZE = 256
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)
RRC_ATTEMPTS = 10  # torchvision's number of tries before falling back to a centre crop
CIFAR_PAD = 4  # torchvision CIFAR recipe: RandomCrop(32, padding=4) + flip


def to_unit(image: np.ndarray) -> np.ndarray:
  """uint8 `[H, W, C]` -> float32 in [0, 1]."""
  return np.asarray(image, np.float32) / 255.0


def normalize(x: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
  """Per-channel `(x - mean) / std` on float32 `[H, W, C]` in [0, 1]."""
  return ((x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear (antialiased when shrinking) resize of uint8 `[H, W, C]` to `[height, width, C]`."""
  from PIL import Image  # pylint: disable=g-import-not-at-top  (only ImageNet needs Pillow)
  image = np.asarray(image, np.uint8)
  squeeze = image.shape[-1] == 1
  pil = Image.fromarray(image[..., 0] if squeeze else image)
  out = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR))
  return out[..., None] if squeeze else out


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator,
                            scale=RRC_SCALE, ratio=RRC_RATIO) -> tuple[int, int, int, int]:
  """torchvision's `RandomResizedCrop.get_params`: `(top, left, crop_h, crop_w)`."""
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(RRC_ATTEMPTS):
    target_area = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
    w = int(round(math.sqrt(target_area * aspect)))
    h = int(round(math.sqrt(target_area / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return top, left, h, w
  # Fallback: the whole image, clamped to the allowed aspect ratios, centred.
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """torchvision's CenterCrop on an image at least `size` on each side."""
  h, w = image.shape[:2]
  top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
  return image[top:top + size, left:left + size]


def resize_shorter(image: np.ndarray, size: int) -> np.ndarray:
  """torchvision's Resize(size) with an int: the shorter side becomes `size`."""
  h, w = image.shape[:2]
  if w <= h:
    new_w, new_h = size, int(size * h / w)
  else:
    new_h, new_w = size, int(size * w / h)
  return resize(image, new_h, new_w)


def imagenet_eval_image(image: np.ndarray) -> np.ndarray:
  """uint8 `[H, W, 3]` -> float32 `[224, 224, 3]`: resize 256, centre crop 224, normalise."""
  crop = center_crop(resize_shorter(image, IMAGENET_RESIZE), IMAGENET_CROP)
  return normalize(to_unit(crop))


def imagenet_train_image(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """uint8 `[H, W, 3]` -> float32 `[224, 224, 3]`: random resized crop, flip, normalise."""
  top, left, h, w = random_resized_crop_box(image.shape[0], image.shape[1], rng)
  crop = resize(image[top:top + h, left:left + w], IMAGENET_CROP, IMAGENET_CROP)
  if rng.random() < 0.5:
    crop = crop[:, ::-1]
  return normalize(to_unit(crop))


def pad_crop_flip(image: np.ndarray, rng: np.random.Generator, pad: int = CIFAR_PAD) -> np.ndarray:
  """Zero-pad by `pad`, random crop back to the original size, random horizontal flip."""
  h, w = image.shape[:2]
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
  top, left = int(rng.integers(0, 2 * pad + 1)), int(rng.integers(0, 2 * pad + 1))
  out = padded[top:top + h, left:left + w]
  return out[:, ::-1] if rng.random() < 0.5 else out


def _example(x: np.ndarray, label: Any) -> dict[str, np.ndarray]:
  return {"input": np.ascontiguousarray(x, np.float32), "label": np.asarray(label, np.int32)}


# Per-dataset example transforms on raw TFDS examples `{"image": uint8, "label": int}`.
# Module-level functions (not lambdas) so grain's multiprocessing workers can pickle them.
def unit_image_eval(ex: dict[str, Any]) -> dict[str, np.ndarray]:
  """MNIST / CIFAR eval: pixels / 255 in [0, 1], no normalisation."""
  return _example(to_unit(ex["image"]), ex["label"])


def cifar_train(ex: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
  """CIFAR train: pad-4 random crop + flip, then pixels / 255."""
  return _example(to_unit(pad_crop_flip(ex["image"], rng)), ex["label"])


def imagenet_eval(ex: dict[str, Any]) -> dict[str, np.ndarray]:
  return _example(imagenet_eval_image(ex["image"]), ex["label"])


def imagenet_train(ex: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
  return _example(imagenet_train_image(ex["image"], rng), ex["label"])
