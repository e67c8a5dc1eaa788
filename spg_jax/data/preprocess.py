"""Per-example image preprocessing in numpy + Pillow, equal to torchvision's on PIL images.

Eval transforms are deterministic functions of the example; train transforms also take a
`np.random.Generator`, which grain's `random_map` seeds from the pipeline seed and the
example's position, so augmentation is reproducible and resumable.

Classification (ImageNet), torchvision's reference recipe and weights cards:
  train = RandomResizedCrop(crop, scale=(0.08, 1), ratio=(3/4, 4/3)) + horizontal flip;
  eval = Resize(resize) (the shorter side; bilinear, antialiased) + CenterCrop(crop);
  both then `/ 255` and normalise with torchvision's mean/std. `ImageNetEval` /
  `ImageNetTrain` take the sizes (`EVAL_SIZES` lists the weights cards' values: 256/224
  for ResNet / MobileNetV2 / ViT-B/16 V1, 480/480 for EfficientNet-V2-M).
Segmentation (torchvision's references/segmentation presets, COCO with VOC labels):
  train = RandomResize(0.5 * base, 2 * base) (the shorter side; image bilinear, mask
  nearest) + horizontal flip (p 0.5) + RandomCrop(crop) after padding the bottom/right
  with 0 (image, before normalising) / 255 (mask); eval = shorter side to `base`, then
  (for fixed batch shapes, our addition) padded at the bottom/right to `pad_size` square
  with 0 after normalising and 255 in the mask (`SegmentationEval`).

Resizing is Pillow's (`Image.resize`, BILINEAR is antialiased when shrinking; NEAREST for
masks), which is exactly what torchvision calls on PIL images: on the golden images of
`tests/test_data_preprocess.py` the outputs are bit-equal. torchvision's tensor path
(`F.resize` of a uint8 tensor, `antialias=True`) differs from Pillow by at most 1/255 (on
12-18 % of the values of those images).
"""
from __future__ import annotations

import dataclasses
import io
import math
from typing import Any

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CROP = 224
IMAGENET_RESIZE = 256
# torchvision 0.29 weights cards' eval transforms (resize of the shorter side, centre crop),
# all bilinear: ImageClassification(resize_size, crop_size).
EVAL_SIZES = {
    "resnet50_v1": (256, 224),
    "mobilenet_v2_v1": (256, 224),
    "vit_b16_v1": (256, 224),
    "efficientnet_v2_m": (480, 480),
}
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)
RRC_ATTEMPTS = 10  # torchvision's number of tries before falling back to a centre crop
CIFAR_PAD = 4  # torchvision CIFAR recipe: RandomCrop(32, padding=4) + flip
# torchvision references/segmentation/train.py: SegmentationPresetTrain(base_size=520,
# crop_size=480), SegmentationPresetEval(base_size=520).
SEG_BASE_SIZE = 520
SEG_CROP_SIZE = 480
SEG_HFLIP_PROB = 0.5
SEG_IGNORE = 255
_RESAMPLE = ("bilinear", "nearest")


def to_unit(image: np.ndarray) -> np.ndarray:
  """uint8 `[H, W, C]` -> float32 in [0, 1] (torchvision's `convert_image_dtype`)."""
  return np.asarray(image, np.float32) / 255.0


def normalize(x: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
  """Per-channel `(x - mean) / std` on float32 `[H, W, C]` in [0, 1] (a 1-channel image
  broadcasts to 3 channels, as its RGB conversion would)."""
  return ((x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32)


def resize(image: np.ndarray, height: int, width: int, resample: str = "bilinear"
           ) -> np.ndarray:
  """Pillow resize of uint8 `[H, W, C]` or `[H, W]` to `[height, width, ...]`.

  `resample`: "bilinear" (antialiased when shrinking, as Pillow always is) or "nearest"
  (label maps). Same size: returned as it is (torchvision skips the call too).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top  (only images need Pillow)
  if resample not in _RESAMPLE:
    raise ValueError(f"resample={resample!r}: must be one of {list(_RESAMPLE)}")
  image = np.asarray(image, np.uint8)
  if image.shape[:2] == (height, width):
    return image
  squeeze = image.ndim == 3 and image.shape[-1] == 1
  pil = Image.fromarray(image[..., 0] if squeeze else image)
  filt = Image.Resampling.BILINEAR if resample == "bilinear" else Image.Resampling.NEAREST
  out = np.asarray(pil.resize((width, height), filt))
  return out[..., None] if squeeze else out


def shorter_side_size(height: int, width: int, size: int) -> tuple[int, int]:
  """torchvision's `Resize(size)` output `(new_h, new_w)` for an int size: the shorter side
  becomes `size`, the longer `int(size * long / short)` (truncated, as torchvision)."""
  if width <= height:
    return int(size * height / width), size
  return size, int(size * width / height)


def resize_shorter(image: np.ndarray, size: int, resample: str = "bilinear") -> np.ndarray:
  """torchvision's Resize(size) with an int: the shorter side becomes `size`."""
  return resize(image, *shorter_side_size(image.shape[0], image.shape[1], size), resample)


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator,
                            scale=RRC_SCALE, ratio=RRC_RATIO) -> tuple[int, int, int, int]:
  """torchvision's `RandomResizedCrop.get_params`: `(top, left, crop_h, crop_w)`.

  The same rule with numpy's generator instead of torch's: area fraction uniform in
  `scale`, log aspect ratio uniform in `log(ratio)`, 10 tries, then the whole image
  clamped to the allowed aspect ratios and centred.
  """
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
  """torchvision's CenterCrop(size) of `[H, W, ...]`; a side shorter than `size` is first
  zero-padded, `(size - side) // 2` before and the rest after (as torchvision pads)."""
  h, w = image.shape[:2]
  if size > h or size > w:
    ph, pw = max(size - h, 0), max(size - w, 0)
    pad = [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)] + [(0, 0)] * (image.ndim - 2)
    image = np.pad(image, pad)
    h, w = image.shape[:2]
  top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
  return image[top:top + size, left:left + size]


