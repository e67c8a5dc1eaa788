"""`spg_jax.data.preprocess` against torchvision's transforms (golden outputs).

The fixtures in tests/golden/transforms/ were written by
`experiments/golden/torchvision_transforms.py` (torch 2.14.1, torchvision 0.29.1, Pillow
13.0.0); the test images are regenerated here from their seeds with the same numpy code.
Tolerance: 1/255 per value on the [0, 1] scale (before normalisation); the measured
difference of the PIL path is 0 with the fixtures' Pillow.
"""
import json
import math
import os

import numpy as np
import pytest
from scipy import stats

from experiments.golden import torchvision_transforms as golden
from spg_jax import data
from spg_jax.data import preprocess

FIXTURES = os.path.join(os.path.dirname(__file__), "golden", "transforms")
TOL = 1  # uint8 steps = 1/255 on the [0, 1] scale


@pytest.fixture(scope="module")
def gold():
  with open(os.path.join(FIXTURES, "torchvision_transforms.json")) as f:
    record = json.load(f)
  arrays = dict(np.load(os.path.join(FIXTURES, "torchvision_transforms.npz")))
  return record, arrays


@pytest.fixture(scope="module")
def images(gold):
  record, _ = gold
  return {name: golden.make_image(spec["seed"], tuple(spec["shape"]))
          for name, spec in record["images"].items()}


def _expected(gold, key):
  """torchvision's uint8 output at the stored positions and their stride."""
  record, arrays = gold
  return golden.decode(arrays[key]), record["strides"][key]


def _max_diff(ours, theirs):
  return int(np.abs(ours.astype(np.int64) - theirs.astype(np.int64)).max())


def test_fixture_is_what_the_script_describes(gold):
  record, arrays = gold
  assert record["versions"]["torchvision"].startswith("0.29.1")
  assert set(record["images"]) == set(golden.IMAGES)
  assert {k: tuple(v) for k, v in record["crop_boxes"].items()} == golden.CROP_BOXES
  assert record["hflip_is_column_reversal"] is True
  size = sum(os.path.getsize(os.path.join(FIXTURES, f)) for f in os.listdir(FIXTURES))
  assert size < 1_000_000
  assert len(arrays) == 36


@pytest.mark.parametrize("preset", sorted(golden.EVAL_PRESETS))
def test_eval_presets_equal_torchvision_on_pil_images(gold, images, preset):
  resize, crop = golden.EVAL_PRESETS[preset]
  names = golden.IMAGES if preset == "256_224" else golden.EVAL_480_IMAGES
  worst = {}
  for name in names:
    ours = preprocess.center_crop(preprocess.resize_shorter(images[name], resize), crop)
    assert ours.shape == (crop, crop, images[name].shape[-1])
    theirs, stride = _expected(gold, f"eval_{preset}/{name}")
    worst[name] = _max_diff(ours[::stride, ::stride], theirs)
  # Measured: 0 for every image (Pillow does the resizing on both sides).
  assert max(worst.values()) <= TOL, worst


def test_tensor_path_differs_from_pil_by_at_most_one_step(gold, images):
  # torchvision's uint8-tensor resize (its own antialiased kernel) is not Pillow's; the
  # fixture records by how much: at most 1/255, on 12-18 % of the values (0 when the
  # resize is a no-op).
  record, arrays = gold
  stats_ = record["tensor_vs_pil_uint8"]
  assert max(s["max_abs"] for s in stats_.values()) == pytest.approx(1 / 255)
  assert 0.1 < stats_["eval_256_224/landscape"]["fraction_differing"] < 0.3
  assert stats_["eval_256_224/square256"]["max_abs"] == 0.0
  ours = preprocess.center_crop(preprocess.resize_shorter(images["landscape"], 256), 224)
  tensor = ours.astype(np.int16) + arrays["eval_256_224/landscape/tensor_minus_pil"]
  assert _max_diff(ours, tensor) == 1


def test_normalised_eval_equals_torchvision_float32(gold, images):
  _, arrays = gold
  ours = preprocess.imagenet_eval_image(images["landscape"], 256, 224)
  pos = golden.norm_positions(224, 224)
  theirs = arrays["normalised_256_224/landscape"]
  np.testing.assert_allclose(ours[pos[:, 0], pos[:, 1]], theirs, rtol=0, atol=1e-6)


def test_grey_image_broadcasts_to_three_channels(images):
  grey = images["grey"]
  out = preprocess.imagenet_eval_image(grey)
  rgb = preprocess.imagenet_eval_image(np.repeat(grey, 3, axis=-1))
  assert out.shape == (224, 224, 3)
  np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("name", sorted(golden.CROP_BOXES))
