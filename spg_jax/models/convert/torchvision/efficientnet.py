"""torchvision EfficientNet-V2-M (`efficientnet_v2_m-*.pth`) -> `efficientnet_v2_m`.

Each torch `Conv2dNormActivation` `U` is `[conv, bn, SiLU]` (`U.0`, `U.1`); a block's `block`
list holds its units in order. Stage i = 1..7 is `features.i`, block j in it `features.i.j`:
  features.0                                 -> stem
  FusedMBConv, expansion 1 (stage 1):  block.0                -> stage{i}_{j}/conv
  FusedMBConv (stages 2, 3):           block.{0, 1}           -> stage{i}_{j}/{expand, project}
  MBConv (stages 4..7):                block.0, block.1       -> stage{i}_{j}/{expand, depthwise}
                                       block.2.fc{1, 2}       -> stage{i}_{j}/se/fc{1, 2} (1x1
                                                                 convs with bias)
                                       block.3                -> stage{i}_{j}/project
  features.8                                 -> last_conv
  classifier.1                               -> head                 (classifier.0 is Dropout)
"""
import re
from typing import Optional, Tuple

from spg_jax.models import efficientnet
from spg_jax.models.convert import common

_BLOCK = re.compile(r"stage(\d+)_(\d+)")
STAGES = efficientnet.V2_M_STAGES
LAST_CONV_INDEX = len(STAGES) + 1


def _unit(collection, names, shape, prefix: str) -> Optional[common.Source]:
  return common.conv_bn(collection, names, shape, f"{prefix}.0", f"{prefix}.1")


def source(collection: str, names: Tuple[str, ...],
           shape: common.Shape) -> Optional[common.Source]:
  """The torch key of a leaf of `spg_jax.models.EfficientNet` (V2-M stages)."""
  unit, rest = names[0], names[1:]
  if unit == "stem":
    return _unit(collection, rest, shape, "features.0")
  if unit == "last_conv":
    return _unit(collection, rest, shape, f"features.{LAST_CONV_INDEX}")
  if unit == "head":
    return common.dense(collection, rest, shape, "classifier.1")
  match = _BLOCK.fullmatch(unit)
  if match is None or not rest or not 1 <= int(match[1]) <= len(STAGES):
    return None
  stage, index = int(match[1]), int(match[2])
  kind, expand_ratio = STAGES[stage - 1][0], STAGES[stage - 1][1]
  prefix = f"features.{stage}.{index}.block"
  part, rest = rest[0], rest[1:]
  if kind == "fused":
    units = ("conv",) if expand_ratio == 1 else ("expand", "project")
  else:
    units = (("expand",) if expand_ratio != 1 else ()) + ("depthwise", "se", "project")
  if part not in units:
    return None
  position = units.index(part)
  if part == "se":
    if not rest or rest[0] not in ("fc1", "fc2"):
      return None
    return common.conv(collection, rest[1:], shape, f"{prefix}.{position}.{rest[0]}")
  return _unit(collection, rest, shape, f"{prefix}.{position}")


def model_kwargs(shapes: common.Shapes) -> dict:
  """num_classes from `classifier.1.weight` [num_classes, 1280]."""
  return {"num_classes": common.require(shapes, "classifier.1.weight", 2)[0]}