def imagenet_eval_image(image: np.ndarray, resize_size: int = IMAGENET_RESIZE,
                        crop_size: int = IMAGENET_CROP) -> np.ndarray:
  """uint8 `[H, W, C]` -> float32 `[crop, crop, 3]`: resize the shorter side, centre
  crop, normalise (a grey `[H, W, 1]` image broadcasts to 3 channels)."""
  crop = center_crop(resize_shorter(image, resize_size), crop_size)
  return normalize(to_unit(crop))


def imagenet_train_image(image: np.ndarray, rng: np.random.Generator,
                         crop_size: int = IMAGENET_CROP) -> np.ndarray:
  """uint8 `[H, W, C]` -> float32 `[crop, crop, 3]`: random resized crop, flip, normalise."""
  top, left, h, w = random_resized_crop_box(image.shape[0], image.shape[1], rng)
  crop = resize(image[top:top + h, left:left + w], crop_size, crop_size)
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


# ---------------------------------------------------------------------- segmentation
def pad_bottom_right(a: np.ndarray, height: int, width: int, value: Any) -> np.ndarray:
  """Pad `[H, W, ...]` at the bottom and right up to at least `[height, width]` with
  `value` (references/segmentation `pad_if_smaller`: `F.pad(img, (0, 0, padw, padh))`)."""
  ph, pw = max(height - a.shape[0], 0), max(width - a.shape[1], 0)
  if not (ph or pw):
    return a
  return np.pad(a, [(0, ph), (0, pw)] + [(0, 0)] * (a.ndim - 2), constant_values=value)


def segmentation_train_pair(image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                            base_size: int = SEG_BASE_SIZE, crop_size: int = SEG_CROP_SIZE,
                            hflip_prob: float = SEG_HFLIP_PROB
                            ) -> tuple[np.ndarray, np.ndarray]:
  """references/segmentation SegmentationPresetTrain, before normalising.

  Args:
    image: uint8 `[H, W, 3]`; label: uint8 `[H, W]` (classes, 255 = ignore).
    rng: draws the shorter side (uniform integer in [int(0.5 * base), int(2 * base)]),
      the flip and the crop's corner.

  Returns:
    uint8 `[crop, crop, 3]` and uint8 `[crop, crop]`: resized (bilinear / nearest),
    flipped, padded at the bottom/right with 0 / 255 where smaller than the crop, cropped.
  """
  size = int(rng.integers(int(0.5 * base_size), int(2.0 * base_size) + 1))
  image, label = resize_shorter(image, size), resize_shorter(label, size, "nearest")
  if rng.random() < hflip_prob:
    image, label = image[:, ::-1], label[:, ::-1]
  image = pad_bottom_right(image, crop_size, crop_size, 0)
  label = pad_bottom_right(label, crop_size, crop_size, SEG_IGNORE)
  h, w = label.shape
  # T.RandomCrop.get_params: top in [0, h - crop], left in [0, w - crop].
  top, left = int(rng.integers(0, h - crop_size + 1)), int(rng.integers(0, w - crop_size + 1))
  return (image[top:top + crop_size, left:left + crop_size],
          label[top:top + crop_size, left:left + crop_size])


def segmentation_eval_pair(image: np.ndarray, label: np.ndarray,
                           base_size: int = SEG_BASE_SIZE) -> tuple[np.ndarray, np.ndarray]:
  """references/segmentation SegmentationPresetEval, before normalising: the shorter side
  to `base_size` (image bilinear, label nearest). Returns uint8 `[H', W', 3]`, `[H', W']`."""
  return resize_shorter(image, base_size), resize_shorter(label, base_size, "nearest")