def test_resized_crop_and_flip_equal_torchvision(gold, images, name):
  top, left, h, w = golden.CROP_BOXES[name]
  ours = preprocess.resize(images[name][top:top + h, left:left + w], 224, 224)
  theirs, stride = _expected(gold, f"crop/{name}")
  assert _max_diff(ours[::stride, ::stride], theirs) <= TOL  # measured: 0
  if stride == 1:
    # torchvision's F.hflip reverses the columns (the golden script checks it on every
    # crop: record["hflip_is_column_reversal"]), as ours does.
    assert _max_diff(ours[:, ::-1], theirs[:, ::-1]) <= TOL


def test_train_transform_is_crop_resize_flip_normalise(images):
  # imagenet_train_image = the sampled box, resized, flipped on the next draw, normalised.
  image = images["landscape"]
  rng, replay = np.random.default_rng(5), np.random.default_rng(5)
  out = preprocess.imagenet_train_image(image, rng, crop_size=160)
  top, left, h, w = preprocess.random_resized_crop_box(*image.shape[:2], replay)
  crop = preprocess.resize(image[top:top + h, left:left + w], 160, 160)
  if replay.random() < 0.5:
    crop = crop[:, ::-1]
  np.testing.assert_array_equal(out, preprocess.normalize(preprocess.to_unit(crop)))


def _box_stats(boxes, height, width):
  area = boxes[:, 2] * boxes[:, 3] / (height * width)
  log_ratio = np.log(boxes[:, 3] / boxes[:, 2])
  return area, log_ratio


@pytest.mark.parametrize("height,width", [(500, 375), (224, 224), (300, 1000)])
def test_random_resized_crop_box_distribution_matches_torchvision(gold, height, width):
  _, arrays = gold
  theirs = arrays[f"rrc_boxes/{height}x{width}"].astype(np.int64)
  rng = np.random.default_rng(0)
  ours = np.array([preprocess.random_resized_crop_box(height, width, rng)
                   for _ in range(len(theirs))])
  for boxes in (ours, theirs):
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (h > 0).all() and (w > 0).all()
    assert (top + h <= height).all() and (left + w <= width).all()
  area, log_ratio = _box_stats(ours, height, width)
  # Rounding the sides to pixels moves area and ratio a little outside the ranges.
  assert area.min() > 0.08 * 0.97 and area.max() <= 1.0
  assert np.abs(log_ratio).max() < math.log(4 / 3) + 0.02
  t_area, t_log_ratio = _box_stats(theirs, height, width)
  # Same distribution as torch's sampler (different random streams): two-sample KS tests
  # on area, aspect ratio and the box centre.
  for a, b in [(area, t_area), (log_ratio, t_log_ratio),
               (ours[:, 0] + ours[:, 2] / 2, theirs[:, 0] + theirs[:, 2] / 2),
               (ours[:, 1] + ours[:, 3] / 2, theirs[:, 1] + theirs[:, 3] / 2)]:
    assert stats.ks_2samp(a, b).pvalue > 1e-3


def test_random_resized_crop_falls_back_to_a_centred_clamped_box():
  # 10x1000: no box of >= 8 % of the area with aspect ratio <= 4/3 fits in 10 rows.
  rng = np.random.default_rng(0)
  assert preprocess.random_resized_crop_box(10, 1000, rng) == (0, 493, 10, 13)
  assert preprocess.random_resized_crop_box(1000, 10, rng) == (493, 0, 13, 10)
  # A box that always fits is never the fallback: scale (1, 1) on a 4:3 image = the image.
  assert preprocess.random_resized_crop_box(300, 400, rng, scale=(1.0, 1.0),
                                            ratio=(4 / 3, 4 / 3)) == (0, 0, 300, 400)


def test_center_crop_pads_small_images_as_torchvision():
  # torchvision pads (crop - side) // 2 before and the rest after, with zeros.
  image = np.full((3, 4, 1), 9, np.uint8)
  out = preprocess.center_crop(image, 6)
  assert out.shape == (6, 6, 1)
  np.testing.assert_array_equal(out[..., 0] > 0, np.pad(np.ones((3, 4), bool), ((1, 2), (1, 1))))


def test_shorter_side_size_truncates_like_torchvision():
  assert preprocess.shorter_side_size(333, 517, 256) == (256, 397)  # 397.45
  assert preprocess.shorter_side_size(611, 257, 520) == (1236, 520)  # 1236.26
  assert preprocess.shorter_side_size(611, 257, 256) == (608, 256)  # 608.6: not rounded
  assert preprocess.shorter_side_size(256, 256, 256) == (256, 256)


