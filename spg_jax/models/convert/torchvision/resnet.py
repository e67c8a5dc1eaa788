"""torchvision ResNet-18/34/50/101 (and timm's `resnet*.tv_in1k`, same keys) -> `resnet*`.

  conv1, bn1                          -> backbone/stem/{conv, bn}
  layer{s}.{b}.conv{j}, .bn{j}        -> backbone/layer{s}_{b}/conv{j}/{conv, bn}
  layer{s}.{b}.downsample.{0, 1}      -> backbone/layer{s}_{b}/downsample/{conv, bn}
  fc                                  -> head
BatchNorm running statistics go to `batch_stats`; `num_batches_tracked` is dropped.
"""
import re
from typing import Optional, Tuple

from spg_jax.models.convert import common

_BLOCK = re.compile(r"layer(\d+)_(\d+)")
_CONV = re.compile(r"conv(\d+)")


def backbone_source(collection: str, names: Tuple[str, ...], shape: common.Shape,
                    prefix: str = "") -> Optional[common.Source]:
  """A leaf of `ResNetBackbone` (names below "backbone") from torch keys under `prefix`."""
  if not names:
    return None
  unit, rest = names[0], names[1:]
  if unit == "stem":
    return common.conv_bn(collection, rest, shape, prefix + "conv1", prefix + "bn1")
  block = _BLOCK.fullmatch(unit)
  if block is None or not rest:
    return None
  torch_block = f"{prefix}layer{block[1]}.{block[2]}"
  if rest[0] == "downsample":
    return common.conv_bn(collection, rest[1:], shape, f"{torch_block}.downsample.0",
                          f"{torch_block}.downsample.1")
  conv = _CONV.fullmatch(rest[0])
  if conv is None:
    return None
  return common.conv_bn(collection, rest[1:], shape, f"{torch_block}.conv{conv[1]}",
                        f"{torch_block}.bn{conv[1]}")


def source(collection: str, names: Tuple[str, ...],
           shape: common.Shape) -> Optional[common.Source]:
  """The torch key of a leaf of `spg_jax.models.ResNet`."""
  if names[:1] == ("backbone",):
    return backbone_source(collection, names[1:], shape)
  if names[:1] == ("head",):
    return common.dense(collection, names[1:], shape, "fc")
  return None


def model_kwargs(shapes: common.Shapes) -> dict:
  """num_classes from `fc.weight` [num_classes, features]."""
  return {"num_classes": common.require(shapes, "fc.weight", 2)[0]}
