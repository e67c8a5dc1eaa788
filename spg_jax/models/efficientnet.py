"""EfficientNet-V2-M in torchvision's layout (54,139,356 parameters at 1000 classes).

torchvision key -> Flax path (`efficientnet_v2_m().state_dict()`, 1120 keys with the 157
`num_batches_tracked`, which have no counterpart). A ConvBN unit `U` of torchvision
(`Conv2dNormActivation`: `U.0` conv, `U.1` BatchNorm) maps to `P/{conv, bn}`:

    U.0.weight [O, I/g, k, k]      -> params      P/conv/kernel [k, k, I/g, O]   transpose(2, 3, 1, 0)
    U.1.weight, U.1.bias [C]       -> params      P/bn/scale, P/bn/bias
    U.1.running_mean, running_var  -> batch_stats P/bn/mean, P/bn/var
    U.1.num_batches_tracked        -> (dropped)

and the model's units and layers are, with stage i = 1..7 (torchvision's `features.i`),
block j = 0 .. n_i - 1 in it (n = 3, 5, 5, 7, 14, 18, 5):

    features.0                                  -> stem                      3x3/2 conv 3 -> 24
    features.1.{j}.block.0                      -> stage1_{j}/conv           FusedMBConv, expand 1
    features.{2,3}.{j}.block.0                  -> stage{i}_{j}/expand       FusedMBConv: 3x3 conv
    features.{2,3}.{j}.block.1                  -> stage{i}_{j}/project      FusedMBConv: 1x1 conv
    features.{4..7}.{j}.block.0                 -> stage{i}_{j}/expand       MBConv: 1x1 conv
    features.{4..7}.{j}.block.1                 -> stage{i}_{j}/depthwise    [C, 1, 3, 3] -> [3, 3, 1, C]
    features.{4..7}.{j}.block.2.fc{1,2}.weight  -> params stage{i}_{j}/se/fc{1,2}/kernel   1x1 conv, transpose(2, 3, 1, 0)
    features.{4..7}.{j}.block.2.fc{1,2}.bias    -> params stage{i}_{j}/se/fc{1,2}/bias
    features.{4..7}.{j}.block.3                 -> stage{i}_{j}/project      MBConv: 1x1 conv
    features.8                                  -> last_conv                 1x1 conv 512 -> 1280
    classifier.1.weight [C, 1280]               -> params head/kernel [1280, C]   .T
    classifier.1.bias                           -> params head/bias
    (classifier.0 is Dropout(0.3); stochastic depth and the SiLUs have no parameters)

Architecture (torchvision 0.29 `efficientnet_v2_m`, `_efficientnet_conf("efficientnet_v2_m")`):
a 3x3/2 ConvBN-SiLU stem, three FusedMBConv stages (a k x k conv expanding by the ratio, then
a 1x1 projection; ratio 1: one k x k conv), four MBConv stages (1x1 expansion, depthwise
k x k, squeeze-excitation with max(1, block input channels // 4) channels, SiLU inside and
sigmoid gate, 1x1 projection), a 1x1 ConvBN-SiLU to 1280, global average pooling, Dropout(0.3)
and the `head` Linear. BatchNorm epsilon 1e-3 (torchvision passes `partial(nn.BatchNorm2d,
eps=1e-03)` for V2), momentum 0.1 (0.9 here). Residual blocks (stride 1, same width) drop their
branch per sample with stochastic depth at rate 0.2 * b / 57 for the b-th block (b = 0..56,
so the first block never drops), in train mode only, from the "dropout" rng. Padding is
torch's symmetric (k - 1) // 2 (`layers.torch_padding`), never "SAME". Inits as torchvision:
convs kaiming-normal (fan_out), BatchNorm scale 1 and bias 0, the Linear U(-1/sqrt(C),
1/sqrt(C)) with C = num_classes and bias 0.

torchvision's IMAGENET1K_V1 weights (`efficientnet_v2_m-dc08266a.pth`, 208 MB): acc@1 85.112,
acc@5 97.156 on ImageNet-1K validation, with the evaluation preprocessing resize to 480
(bilinear, antialiased), centre crop 480, then mean (0.485, 0.456, 0.406) and std (0.229,
0.224, 0.225) on [0, 1] RGB. (The paper's SPG table starts from this checkpoint: 85.112.)

`__call__(x [B, H, W, 3], train) -> (logits [B, num_classes], aux)`: aux "features" =
[B, H/32, W/32, 1280] (the last conv's map), "pooled" = its global average [B, 1280] (before
the dropout), "pre_logits" = after the dropout (the head's input).

SPG: HPO replicas on aux["pre_logits"] (or, with `spg_attach="reference"`, on aux["pooled"]
with every step through Dropout + Linear; see `layers.DropoutClassifierHeadMixin`); NAS
replicas extend aux["features"] with `spg_nas_block()`: an MBConv at 1280 channels with
expansion 1 (depthwise 3x3, squeeze-excitation to 320, 1x1 projection), its projection's
BatchNorm scale at 0 so it is the identity at init: 2,475,840 parameters per block (4.6 % of
the model; expansion 4 would be about 18 M).
"""
import functools
from typing import Any, Callable, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from spg_jax.models import layers
from spg_jax.models.mobilenet import make_divisible

