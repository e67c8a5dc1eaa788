"""MobileNetV2 in torchvision's layout: 3,504,872 parameters at width 1.0 and 1000 classes.

SPG attaches in one of two ways (`spg_attach`, see `layers.DropoutClassifierHeadMixin`):
"after_dropout" (default) starts HPO replicas from the head's input after the classifier's
Dropout(0.2); "reference" starts them from the pooled 1280-d vector before it and sends every
trajectory step through the whole classifier (Dropout, then Linear) with its own mask, as
the authors' PyTorch code does with torchvision's `classifier`.
"""
import functools
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from spg_jax.models import layers

Dtype = Any

# (expansion t, output channels c, repeats n, first stride s), as in the paper and torchvision.
INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(value: float, divisor: int = 8) -> int:
  """torchvision's _make_divisible: round to a multiple of divisor, never down by >10%."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
  """1x1 expand -> 3x3 depthwise -> 1x1 linear projection, residual when shapes match.

  Attributes:
    features: output channels.
    strides: stride of the depthwise conv.
    expand_ratio: hidden width = round(in_channels * expand_ratio); 1 skips the expansion.
    zero_init_last: start the projection's BatchNorm scale at 0, so the block is the identity
      at init (SPG NAS replicas) while the projection conv still passes gradient to it.
    bn_running_var: BatchNorm's running-variance rule ("biased": Flax, "unbiased": torch).
  """
  features: int
  strides: int = 1
  expand_ratio: int = 6
  zero_init_last: bool = False
  dtype: Dtype = jnp.float32
  bn_running_var: str = "biased"

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """[B, H, W, C] -> [B, H / strides, W / strides, features]."""
    conv_bn = functools.partial(layers.ConvBN, dtype=self.dtype, activation=nn.relu6,
                                bn_running_var=self.bn_running_var)
    hidden = int(round(x.shape[-1] * self.expand_ratio))
    y = x
    if self.expand_ratio != 1:
      y = conv_bn(hidden, 1, name="expand")(y, train=train)
    y = conv_bn(hidden, 3, self.strides, groups=hidden, name="depthwise")(y, train=train)
    y = conv_bn(self.features, 1, activation=None, zero_init_scale=self.zero_init_last,
                name="project")(y, train=train)
    if self.strides == 1 and x.shape[-1] == self.features:
      y = y + x
    return y


class MobileNetV2(layers.DropoutClassifierHeadMixin, nn.Module):
  """MobileNetV2: features, global average pool, Dropout, `head` (Dense).

  `__call__(x [B, H, W, 3], train) -> (logits [B, num_classes], aux)`; aux "features" is the
  [B, H/32, W/32, 1280] map, "pooled" its global average [B, 1280] (before dropout),
  "pre_logits" the pooled vector after dropout (the head's input).

  Attributes:
    num_classes, width_mult, dropout_rate: as torchvision's `mobilenet_v2`.
    bn_running_var: BatchNorm's running-variance rule: "biased" (Flax's, the default) or
      "unbiased" (torch's; retraining a converted torchvision checkpoint with it updates the
      statistics exactly as torch does). The variables are the same under both.
    spg_attach: "after_dropout" (default) or "reference" (the authors' code: replicas from
      aux["pooled"], each step through Dropout + Linear); the base model's own forward pass
      and parameters are the same under both.
  """
  num_classes: int = 1000
  width_mult: float = 1.0
  dropout_rate: float = 0.2
  dtype: Dtype = jnp.float32
  bn_running_var: str = "biased"
  spg_attach: str = "after_dropout"
  head_dropout: float = 0.0  # dropout on the head's input in training (layers.head_input)
  head_kernel_init = staticmethod(nn.initializers.normal(0.01))  # torchvision's choice

  def __post_init__(self):
    # Bad settings fail when the model is built, before anything is traced or compiled.
    layers.check_bn_running_var(self.bn_running_var)
    layers.check_spg_attach(self.spg_attach)
    super().__post_init__()

  @property
  def last_channel(self) -> int:
    return make_divisible(1280 * max(1.0, self.width_mult))

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool):
    x = x.astype(self.dtype)
    bn_running_var = self.bn_running_var
    x = layers.ConvBN(make_divisible(32 * self.width_mult), 3, 2, activation=nn.relu6,
                      dtype=self.dtype, bn_running_var=bn_running_var, name="stem")(
                          x, train=train)
    index = 0
    for expand_ratio, channels, repeats, first_stride in INVERTED_RESIDUAL_SETTING:
      for i in range(repeats):
        x = InvertedResidual(make_divisible(channels * self.width_mult),
                             first_stride if i == 0 else 1, expand_ratio, dtype=self.dtype,
                             bn_running_var=bn_running_var, name=f"block{index}")(
                                 x, train=train)
        index += 1
    features = layers.ConvBN(self.last_channel, 1, activation=nn.relu6, dtype=self.dtype,
                             bn_running_var=bn_running_var, name="last_conv")(x, train=train)
    pooled = layers.global_avg_pool(features)
    pre_logits = nn.Dropout(self.dropout_rate, deterministic=not train)(pooled)
    logits = self.make_head(name="head")(self.head_input(pre_logits, train))
    return logits, {"pre_logits": pre_logits, "pooled": pooled, "features": features}

  def spg_pre_head(self) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """Parameter-free map from aux["features"] to the pooled vector (the dropout is left
    out; with spg_attach="reference" the head copy applies it)."""
    return layers.global_avg_pool

  def spg_nas_block(self) -> Callable[[], nn.Module]:
    """Factory of one NAS replica block: an inverted residual at 1280 channels.

    Expansion 1 (depthwise + projection, about 1.65 M parameters) rather than 6, which would
    add about 20 M parameters per replica, 6x the whole network.
    """
    return functools.partial(InvertedResidual, self.last_channel, expand_ratio=1,
                             zero_init_last=True, dtype=self.dtype,
                             bn_running_var=self.bn_running_var)
