"""FCNSmall: a CPU-sized fully convolutional segmenter with FCN's structure and attach points.

Made for 64x64 RGB inputs with a handful of classes (procedurally drawn shapes), so the
segmentation code paths of `fcn_resnet50` (two per-pixel heads, an auxiliary loss, dilated
last stage, bilinear upsampling, per-pixel SPG replicas) run in seconds on a laptop CPU.

Backbone: a 3x3/2 ConvBN stem, then one ResNet BasicBlock per stage with widths (16, 32, 64);
stage 2 has stride 2 and stage 3 trades its stride for dilation 2, as FCN's dilated ResNet,
so the output stride is 4 and stages 2 and 3 share one resolution. The receptive field of a
head pixel is 63 px (stem 3, stage 1 +8, stage 2 +12, dilated stage 3 +32, head +8), enough
to see a whole ~30 px shape from its centre. Heads as torchvision's: `head` = FCNHead on
stage 3 (inter channels 64 // 4), `aux_head` = FCNHead on stage 2 (32 // 4); logits are
upsampled bilinearly to the input size. With 6 classes: 89,116 parameters.

SPG: as FCN's (`spg_jax.models.fcn.FCNHeadsMixin`), "out" on aux["features"] and "aux" on
aux["layer2"] with loss weight 0.5; the SPG head copies upsample x4. NAS blocks are
BasicBlocks of the stage they extend.
"""
import functools
from typing import Any, Callable, ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from spg_jax.models import layers
from spg_jax.models.fcn import FCNHead, FCNHeadsMixin, upsample_to
from spg_jax.models.resnet import BasicBlock

Dtype = Any


class FCNSmall(FCNHeadsMixin, nn.Module):
  """`__call__(x [B, H, W, 3], train) -> (logits [B, H, W, num_classes], aux)`.

  aux: "features" = stage-3 map [B, H/4, W/4, widths[2]] (the input of `head`, also
  "pre_logits"), "layer2" = stage-2 map [B, H/4, W/4, widths[1]] (the input of `aux_head`),
  and with aux_loss "aux_logits" [B, H, W, num_classes].

  Attributes:
    num_classes: output classes per pixel.
    widths: channels of the stem and stage 1, stage 2, stage 3.
    aux_loss: build the auxiliary head (torchvision's default for FCN training).
    dropout_rate: dropout inside both heads (FCNHead's 0.1); 0 makes train-mode heads
      deterministic.
    dtype: computation dtype (params stay float32).
    bn_running_var: BatchNorm's running-variance rule, "biased" (Flax's, the default) or
      "unbiased" (torch's), for every BatchNorm including the heads'.
  """
  num_classes: int = 6
  widths: Sequence[int] = (16, 32, 64)
  aux_loss: bool = True
  dropout_rate: float = 0.1
  dtype: Dtype = jnp.float32
  bn_running_var: str = "biased"
  head_dropout: float = 0.0  # dropout on the main head's input map in training

  output_stride: ClassVar[int] = 4
  aux_feature_key: ClassVar[str] = "layer2"

  def __post_init__(self):
    # Bad settings fail when the model is built, before anything is traced or compiled.
    layers.check_bn_running_var(self.bn_running_var)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool):
    if len(self.widths) != 3:
      raise ValueError(f"widths={tuple(self.widths)!r}: must be 3 channel counts "
                       f"(stem and stage 1, stage 2, stage 3)")
    height, width = x.shape[1:3]
    x = x.astype(self.dtype)
    bn = dict(dtype=self.dtype, bn_running_var=self.bn_running_var)
    x = layers.ConvBN(self.widths[0], 3, 2, name="stem", **bn)(x, train=train)
    layer1 = BasicBlock(self.widths[0], name="layer1", **bn)(x, train=train)
    layer2 = BasicBlock(self.widths[1], strides=2, name="layer2", **bn)(layer1, train=train)
    # Dilation instead of a third stride, as FCN: a larger receptive field at stride 4.
    layer3 = BasicBlock(self.widths[2], dilation=2, name="layer3", **bn)(layer2, train=train)
    aux = {"pre_logits": layer3, "features": layer3, "layer2": layer2}
    head_input = layers.head_input_dropout(layer3, self.head_dropout, train)
    logits = upsample_to(self._head(name="head")(head_input, train=train), height, width)
    if self.aux_loss:
      aux["aux_logits"] = upsample_to(
          self._aux_head(name="aux_head")(layer2, train=train), height, width)
    return logits, aux

  def _head(self, **kwargs) -> FCNHead:
    return FCNHead(self.num_classes, self.widths[2] // 4, dropout_rate=self.dropout_rate,
                   dtype=self.dtype, bn_running_var=self.bn_running_var, **kwargs)

  def _aux_head(self, **kwargs) -> FCNHead:
    return FCNHead(self.num_classes, self.widths[1] // 4, dropout_rate=self.dropout_rate,
                   dtype=self.dtype, bn_running_var=self.bn_running_var, **kwargs)

  def spg_nas_blocks(self) -> tuple[Callable[[], nn.Module], Callable[[], nn.Module]]:
    """NAS block factories for "out" and "aux": BasicBlocks as stage 3 (dilation 2) and
    stage 2, identity at init on their non-negative (post-ReLU) maps."""
    return (functools.partial(BasicBlock, self.widths[2], dilation=2, zero_init_last=True,
                              dtype=self.dtype, bn_running_var=self.bn_running_var),
            functools.partial(BasicBlock, self.widths[1], zero_init_last=True,
                              dtype=self.dtype, bn_running_var=self.bn_running_var))
