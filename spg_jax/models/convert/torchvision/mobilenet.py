"""torchvision MobileNetV2 (`mobilenet_v2-*.pth`) -> `mobilenet_v2`.

Each torch `Conv2dNormActivation` is `[conv, bn, ReLU6]`; the blocks' `conv` lists are
`[(expand), depthwise, project conv, project bn]`:
  features.0.{0, 1}                  -> stem/{conv, bn}
  features.{i+1}.conv.0.{0, 1}       -> block{i}/expand      (not in block0: expansion 1)
  features.{i+1}.conv.{e}.{0, 1}     -> block{i}/depthwise   (e = 0 in block0, else 1)
  features.{i+1}.conv.{e+1, e+2}     -> block{i}/project/{conv, bn}
  features.18.{0, 1}                 -> last_conv
  classifier.1                       -> head                 (classifier.0 is Dropout)
"""
import re
from typing import Optional, Tuple

from spg_jax.models import mobilenet
from spg_jax.models.convert import common

_BLOCK = re.compile(r"block(\d+)")
# The expansion ratio of every block, in order (block0's is 1: no expand unit).
EXPAND_RATIOS = tuple(t for t, _, n, _ in mobilenet.INVERTED_RESIDUAL_SETTING
                      for _ in range(n))
LAST_CONV_INDEX = len(EXPAND_RATIOS) + 1


def _block_source(collection, index: int, names, shape) -> Optional[common.Source]:
  if index >= len(EXPAND_RATIOS) or not names:
    return None
  prefix = f"features.{index + 1}.conv"
  offset = 0 if EXPAND_RATIOS[index] == 1 else 1
  unit, rest = names[0], names[1:]
  if unit == "expand" and offset:
    return common.conv_bn(collection, rest, shape, f"{prefix}.0.0", f"{prefix}.0.1")
  if unit == "depthwise":
    return common.conv_bn(collection, rest, shape, f"{prefix}.{offset}.0",
                          f"{prefix}.{offset}.1")
  if unit == "project":
    return common.conv_bn(collection, rest, shape, f"{prefix}.{offset + 1}",
                          f"{prefix}.{offset + 2}")
  return None


def source(collection: str, names: Tuple[str, ...],
           shape: common.Shape) -> Optional[common.Source]:
  """The torch key of a leaf of `spg_jax.models.MobileNetV2`."""
  unit, rest = names[0], names[1:]
  if unit == "stem":
    return common.conv_bn(collection, rest, shape, "features.0.0", "features.0.1")
  if unit == "last_conv":
    return common.conv_bn(collection, rest, shape, f"features.{LAST_CONV_INDEX}.0",
                          f"features.{LAST_CONV_INDEX}.1")
  if unit == "head":
    return common.dense(collection, rest, shape, "classifier.1")
  block = _BLOCK.fullmatch(unit)
  if block is not None:
    return _block_source(collection, int(block[1]), rest, shape)
  return None


def model_kwargs(shapes: common.Shapes) -> dict:
  """num_classes from `classifier.1.weight` [num_classes, 1280]."""
  return {"num_classes": common.require(shapes, "classifier.1.weight", 2)[0]}