Dtype = Any

# One row per stage: (block kind, expand ratio, kernel, first stride, input channels, output
# channels, blocks), as torchvision's FusedMBConvConfig / MBConvConfig for efficientnet_v2_m.
V2_M_STAGES = (
    ("fused", 1, 3, 1, 24, 24, 3),
    ("fused", 4, 3, 2, 24, 48, 5),
    ("fused", 4, 3, 2, 48, 80, 5),
    ("mbconv", 4, 3, 2, 80, 160, 7),
    ("mbconv", 6, 3, 1, 160, 176, 14),
    ("mbconv", 6, 3, 2, 176, 304, 18),
    ("mbconv", 6, 3, 1, 304, 512, 5),
)
BLOCK_KINDS = ("fused", "mbconv")

# torch.nn.Linear as torchvision's EfficientNet initialises it: U(-1/sqrt(out), 1/sqrt(out)).
_linear_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")


def stochastic_depth_rates(stages: Sequence[Tuple], rate: float) -> Tuple[float, ...]:
  """Per-block stochastic depth rates, rising linearly: block b of N drops at rate * b / N
  (torchvision's `stochastic_depth_prob * stage_block_id / total_stage_blocks`)."""
  total = sum(row[6] for row in stages)
  return tuple(rate * float(b) / total for b in range(total))


def stochastic_depth(x: jnp.ndarray, rate: float, *, train: bool) -> jnp.ndarray:
  """torchvision's `StochasticDepth(rate, "row")`: in train mode each sample's whole tensor
  is zeroed with probability `rate`, the rest scaled by 1 / (1 - rate); the identity in
  eval mode or at rate 0. Uses the "dropout" rng. `[B, ...]` -> same shape."""
  broadcast = tuple(range(1, x.ndim))  # one draw per sample
  return nn.Dropout(rate, broadcast_dims=broadcast, deterministic=not train)(x)


class SqueezeExcitation(nn.Module):
  """x * sigmoid(fc2(silu(fc1(mean_hw(x))))), fc1/fc2 1x1 convs with bias (torchvision's
  `SqueezeExcitation` with SiLU). `[B, H, W, C] -> [B, H, W, C]`."""
  squeeze_channels: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    conv = functools.partial(nn.Conv, kernel_size=(1, 1), padding=layers.torch_padding(1, 1, 2),
                             kernel_init=layers.conv_kernel_init, dtype=self.dtype)
    scale = jnp.mean(x, axis=(1, 2), keepdims=True)
    scale = nn.silu(conv(self.squeeze_channels, name="fc1")(scale))
    scale = nn.sigmoid(conv(x.shape[-1], name="fc2")(scale))
    return x * scale


