"""Golden outputs of torchvision's image transforms, for `tests/test_data_preprocess.py`.

Run by hand in an environment with torch, torchvision and Pillow (never in the tests, never
with jax):

  python experiments/golden/torchvision_transforms.py [--out=tests/golden/transforms]

It draws a few test images from seeded numpy generators (`make_image`, `make_label`: odd
sizes, portrait and landscape, one smaller than the 224 crop, one grey, one whose resize is
a no-op) and records what torchvision makes of them:

  * the classification eval presets (`ImageClassification` of the weights cards: Resize(
    shorter side, BILINEAR, antialias=True) + CenterCrop + to float + Normalize) at 256/224
    (ResNet-50 V1, MobileNetV2 V1, ViT-B/16 V1) and 480/480 (EfficientNet-V2-M), on PIL
    images and on uint8 tensors (torch's own antialiased resize: how far it is from
    Pillow's is measured and written to the json);
  * the deterministic part of RandomResizedCrop given a crop box (`F.resized_crop(...,
    [224, 224], BILINEAR, antialias=True)`) and `F.hflip`;
  * `RandomResizedCrop.get_params` samples (torch's RNG: the tests compare distributions);
  * the segmentation reference presets (pytorch/vision references/segmentation: train =
    RandomResize + RandomHorizontalFlip + RandomCrop padded with 0 / 255; eval = shorter
    side to 520, mask with NEAREST) with their random choices fixed. `references/` is not
    part of the torchvision wheel, so `_seg_*` restate its few lines with the same
    `torchvision.transforms.functional` calls.

Outputs are stored at uint8 scale (they are uint8 before the division by 255); the large
ones are stored subsampled (`[::2, ::2]` or `[::4, ::4]`, named in the json), so the
fixtures stay well under 1 MB. The images themselves are not stored: the tests regenerate
them from the seeds and shapes with the same functions (numpy only), so this module must
stay importable without torch.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Any

import numpy as np

# name -> (seed, (height, width, channels)). Channels 1 is a grey ("L") image.
IMAGES = {
    "landscape": (11, (333, 517, 3)),
    "portrait": (12, (611, 257, 3)),
    "small": (13, (97, 150, 3)),     # smaller than the 224 crop: upscaled
    "grey": (14, (300, 401, 1)),
    "square256": (15, (256, 256, 3)),  # Resize(256) leaves it as it is
}
# Classification eval presets (resize of the shorter side, centre crop) from the weights
# cards of torchvision 0.29: ResNet-50 / MobileNetV2 / ViT-B/16 IMAGENET1K_V1 and
# EfficientNet-V2-M IMAGENET1K_V1.
EVAL_PRESETS = {"256_224": (256, 224), "480_480": (480, 480)}
EVAL_480_IMAGES = ("landscape", "portrait", "small")
# Stored outputs: every pixel for these, every STRIDE-th row and column for the others.
FULL_RESOLUTION = ("eval_256_224/landscape", "eval_256_224/grey", "crop/landscape")
STRIDE = 2
EVAL_480_STRIDE = 3
# Fixed crop boxes (top, left, height, width) for the deterministic part of
# RandomResizedCrop: a downscale, an upscale, the whole image, a grey one.
CROP_BOXES = {
    "landscape": (40, 100, 200, 300),
    "portrait": (300, 20, 150, 113),
    "small": (0, 0, 97, 150),
    "grey": (10, 50, 250, 300),
}
# RandomResizedCrop.get_params samples per image size (height, width).
RRC_SIZES = ((500, 375), (224, 224), (300, 1000))
RRC_SAMPLES = 2000
RRC_TORCH_SEED = 0
# Normalised values checked at this many seeded pixel positions of the landscape eval.
NORM_POSITIONS = 256
# Segmentation presets: (image, shorter side the RandomResize drew, flip, crop top, crop
# left); crop size 480 as the reference recipe (base_size 520, crop_size 480).
SEG_CROP = 480
SEG_BASE = 520
SEG_TRAIN_CASES = {
    "landscape_700": ("landscape", 700, True, 100, 300),   # larger than the crop
    "portrait_260": ("portrait", 260, False, 50, 0),       # narrower than the crop: padded
}
SEG_EVAL_IMAGES = ("landscape", "portrait")
SEG_EVAL_STRIDE = 4
SEG_TRAIN_STRIDE = 3
NUM_VOC_CLASSES = 21
IGNORE = 255
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def make_image(seed: int, shape: tuple[int, int, int]) -> np.ndarray:
  """A deterministic test image, uint8 `[H, W, C]`: a smooth colour field, a few
  sharp-edged rectangles, a block of fine stripes (aliasing shows in a bad downscale) and
  mild noise. numpy only, so the tests regenerate the same pixels."""
  h, w, c = shape
  rng = np.random.default_rng(seed)
  gy, gx = h // 32 + 2, w // 32 + 2
  coarse = rng.uniform(0.0, 255.0, (gy, gx, c))
  ys, xs = np.linspace(0.0, gy - 1.0, h), np.linspace(0.0, gx - 1.0, w)
  y0 = np.minimum(np.floor(ys).astype(np.int64), gy - 2)
  x0 = np.minimum(np.floor(xs).astype(np.int64), gx - 2)
  fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
  rows = coarse[y0] * (1.0 - fy) + coarse[y0 + 1] * fy                  # [h, gx, c]
  img = rows[:, x0] * (1.0 - fx) + rows[:, x0 + 1] * fx                 # [h, w, c]
  for _ in range(4):
    top, left = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
    bh, bw = int(rng.integers(4, h // 3 + 5)), int(rng.integers(4, w // 3 + 5))
    img[top:top + bh, left:left + bw] = rng.uniform(0.0, 255.0, c)
  top, left = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
  stripes = 255.0 * ((np.arange(w // 3) // 2) % 2)                       # period 4 px
  img[top:top + h // 4, left:left + w // 3] = stripes[None, :, None]
  img = img + rng.normal(0.0, 1.0, img.shape)
  return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_label(seed: int, height: int, width: int) -> np.ndarray:
  """A deterministic label map, uint8 `[H, W]`: 16-pixel blocks of classes 0..20 with the
  ignore label 255 on pixels whose right or lower neighbour has another class."""
  rng = np.random.default_rng(seed + 1000)
  blocks = rng.integers(0, NUM_VOC_CLASSES, (height // 16 + 1, width // 16 + 1))
  label = np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1)[:height, :width]
  edge = np.zeros_like(label, bool)
  edge[:-1] |= label[:-1] != label[1:]
  edge[:, :-1] |= label[:, :-1] != label[:, 1:]
  return np.where(edge, IGNORE, label).astype(np.uint8)


def norm_positions(height: int, width: int) -> np.ndarray:
  """`NORM_POSITIONS` seeded pixel positions `[N, 2]` (row, column)."""
  rng = np.random.default_rng(7)
  return np.stack([rng.integers(0, height, NORM_POSITIONS),
                   rng.integers(0, width, NORM_POSITIONS)], axis=1)


def _hwc(t: Any) -> np.ndarray:
  """torch `[C, H, W]` -> numpy `[H, W, C]`."""
  return t.permute(1, 2, 0).numpy()


def _to_uint8_scale(x: np.ndarray) -> np.ndarray:
  """float [0, 1] values that are k/255 back to uint8 k (exactly; checked)."""
  q = np.round(x * 255.0)
  assert np.abs(q - x * 255.0).max() < 1e-3, "not on the k/255 grid"
  return q.astype(np.uint8)


def _pil(image: np.ndarray):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _seg_train(image, target, size, flip, top, left):
  """references/segmentation: RandomResize(size) + hflip + RandomCrop(480) (its random
  draws given), then PILToTensor + ConvertImageDtype; image uint8 scale, target int."""
  import torch  # pylint: disable=g-import-not-at-top
  from torchvision.transforms import functional as F  # pylint: disable=g-import-not-at-top
  from torchvision.transforms import InterpolationMode  # pylint: disable=g-import-not-at-top
  image = F.resize(image, size)
  target = F.resize(target, size, interpolation=InterpolationMode.NEAREST)
  if flip:
    image, target = F.hflip(image), F.hflip(target)

  def pad_if_smaller(img, fill):
    if min(img.size) < SEG_CROP:
      ow, oh = img.size
      padh = SEG_CROP - oh if oh < SEG_CROP else 0
      padw = SEG_CROP - ow if ow < SEG_CROP else 0
      img = F.pad(img, (0, 0, padw, padh), fill=fill)
    return img

  image, target = pad_if_smaller(image, 0), pad_if_smaller(target, IGNORE)
  image = F.crop(image, top, left, SEG_CROP, SEG_CROP)
  target = F.crop(target, top, left, SEG_CROP, SEG_CROP)
  image = F.convert_image_dtype(F.pil_to_tensor(image), torch.float)
  target = torch.as_tensor(np.asarray(target), dtype=torch.int64)
  return image, target


def _seg_eval(image, target):
  """references/segmentation SegmentationPresetEval(base_size=520): RandomResize(520, 520)
  (the shorter side to 520), mask with NEAREST, then PILToTensor + ConvertImageDtype."""
  import torch  # pylint: disable=g-import-not-at-top
  from torchvision.transforms import functional as F  # pylint: disable=g-import-not-at-top
  from torchvision.transforms import InterpolationMode  # pylint: disable=g-import-not-at-top
  image = F.resize(image, SEG_BASE)
  target = F.resize(target, SEG_BASE, interpolation=InterpolationMode.NEAREST)
  image = F.convert_image_dtype(F.pil_to_tensor(image), torch.float)
  return image, torch.as_tensor(np.asarray(target), dtype=torch.int64)


def _diff_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
  """Differences of two uint8 arrays on the [0, 1] scale."""
  d = np.abs(a.astype(np.int64) - b.astype(np.int64))
  return {"max_abs": float(d.max()) / 255.0, "mean_abs": float(d.mean()) / 255.0,
          "fraction_differing": float((d > 0).mean())}


def encode(a: np.ndarray) -> np.ndarray:
  """uint8 `[H, W, ...]` -> differences along the width (mod 256), which deflate packs far
  better than the pixels themselves; `decode` inverts it exactly."""
  a = np.asarray(a, np.uint8)
  d = a.copy()
  d[:, 1:] = a[:, 1:] - a[:, :-1]  # uint8 arithmetic wraps mod 256
  return d


def decode(d: np.ndarray) -> np.ndarray:
  """Inverse of `encode`."""
  return np.cumsum(d, axis=1, dtype=np.uint8)


def build() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """All golden arrays (name -> array) and the json record (versions, cases, strides,
  stats). Image outputs are stored `encode`d, subsampled `[::s, ::s]` with `s =
  record["strides"][name]`; `<name>/tensor_minus_pil` (int8) is torch's tensor path minus
  the PIL path at the same positions."""
  import PIL  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import torchvision  # pylint: disable=g-import-not-at-top
  from torchvision import transforms as T  # pylint: disable=g-import-not-at-top
  from torchvision.transforms import functional as F  # pylint: disable=g-import-not-at-top
  from torchvision.transforms import InterpolationMode  # pylint: disable=g-import-not-at-top
  from torchvision.transforms._presets import ImageClassification  # pylint: disable=all
  bilinear = InterpolationMode.BILINEAR
  arrays: dict[str, np.ndarray] = {}
  strides: dict[str, int] = {}
  tensor_vs_pil: dict[str, Any] = {}
  images = {name: make_image(seed, shape) for name, (seed, shape) in IMAGES.items()}

  def store(name, pil_out, tensor_out=None, stride=None):
    stride = stride or (1 if name in FULL_RESOLUTION else STRIDE)
    strides[name] = stride
    arrays[name] = encode(pil_out[::stride, ::stride])
    if tensor_out is not None:
      tensor_vs_pil[name] = _diff_stats(tensor_out, pil_out)
      diff = tensor_out.astype(np.int16) - pil_out.astype(np.int16)
      arrays[f"{name}/tensor_minus_pil"] = diff[::stride, ::stride].astype(np.int8)

  def tensor(image):
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))

  for preset, (resize, crop) in EVAL_PRESETS.items():
    transform = T.Compose([T.Resize(resize, bilinear, antialias=True), T.CenterCrop(crop)])
    for name in (IMAGES if preset == "256_224" else EVAL_480_IMAGES):
      pil_out = _to_uint8_scale(_hwc(T.ToTensor()(transform(_pil(images[name])))))
      tensor_out = _hwc(transform(tensor(images[name])))  # uint8 throughout
      store(f"eval_{preset}/{name}", pil_out, tensor_out,
            stride=EVAL_480_STRIDE if preset == "480_480" else None)

  # The whole ImageClassification preset (float32 normalisation) at seeded positions.
  normalised = _hwc(ImageClassification(crop_size=224, resize_size=256)(
      _pil(images["landscape"])))
  pos = norm_positions(224, 224)
  arrays["normalised_256_224/landscape"] = normalised[pos[:, 0], pos[:, 1]].astype(np.float32)

  hflip_is_reversal = True
  for name, (top, left, h, w) in CROP_BOXES.items():
    pil = F.resized_crop(_pil(images[name]), top, left, h, w, [224, 224], bilinear,
                         antialias=True)
    pil_out = np.asarray(pil).reshape(224, 224, -1)
    tensor_out = _hwc(F.resized_crop(tensor(images[name]), top, left, h, w, [224, 224],
                                     bilinear, antialias=True))
    store(f"crop/{name}", pil_out, tensor_out)
    # RandomResizedCrop flips after the crop; F.hflip of a PIL image reverses the columns
    # (checked here on every crop, so the fixture need not store the flipped pixels).
    flipped = np.asarray(F.hflip(pil)).reshape(224, 224, -1)
    hflip_is_reversal &= bool(np.array_equal(flipped, pil_out[:, ::-1]))
  assert hflip_is_reversal

  torch.manual_seed(RRC_TORCH_SEED)
  for h, w in RRC_SIZES:
    dummy = torch.zeros(1, h, w, dtype=torch.uint8)
    boxes = [T.RandomResizedCrop.get_params(dummy, [0.08, 1.0], [3.0 / 4.0, 4.0 / 3.0])
             for _ in range(RRC_SAMPLES)]
    arrays[f"rrc_boxes/{h}x{w}"] = np.asarray(boxes, np.int16)

  for name in SEG_EVAL_IMAGES:
    seed, (h, w, _) = IMAGES[name]
    image, target = _seg_eval(_pil(images[name]), _pil(make_label(seed, h, w)[..., None]))
    store(f"seg_eval/{name}/image", _to_uint8_scale(_hwc(image)), stride=SEG_EVAL_STRIDE)
    store(f"seg_eval/{name}/label", target.numpy().astype(np.uint8), stride=1)
  for case, (name, size, flip, top, left) in SEG_TRAIN_CASES.items():
    seed, (h, w, _) = IMAGES[name]
    image, target = _seg_train(_pil(images[name]), _pil(make_label(seed, h, w)[..., None]),
                               size, flip, top, left)
    store(f"seg_train/{case}/image", _to_uint8_scale(_hwc(image)), stride=SEG_TRAIN_STRIDE)
    store(f"seg_train/{case}/label", target.numpy().astype(np.uint8), stride=1)

  record = {
      "versions": {"python": platform.python_version(), "torch": torch.__version__,
                   "torchvision": torchvision.__version__, "pillow": PIL.__version__,
                   "numpy": np.__version__},
      "images": {name: {"seed": seed, "shape": list(shape)}
                 for name, (seed, shape) in IMAGES.items()},
      "eval_presets": {k: {"resize": r, "crop": c} for k, (r, c) in EVAL_PRESETS.items()},
      "crop_boxes": {k: list(v) for k, v in CROP_BOXES.items()},
      "hflip_is_column_reversal": hflip_is_reversal,
      "rrc": {"sizes": [list(s) for s in RRC_SIZES], "samples": RRC_SAMPLES,
              "torch_seed": RRC_TORCH_SEED, "scale": [0.08, 1.0], "ratio": [3 / 4, 4 / 3]},
      "seg": {"base_size": SEG_BASE, "crop_size": SEG_CROP,
              "train_cases": {k: {"image": n, "size": s, "flip": f, "top": t, "left": l}
                              for k, (n, s, f, t, l) in SEG_TRAIN_CASES.items()}},
      "strides": strides,
      "tensor_vs_pil_uint8": tensor_vs_pil,
      "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
  }
  return arrays, record


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=os.path.join("tests", "golden", "transforms"))
  args = parser.parse_args(argv)
  arrays, record = build()
  os.makedirs(args.out, exist_ok=True)
  np.savez_compressed(os.path.join(args.out, "torchvision_transforms.npz"), **arrays)
  with open(os.path.join(args.out, "torchvision_transforms.json"), "w") as f:
    json.dump(record, f, indent=1, sort_keys=True)
    f.write("\n")
  worst = max(s["max_abs"] for s in record["tensor_vs_pil_uint8"].values())
  size = os.path.getsize(os.path.join(args.out, "torchvision_transforms.npz"))
  print(f"wrote {len(arrays)} arrays ({size / 1e3:.0f} kB) to {args.out}; tensor vs PIL "
        f"path: max |diff| {worst * 255:.0f}/255")
  return 0


if __name__ == "__main__":
  sys.exit(main())
