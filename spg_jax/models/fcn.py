"""FCN semantic segmentation on a dilated ResNet-50, as torchvision's `fcn_resnet50`.

Backbone: ResNet-50 with replace_stride_with_dilation=(False, True, True) (output stride 8).
Heads: `head` = FCNHead on the 2048-channel layer4 map, `aux_head` = FCNHead on the
1024-channel layer3 map; both give per-pixel logits that are upsampled (bilinear, half-pixel
centres = torch's align_corners=False) to the input size. With 21 classes and the auxiliary
head the parameter count equals torchvision's, 35,322,218.

SPG (`FCNHeadsMixin.spg_attachments`, shared with `FCNSmall`): each head has its own
attachment, "out" on the head's input map aux["features"] (layer4) and, with the auxiliary
head, "aux" on aux["layer3"] with loss weight 0.5 (torchvision's recipe: loss = out + 0.5 *
aux). `bn_running_var` ("biased": Flax, default; "unbiased": torch) reaches every BatchNorm,
the heads' included. The heads' SPG copies (`spg_head`, `spg_aux_head`) run in train mode and upsample by
the output stride, so replica logits line up with the base logits [B, H, W, C] when H and W
are multiples of it (the per-pixel loss then treats every non-ignored pixel as its own
episode). HPO replicas act per pixel on the channel axis; NAS blocks are dilated Bottlenecks
of the stage they extend.
"""
import functools
from typing import Any, Callable, ClassVar, Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from spg_jax.models import layers
from spg_jax.models.resnet import STAGE_SIZES, Bottleneck, ResNetBackbone
from spg_jax.spg_model import MAIN_HEAD, Attachment

Dtype = Any

# The dilated backbone keeps layer3 and layer4 at 1/8 of the input resolution.
OUTPUT_STRIDE = 8


class FCNHead(nn.Module):
  """3x3 ConvBN-ReLU to inter_channels, Dropout(0.1), 1x1 conv (with bias) to classes.

  `__call__(x [B, h, w, C], *, train) -> [B, h * f, w * f, num_classes]`, f = upsample_factor.
  Contains BatchNorm and dropout, so it needs the "batch_stats" collection and, in train
  mode, a "dropout" rng.

  Attributes:
    upsample_factor: bilinear upsampling of the logits; 1 inside FCN (which resizes to the
      input size itself). The SPG copies use the output stride, 8, so that replica logits
      match the base logits (exactly when H and W are multiples of 8).
    train: default mode when `__call__` gets none (Flax's merge_param pattern): the SPG
      copies are fixed to train mode because the wrapper runs replicas only in training and
      calls the head without a mode.
    bn_running_var: BatchNorm's running-variance rule ("biased": Flax, "unbiased": torch).
  """
  num_classes: int
  inter_channels: int
  dropout_rate: float = 0.1
  upsample_factor: int = 1
  train: Optional[bool] = None
  dtype: Dtype = jnp.float32
  bn_running_var: str = "biased"

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: Optional[bool] = None) -> jnp.ndarray:
    train = nn.merge_param("train", self.train, train)
    x = layers.ConvBN(self.inter_channels, 3, dtype=self.dtype,
                      bn_running_var=self.bn_running_var, name="conv_bn")(x, train=train)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Conv(self.num_classes, (1, 1), kernel_init=layers.torch_linear_kernel_init,
                dtype=self.dtype, name="classifier")(x)
    if self.upsample_factor == 1:
      return x
    return upsample_to(x, x.shape[1] * self.upsample_factor, x.shape[2] * self.upsample_factor)


def upsample_to(logits: jnp.ndarray, height: int, width: int) -> jnp.ndarray:
  """Bilinear resize [B, h, w, C] -> [B, height, width, C] (torch align_corners=False)."""
  shape = (logits.shape[0], height, width, logits.shape[-1])
  return jax.image.resize(logits, shape, method="bilinear")