class _MBBlock(nn.Module):
  """Fields shared by FusedMBConv and MBConv.

  Attributes:
    features: output channels.
    expand_ratio: hidden width = make_divisible(input channels * expand_ratio, 8).
    kernel_size: the spatial (fused or depthwise) conv's kernel.
    strides: its stride (1 or 2).
    stochastic_depth_rate: per-sample drop rate of the residual branch (train mode only).
    zero_init_last: start the projection's BatchNorm scale at 0 (identity at init; SPG NAS).
    bn_epsilon, bn_running_var: BatchNorm's epsilon and running-variance rule.
  """
  features: int
  expand_ratio: float = 1
  kernel_size: int = 3
  strides: int = 1
  stochastic_depth_rate: float = 0.0
  zero_init_last: bool = False
  dtype: Dtype = jnp.float32
  bn_epsilon: float = 1e-3
  bn_running_var: str = "biased"

  def _conv_bn(self, *args, **kwargs) -> layers.ConvBN:
    kwargs.setdefault("activation", nn.silu)
    return layers.ConvBN(*args, dtype=self.dtype, bn_epsilon=self.bn_epsilon,
                         bn_running_var=self.bn_running_var, **kwargs)

  def _project(self, y: jnp.ndarray, train: bool) -> jnp.ndarray:
    return self._conv_bn(self.features, 1, activation=None,
                         zero_init_scale=self.zero_init_last, name="project")(y, train=train)

  def _residual(self, x: jnp.ndarray, y: jnp.ndarray, train: bool) -> jnp.ndarray:
    """y + x with stochastic depth on y when shapes allow a residual, else y."""
    if self.strides == 1 and x.shape[-1] == self.features:
      return stochastic_depth(y, self.stochastic_depth_rate, train=train) + x
    return y


class FusedMBConv(_MBBlock):
  """k x k ConvBN-SiLU expansion (with the stride), 1x1 ConvBN projection; with ratio 1 a
  single k x k ConvBN-SiLU ("conv"). `[B, H, W, C] -> [B, H / s, W / s, features]`."""

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    hidden = make_divisible(x.shape[-1] * self.expand_ratio)
    if hidden != x.shape[-1]:
      y = self._conv_bn(hidden, self.kernel_size, self.strides, name="expand")(x, train=train)
      y = self._project(y, train)
    else:
      y = self._conv_bn(self.features, self.kernel_size, self.strides,
                        zero_init_scale=self.zero_init_last, name="conv")(x, train=train)
    return self._residual(x, y, train)