def test_eval_sizes_reach_the_pipeline_from_preprocess_options(images):
  info = data.dataset_info("imagenet2012", {"eval_resize_size": 480, "eval_crop_size": 480})
  assert info.input_shape == (480, 480, 3) and info.train_features["input"].shape == (224, 224, 3)
  eval_fn, train_fn = data.tfds_sources.transforms(info)
  ex = eval_fn({"image": images["small"], "label": 3})
  assert ex["input"].shape == (480, 480, 3) and ex["label"].shape == () and ex["label"] == 3
  np.testing.assert_array_equal(ex["input"], preprocess.imagenet_eval_image(images["small"],
                                                                            480, 480))
  assert train_fn({"image": images["small"], "label": 3},
                  np.random.default_rng(0))["input"].shape == (224, 224, 3)
  assert preprocess.EVAL_SIZES["efficientnet_v2_m"] == (480, 480)
  with pytest.raises(ValueError, match=r"preprocess.eval_crop=480: not an option.*eval_crop_size"):
    data.dataset_info("imagenet2012", {"eval_crop": 480})
  with pytest.raises(ValueError, match=r"preprocess.eval_crop_size=0: must be a positive"):
    data.dataset_info("imagenet2012", {"eval_crop_size": 0})
  with pytest.raises(ValueError, match=r"'cifar10'; it has no preprocessing options"):
    data.make_source("cifar10", "train", preprocess={"eval_crop_size": 32})


# --- segmentation presets -----------------------------------------------------------------

@pytest.mark.parametrize("name", golden.SEG_EVAL_IMAGES)
def test_segmentation_eval_equals_the_reference_preset(gold, images, name):
  seed, (h, w, _) = golden.IMAGES[name]
  image, label = preprocess.segmentation_eval_pair(images[name], golden.make_label(seed, h, w))
  theirs, stride = _expected(gold, f"seg_eval/{name}/image")
  their_label, _ = _expected(gold, f"seg_eval/{name}/label")
  assert label.shape == their_label.shape and min(label.shape) == 520
  assert _max_diff(image[::stride, ::stride], theirs) <= TOL  # measured: 0
  np.testing.assert_array_equal(label, their_label)


class _Draws:
  """A stand-in generator replaying the golden case's draws (shorter side, flip, crop)."""

  def __init__(self, size, flip, top, left):
    self._ints = [size, top, left]
    self._flip = flip

  def integers(self, low, high):
    value = self._ints.pop(0)
    assert low <= value < high  # the value must be one the real sampler could draw
    return value

  def random(self):
    return 0.0 if self._flip else 0.99


@pytest.mark.parametrize("case", sorted(golden.SEG_TRAIN_CASES))
def test_segmentation_train_equals_the_reference_preset(gold, images, case):
  name, size, flip, top, left = golden.SEG_TRAIN_CASES[case]
  seed, (h, w, _) = golden.IMAGES[name]
  image, label = preprocess.segmentation_train_pair(
      images[name], golden.make_label(seed, h, w), _Draws(size, flip, top, left))
  assert image.shape == (480, 480, 3) and label.shape == (480, 480)
  theirs, stride = _expected(gold, f"seg_train/{case}/image")
  their_label, _ = _expected(gold, f"seg_train/{case}/label")
  assert _max_diff(image[::stride, ::stride], theirs) <= TOL  # measured: 0
  np.testing.assert_array_equal(label, their_label)
  if case == "portrait_260":  # 260 wide: columns 260.. are padding (image 0, label 255)
    assert (label[:, 260:] == 255).all() and (image[:, 260:] == 0).all()


def test_segmentation_train_draws_sizes_in_the_reference_range():
  image, label = np.zeros((40, 60, 3), np.uint8), np.ones((40, 60), np.uint8)
  rng = np.random.default_rng(0)
  sides = set()
  for _ in range(200):
    x, y = preprocess.segmentation_train_pair(image, label, rng, base_size=20, crop_size=16)
    assert x.shape == (16, 16, 3) and y.shape == (16, 16)
    assert set(np.unique(y)) <= {1, 255}
    sides.add(int((y != 255).any(axis=1).sum()))  # rows of image inside the crop
  assert min(sides) < 16  # shorter sides of 10..15 leave padded rows


def test_segmentation_eval_pads_to_a_fixed_size_with_ignored_pixels():
  image = np.full((30, 40, 3), 200, np.uint8)
  label = np.full((30, 40), 7, np.uint8)
  ex = preprocess.SegmentationEval(base_size=24, pad_size=40)(
      {"image": _png(image), "label": _png(label)})
  assert ex["input"].shape == (40, 40, 3) and ex["label"].shape == (40, 40)
  assert ex["input"].dtype == np.float32 and ex["label"].dtype == np.int32
  # 30x40 -> 24x32; the rest is padding: label 255, input 0 (the mean colour).
  assert (ex["label"][:24, :32] == 7).all() and (ex["label"][24:] == 255).all()
  assert (ex["label"][:, 32:] == 255).all() and (ex["input"][24:] == 0).all()
  np.testing.assert_allclose(ex["input"][0, 0], (200 / 255 - np.array(preprocess.IMAGENET_MEAN))
                             / np.array(preprocess.IMAGENET_STD), rtol=1e-6)
  with pytest.raises(ValueError, match=r"eval_pad_size=30: .*24x32.*at least 32"):
    preprocess.SegmentationEval(base_size=24, pad_size=30)(
        {"image": _png(image), "label": _png(label)})


def _png(a):
  import io  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  Image.fromarray(a).save(buf, format="PNG")
  return buf.getvalue()