def decode_image(data: bytes) -> np.ndarray:
  """JPEG/PNG bytes -> uint8 `[H, W, 3]` (`.convert("RGB")`, as torchvision's COCO reader)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(io.BytesIO(data)) as im:
    return np.asarray(im.convert("RGB"))


def decode_label(data: bytes) -> np.ndarray:
  """PNG bytes of a mode-"L" label map -> uint8 `[H, W]`."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(io.BytesIO(data)) as im:
    return np.asarray(im)


def _example(x: np.ndarray, label: Any) -> dict[str, np.ndarray]:
  # np.asarray for the label: ascontiguousarray would turn a scalar label into shape (1,).
  return {"input": np.ascontiguousarray(x, np.float32), "label": np.asarray(label, np.int32)}


# Per-dataset example transforms on raw TFDS examples. Module-level functions and frozen
# dataclasses (not lambdas or closures) so grain's multiprocessing workers can pickle them.
def unit_image_eval(ex: dict[str, Any]) -> dict[str, np.ndarray]:
  """MNIST / CIFAR eval: pixels / 255 in [0, 1], no normalisation."""
  return _example(to_unit(ex["image"]), ex["label"])


def cifar_train(ex: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
  """CIFAR train: pad-4 random crop + flip, then pixels / 255."""
  return _example(to_unit(pad_crop_flip(ex["image"], rng)), ex["label"])


@dataclasses.dataclass(frozen=True)
class ImageNetEval:
  """`{"image": uint8 [H, W, 3], "label"}` -> `{"input": float32 [crop, crop, 3],
  "label": int32 []}`: resize the shorter side to `resize_size`, centre crop `crop_size`."""
  resize_size: int = IMAGENET_RESIZE
  crop_size: int = IMAGENET_CROP

  def __call__(self, ex: dict[str, Any]) -> dict[str, np.ndarray]:
    return _example(imagenet_eval_image(ex["image"], self.resize_size, self.crop_size),
                    ex["label"])


@dataclasses.dataclass(frozen=True)
class ImageNetTrain:
  """RandomResizedCrop(`crop_size`) + flip: `{"input": float32 [crop, crop, 3], ...}`."""
  crop_size: int = IMAGENET_CROP

  def __call__(self, ex: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    return _example(imagenet_train_image(ex["image"], rng, self.crop_size), ex["label"])


imagenet_eval = ImageNetEval()
imagenet_train = ImageNetTrain()


@dataclasses.dataclass(frozen=True)
class SegmentationTrain:
  """Raw `{"image": JPEG bytes, "label": PNG bytes}` -> `{"input": float32 [crop, crop, 3]
  (normalised), "label": int32 [crop, crop]}` (`segmentation_train_pair`)."""
  base_size: int = SEG_BASE_SIZE
  crop_size: int = SEG_CROP_SIZE
  hflip_prob: float = SEG_HFLIP_PROB

  def __call__(self, ex: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    image, label = segmentation_train_pair(decode_image(ex["image"]), decode_label(ex["label"]),
                                           rng, self.base_size, self.crop_size,
                                           self.hflip_prob)
    return _example(normalize(to_unit(image)), label)


@dataclasses.dataclass(frozen=True)
class SegmentationEval:
  """Raw `{"image", "label"}` bytes -> `{"input": float32 [pad, pad, 3], "label": int32
  [pad, pad]}`: the shorter side to `base_size`, normalised, then padded at the bottom and
  right to `pad_size` with 0 (the normalised mean colour) and label 255, so every batch has
  one shape and the padding counts for no class.

  Raises:
    ValueError: the resized image is larger than `pad_size` (naming the size needed).
  """
  base_size: int = SEG_BASE_SIZE
  pad_size: int = 2 * SEG_BASE_SIZE

  def __call__(self, ex: dict[str, Any]) -> dict[str, np.ndarray]:
    image, label = segmentation_eval_pair(decode_image(ex["image"]), decode_label(ex["label"]),
                                          self.base_size)
    if max(label.shape) > self.pad_size:
      raise ValueError(f"eval_pad_size={self.pad_size}: smaller than an evaluation image "
                       f"({label.shape[0]}x{label.shape[1]} after resizing the shorter side "
                       f"to {self.base_size}); set it to at least {max(label.shape)}")
    x = normalize(to_unit(image))
    x = pad_bottom_right(x, self.pad_size, self.pad_size, 0.0)
    label = pad_bottom_right(label, self.pad_size, self.pad_size, SEG_IGNORE)
    return _example(x, label)
