"""ResNet-18/34/50/101 with torchvision's layer shapes (v1.5: Bottleneck stride on the 3x3 conv).

At 1000 classes the parameter counts equal torchvision's: 11,689,512 / 21,797,672 /
25,557,032 / 44,549,160. Parameters: `params["backbone"]` (stem and layer1..layer4) and
`params["head"]` (the classifier, shared with SPG replicas). `bn_running_var` chooses
BatchNorm's running-variance rule ("biased": Flax's, the default; "unbiased": torch's, so that
retraining a converted torchvision checkpoint updates the statistics as torch does).
"""
import functools
from typing import Any, Callable, ClassVar, Dict, Sequence, Tuple, Type

import flax.linen as nn
import jax.numpy as jnp

from spg_jax.models import layers

Dtype = Any


class ResidualBlock(nn.Module):
  """Fields shared by BasicBlock and Bottleneck (works for 2-D and 1-D inputs).

  Attributes:
    planes: width of the block; the output has planes * expansion channels.
    strides: stride of the block's 3x3 conv.
    dilation: dilation of the block's 3x3 conv(s).
    zero_init_last: start the last BatchNorm's scale at 0, so the residual branch outputs 0
      and the block is the identity on non-negative inputs (SPG NAS replicas). The conv before
      it keeps its random init, so the scale receives gradient from the first step; zeroing
      that conv as well would leave both with zero gradient forever.
    bn_running_var: BatchNorm's running-variance rule ("biased": Flax, "unbiased": torch).
  """
  planes: int
  strides: int = 1
  dilation: int = 1
  zero_init_last: bool = False
  dtype: Dtype = jnp.float32
  bn_running_var: str = "biased"
  expansion: ClassVar[int] = 1

  def _conv_bn(self, *args, **kwargs) -> layers.ConvBN:
    return layers.ConvBN(*args, dtype=self.dtype, bn_running_var=self.bn_running_var,
                         **kwargs)

  def _shortcut(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    """Identity, or torchvision's 1x1 ConvBN "downsample" when the shape changes."""
    out_channels = self.planes * self.expansion
    if self.strides == 1 and x.shape[-1] == out_channels:
      return x
    return self._conv_bn(out_channels, 1, self.strides, activation=None,
                         name="downsample")(x, train=train)


class BasicBlock(ResidualBlock):
  """Two 3x3 ConvBN units plus a shortcut (ResNet-18/34)."""

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """[B, *S, C] -> [B, *S / strides, planes]."""
    y = self._conv_bn(self.planes, 3, self.strides, self.dilation, name="conv1")(
        x, train=train)
    y = self._conv_bn(self.planes, 3, 1, self.dilation, activation=None,
                      zero_init_scale=self.zero_init_last, name="conv2")(y, train=train)
    return nn.relu(y + self._shortcut(x, train))


class Bottleneck(ResidualBlock):
  """1x1 -> 3x3 (stride, dilation) -> 1x1 ConvBN units plus a shortcut (ResNet-50/101)."""
  expansion: ClassVar[int] = 4

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """[B, *S, C] -> [B, *S / strides, 4 * planes]."""
    y = self._conv_bn(self.planes, 1, name="conv1")(x, train=train)
    y = self._conv_bn(self.planes, 3, self.strides, self.dilation, name="conv2")(
        y, train=train)
    y = self._conv_bn(self.planes * self.expansion, 1, activation=None,
                      zero_init_scale=self.zero_init_last, name="conv3")(y, train=train)
    return nn.relu(y + self._shortcut(x, train))


class ResNetBackbone(nn.Module):
  """Stem and four stages; returns the feature map of every stage.

  Attributes:
    stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
    block_cls: BasicBlock or Bottleneck.
    stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool) or "cifar" (3x3/1 conv, no pool).
    replace_stride_with_dilation: per stage 2..4, trade the stride for dilation as
      torchvision does (FCN uses (False, True, True): output stride 8).
    bn_running_var: BatchNorm's running-variance rule ("biased": Flax, "unbiased": torch).
  """
  stage_sizes: Sequence[int]
  block_cls: Type[nn.Module]
  stem: str = "imagenet"
  replace_stride_with_dilation: Tuple[bool, bool, bool] = (False, False, False)
  dtype: Dtype = jnp.float32
  bn_running_var: str = "biased"

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> Dict[str, jnp.ndarray]:
    """[B, H, W, 3] -> {"layer1": [B, H/4, W/4, 64 e], ..., "layer4": [B, H/32, W/32, 512 e]}.

    e = block expansion; with the CIFAR stem every map is 4x larger per axis; dilated stages
    keep the previous stage's resolution.
    """
    x = x.astype(self.dtype)
    if self.stem == "imagenet":
      x = layers.ConvBN(64, 7, 2, dtype=self.dtype, bn_running_var=self.bn_running_var,
                        name="stem")(x, train=train)
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    elif self.stem == "cifar":
      x = layers.ConvBN(64, 3, 1, dtype=self.dtype, bn_running_var=self.bn_running_var,
                        name="stem")(x, train=train)
    else:
      raise ValueError(f"Unknown ResNet stem {self.stem!r}; known: 'imagenet', 'cifar'")
    maps = {}
    dilation = 1
    for stage, num_blocks in enumerate(self.stage_sizes):
      strides = 1 if stage == 0 else 2
      previous_dilation = dilation
      if stage > 0 and self.replace_stride_with_dilation[stage - 1]:
        dilation *= strides
        strides = 1
      for i in range(num_blocks):
        # As torchvision: the first block of a dilated stage still uses the old dilation.
        x = self.block_cls(64 * 2**stage, strides=strides if i == 0 else 1,
                           dilation=previous_dilation if i == 0 else dilation,
                           dtype=self.dtype, bn_running_var=self.bn_running_var,
                           name=f"layer{stage + 1}_{i}")(x, train=train)
      maps[f"layer{stage + 1}"] = x
    return maps


class ResNet(layers.ClassifierHeadMixin, nn.Module):
  """ResNet classifier: backbone, global average pool, `head` (Dense).

  `__call__(x [B, H, W, 3], train) -> (logits [B, num_classes], aux)` with aux keys
  "pre_logits" [B, 512 e] (pooled, the head's input), "features" (layer4 map) and "layer3".
  `bn_running_var`: "biased" (Flax's rule, the default) or "unbiased" (torch's).
  """
  stage_sizes: Sequence[int]
  block_cls: Type[nn.Module]
  num_classes: int = 1000
  stem: str = "imagenet"
  dtype: Dtype = jnp.float32
  bn_running_var: str = "biased"
  head_dropout: float = 0.0  # dropout on the head's input in training (layers.head_input)

  def __post_init__(self):
    # Bad settings fail when the model is built, before anything is traced or compiled.
    layers.check_bn_running_var(self.bn_running_var)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool):
    maps = ResNetBackbone(self.stage_sizes, self.block_cls, self.stem, dtype=self.dtype,
                          bn_running_var=self.bn_running_var, name="backbone")(
                              x, train=train)
    pre_logits = layers.global_avg_pool(maps["layer4"])
    logits = self.make_head(name="head")(self.head_input(pre_logits, train))
    return logits, {"pre_logits": pre_logits, "features": maps["layer4"],
                    "layer3": maps["layer3"]}

  def spg_pre_head(self) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """Parameter-free map from aux["features"] to the head's input."""
    return layers.global_avg_pool

  def spg_nas_block(self) -> Callable[[], nn.Module]:
    """Factory of one NAS replica block: this ResNet's own block kind at layer4's width."""
    return functools.partial(self.block_cls, planes=64 * 2**(len(self.stage_sizes) - 1),
                             zero_init_last=True, dtype=self.dtype,
                             bn_running_var=self.bn_running_var)


STAGE_SIZES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def resnet(depth: int, **kwargs) -> ResNet:
  """ResNet-`depth` (18, 34, 50 or 101); kwargs: num_classes, stem, dtype, bn_running_var."""
  block_cls = BasicBlock if depth < 50 else Bottleneck
  return ResNet(STAGE_SIZES[depth], block_cls, **kwargs)