class FCNHeadsMixin:
  """SPG attach points of a segmenter with FCN's two per-pixel heads.

  Subclasses (Flax modules with `num_classes`, `aux_loss` and `dtype` fields) define
  `_head(**kwargs)` and `_aux_head(**kwargs)` (their `FCNHead`s, built in `__call__` with
  `name="head"` / `name="aux_head"`), `spg_nas_blocks()`, and the class constants below.
  """
  output_stride: ClassVar[int] = OUTPUT_STRIDE
  # The aux entry holding the auxiliary head's input (the stage before the last).
  aux_feature_key: ClassVar[str] = "layer3"

  def spg_head(self) -> nn.Module:
    """Unbound copy of `head` for SPG replicas: train mode, logits upsampled by the stride."""
    return self._head(upsample_factor=self.output_stride, train=True, parent=None)

  def spg_aux_head(self) -> nn.Module:
    """Unbound copy of `aux_head` for SPG replicas: train mode, upsampled by the stride."""
    return self._aux_head(upsample_factor=self.output_stride, train=True, parent=None)

  def spg_attachments(self, kind: str) -> Dict[str, Attachment]:
    """`{"out": ..., "aux": ...}` ("aux" only with `aux_loss`) for replicas of `kind`.

    Both heads read their own input maps directly (no `pre_head`): HPO replicas act on the
    channel axis of every pixel, NAS blocks (`spg_nas_blocks()`) extend the map in place.
    """
    nas = layers.check_kind(kind) == "nas"
    out_block, aux_block = self.spg_nas_blocks() if nas else (None, None)
    attachments = {MAIN_HEAD: Attachment(head=self.spg_head(), head_path=("head",),
                                         feature_key="features", block=out_block)}
    if self.aux_loss:
      attachments["aux"] = Attachment(head=self.spg_aux_head(), head_path=("aux_head",),
                                      feature_key=self.aux_feature_key,
                                      output_key="aux_logits", block=aux_block,
                                      loss_weight=0.5)
    return attachments


class FCN(FCNHeadsMixin, nn.Module):
  """FCN-ResNet50. `__call__(x [B, H, W, 3], train) -> (logits [B, H, W, num_classes], aux)`.

  aux: "features" = layer4 map [B, H/8, W/8, 2048] (the input of `head`, also "pre_logits"),
  "layer3" = [B, H/8, W/8, 1024] (the input of `aux_head`), and with aux_loss
  "aux_logits" [B, H, W, num_classes]. `bn_running_var`: "biased" (Flax's rule, the default)
  or "unbiased" (torch's).
  """
  num_classes: int = 21
  aux_loss: bool = True
  dtype: Dtype = jnp.float32
  bn_running_var: str = "biased"
  head_dropout: float = 0.0  # dropout on the main head's input map in training

  def __post_init__(self):
    # Bad settings fail when the model is built, before anything is traced or compiled.
    layers.check_bn_running_var(self.bn_running_var)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool):
    height, width = x.shape[1:3]
    maps = ResNetBackbone(STAGE_SIZES[50], Bottleneck, "imagenet", (False, True, True),
                          dtype=self.dtype, bn_running_var=self.bn_running_var,
                          name="backbone")(x, train=train)
    aux = {"pre_logits": maps["layer4"], "features": maps["layer4"], "layer3": maps["layer3"]}
    head_input = layers.head_input_dropout(maps["layer4"], self.head_dropout, train)
    logits = upsample_to(self._head(name="head")(head_input, train=train), height, width)
    if self.aux_loss:
      aux["aux_logits"] = upsample_to(
          self._aux_head(name="aux_head")(maps["layer3"], train=train), height, width)
    return logits, aux

  def _head(self, **kwargs) -> FCNHead:
    return FCNHead(self.num_classes, 2048 // 4, dtype=self.dtype,
                   bn_running_var=self.bn_running_var, **kwargs)

  def _aux_head(self, **kwargs) -> FCNHead:
    return FCNHead(self.num_classes, 1024 // 4, dtype=self.dtype,
                   bn_running_var=self.bn_running_var, **kwargs)

  def spg_nas_blocks(self) -> tuple[Callable[[], nn.Module], Callable[[], nn.Module]]:
    """NAS block factories for "out" and "aux": Bottlenecks as the stages they extend
    (layer4: 512 planes at dilation 4, layer3: 256 planes at dilation 2), identity at init."""
    def block(planes: int, dilation: int) -> Callable[[], nn.Module]:
      return functools.partial(Bottleneck, planes, dilation=dilation, zero_init_last=True,
                               dtype=self.dtype, bn_running_var=self.bn_running_var)
    return block(512, 4), block(256, 2)
