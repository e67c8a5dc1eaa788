"""torchvision FCN-ResNet50 (`fcn_resnet50_coco-*.pth`, COCO_WITH_VOC_LABELS_V1) -> `fcn_resnet50`.

  backbone.<ResNet-50 keys without fc>    -> backbone/... (as ResNet)
  classifier.{0, 1, 4}                    -> head/{conv_bn/conv, conv_bn/bn, classifier}
  aux_classifier.{0, 1, 4}                -> aux_head/...   (indices 2, 3: ReLU, Dropout)
A file without `aux_classifier.*` builds the model without its auxiliary head.
"""
from typing import Optional, Tuple

from spg_jax.models.convert import common
from spg_jax.models.convert.torchvision import resnet

_HEADS = {"head": "classifier", "aux_head": "aux_classifier"}


def source(collection: str, names: Tuple[str, ...],
           shape: common.Shape) -> Optional[common.Source]:
  """The torch key of a leaf of `spg_jax.models.FCN`."""
  unit, rest = names[0], names[1:]
  if unit == "backbone":
    return resnet.backbone_source(collection, rest, shape, prefix="backbone.")
  if unit not in _HEADS or not rest:
    return None
  prefix = _HEADS[unit]
  if rest[0] == "conv_bn":
    return common.conv_bn(collection, rest[1:], shape, f"{prefix}.0", f"{prefix}.1")
  if rest[0] == "classifier":
    return common.conv(collection, rest[1:], shape, f"{prefix}.4")
  return None


def model_kwargs(shapes: common.Shapes) -> dict:
  """num_classes from `classifier.4.weight` [classes, 512, 1, 1]; aux_loss if the file has
  the auxiliary head."""
  num_classes = common.require(shapes, "classifier.4.weight", 4)[0]
  return {"num_classes": num_classes,
          "aux_loss": any(key.startswith("aux_classifier.") for key in shapes)}