class MBConv(_MBBlock):
  """1x1 ConvBN-SiLU expansion (skipped at ratio 1), depthwise k x k ConvBN-SiLU (with the
  stride), squeeze-excitation, 1x1 ConvBN projection. `[B, H, W, C] -> [B, H / s, W / s,
  features]`."""

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    hidden = make_divisible(x.shape[-1] * self.expand_ratio)
    y = x
    if hidden != x.shape[-1]:
      y = self._conv_bn(hidden, 1, name="expand")(y, train=train)
    y = self._conv_bn(hidden, self.kernel_size, self.strides, groups=hidden,
                      name="depthwise")(y, train=train)
    y = SqueezeExcitation(max(1, x.shape[-1] // 4), dtype=self.dtype, name="se")(y)
    return self._residual(x, self._project(y, train), train)


BLOCKS = {"fused": FusedMBConv, "mbconv": MBConv}


class EfficientNet(layers.DropoutClassifierHeadMixin, nn.Module):
  """EfficientNet (V2 stage layout): stem, stages of (Fused)MBConv blocks, 1x1 conv to
  `last_channel`, global average pool, Dropout, `head` (Dense).

  Attributes:
    stages: one (kind "fused"/"mbconv", expand ratio, kernel, first stride, input channels,
      output channels, blocks) row per stage; the default is V2-M's.
    last_channel: width of the last 1x1 conv (the head's input).
    num_classes: classifier outputs.
    dropout_rate: the classifier's dropout (V2-M: 0.3).
    stochastic_depth_rate: the last block's rate; block b of N drops at rate * b / N.
    bn_epsilon: BatchNorm epsilon (torchvision's V2: 1e-3).
    bn_running_var: "biased" (Flax's rule, the default) or "unbiased" (torch's; retraining a
      converted torchvision checkpoint with it updates the statistics exactly as torch does).
    spg_attach: "after_dropout" (default) or "reference" (replicas from aux["pooled"], every
      step through Dropout + Linear, as the authors' code does with torchvision's classifier).
    dtype: computation dtype (params stay float32).
  """
  stages: Sequence[Tuple] = V2_M_STAGES
  last_channel: int = 1280
  num_classes: int = 1000
  dropout_rate: float = 0.3
  stochastic_depth_rate: float = 0.2
  bn_epsilon: float = 1e-3
  bn_running_var: str = "biased"
  spg_attach: str = "after_dropout"
  dtype: Dtype = jnp.float32
  head_dropout: float = 0.0  # dropout on the head's input in training (layers.head_input)
  head_kernel_init = staticmethod(_linear_init)

  def __post_init__(self):
    # Bad settings fail when the model is built, before anything is traced or compiled.
    for row in self.stages:
      if len(row) != 7 or row[0] not in BLOCK_KINDS:
        raise ValueError(f"stages: row {tuple(row)!r} must be (kind in {BLOCK_KINDS}, expand "
                         f"ratio, kernel, stride, input channels, output channels, blocks)")
    layers.check_bn_epsilon(self.bn_epsilon)
    layers.check_bn_running_var(self.bn_running_var)
    layers.check_spg_attach(self.spg_attach)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool):
    bn = dict(dtype=self.dtype, bn_epsilon=self.bn_epsilon, bn_running_var=self.bn_running_var)
    x = layers.ConvBN(self.stages[0][4], 3, 2, activation=nn.silu, name="stem", **bn)(
        x.astype(self.dtype), train=train)
    rates = iter(stochastic_depth_rates(self.stages, self.stochastic_depth_rate))
    for stage, (kind, expand_ratio, kernel, stride, _, channels, blocks) in enumerate(
        self.stages, start=1):
      for j in range(blocks):
        x = BLOCKS[kind](channels, expand_ratio, kernel, stride if j == 0 else 1, next(rates),
                         name=f"stage{stage}_{j}", **bn)(x, train=train)
    features = layers.ConvBN(self.last_channel, 1, activation=nn.silu, name="last_conv",
                             **bn)(x, train=train)
    pooled = layers.global_avg_pool(features)
    pre_logits = nn.Dropout(self.dropout_rate, deterministic=not train)(pooled)
    logits = self.make_head(name="head")(self.head_input(pre_logits, train))
    return logits, {"pre_logits": pre_logits, "pooled": pooled, "features": features}

  def spg_pre_head(self) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """Parameter-free map from aux["features"] to the pooled vector (the dropout is left
    out; with spg_attach="reference" the head copy applies it)."""
    return layers.global_avg_pool

  def spg_nas_block(self) -> Callable[[], nn.Module]:
    """Factory of one NAS replica block: an MBConv at `last_channel` (1280) with expansion 1
    and no stochastic depth, identity at init (2,475,840 parameters at 1280 channels)."""
    return functools.partial(MBConv, self.last_channel, expand_ratio=1, kernel_size=3,
                             zero_init_last=True, dtype=self.dtype,
                             bn_epsilon=self.bn_epsilon, bn_running_var=self.bn_running_var)


def efficientnet_v2_m(**kwargs) -> EfficientNet:
  """torchvision's `efficientnet_v2_m` (kwargs: num_classes, dropout_rate,
  stochastic_depth_rate, bn_running_var, spg_attach, dtype, ...)."""
  return EfficientNet(**kwargs)
