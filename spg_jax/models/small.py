"""Tiny CNNs for the embedded data sets (fast on CPU).

- `CNN1D`: the MNIST-1D paper's CNN (Greydanus, 2020; 94% published): three strided 1-D convs
  with 25 channels, flatten, `head`. Inputs [B, 40, 1].
- `CNN1DWide`: a wider MNIST-1D CNN that converges higher (three 32-channel convs with max
  pooling, a 128-d ReLU feature layer, `head`). Inputs [B, 40, 1].
- `DigitsCNN`: three ConvBN units for sklearn's 8x8 digits, global average pool, `head`.
  Inputs [B, 8, 8, 1].
"""
import functools
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from spg_jax.models import layers
from spg_jax.models.resnet import BasicBlock
from spg_jax.replicas import ResidualMLPBlock

Dtype = Any


class CNN1D(layers.ClassifierHeadMixin, nn.Module):
  """1-D CNN: `__call__(x [B, L, 1], train) -> (logits [B, num_classes], aux)`.

  Convs (kernel, stride, padding) = (5, 2, 1), (3, 2, 1), (3, 2, 1), each with bias and ReLU,
  as the published model; with L = 40 the feature map is [B, 5, channels] and the head reads
  it flattened (positions matter in MNIST-1D, so no pooling).
  """
  num_classes: int = 10
  channels: int = 25
  dtype: Dtype = jnp.float32
  head_dropout: float = 0.0  # dropout on the head's input in training (layers.head_input)

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool):
    # No BatchNorm or dropout in the published model; `train` only matters for head_dropout.
    x = x.astype(self.dtype)
    for i, kernel in enumerate((5, 3, 3)):
      x = nn.relu(nn.Conv(self.channels, (kernel,), strides=(2,), padding=[(1, 1)],
                          kernel_init=layers.torch_linear_kernel_init, dtype=self.dtype,
                          name=f"conv{i + 1}")(x))
    pre_logits = layers.flatten(x)
    logits = self.make_head(name="head")(self.head_input(pre_logits, train))
    return logits, {"pre_logits": pre_logits, "features": x}

  def spg_pre_head(self) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """Parameter-free map from aux["features"] to the head's input."""
    return layers.flatten

  def spg_nas_block(self) -> Callable[[], nn.Module]:
    """Factory of one NAS replica block: a 1-D ResNet BasicBlock, identity at init."""
    return functools.partial(BasicBlock, self.channels, zero_init_last=True, dtype=self.dtype)


class CNN1DWide(layers.ClassifierHeadMixin, nn.Module):
  """Wider 1-D CNN: `__call__(x [B, L, 1], train) -> (logits [B, num_classes], aux)`.

  Three convs (kernel 5, 3, 3; padding "SAME"; `channels` each, bias, ReLU), each followed
  by max pooling of 2 (L = 40 -> 5 positions), flatten, Dense(`features`) + ReLU (the head's
  input: aux "pre_logits" = aux "features" [B, features]), `head`. Trained well it passes
  96% on MNIST-1D (the published CNN1D: 94%), a converged starting point for the protocol.
  """
  num_classes: int = 10
  channels: int = 32
  features: int = 128
  dtype: Dtype = jnp.float32
  head_dropout: float = 0.0  # dropout on the head's input in training (layers.head_input)

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool):
    x = x.astype(self.dtype)
    for i, kernel in enumerate((5, 3, 3)):
      x = nn.relu(nn.Conv(self.channels, (kernel,), padding="SAME",
                          kernel_init=layers.torch_linear_kernel_init, dtype=self.dtype,
                          name=f"conv{i + 1}")(x))
      x = nn.max_pool(x, (2,), strides=(2,))
    x = nn.relu(nn.Dense(self.features, kernel_init=layers.torch_linear_kernel_init,
                         dtype=self.dtype, name="fc")(layers.flatten(x)))
    logits = self.make_head(name="head")(self.head_input(x, train))
    return logits, {"pre_logits": x, "features": x}

  def spg_pre_head(self) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """The features are already the head's input."""
    return lambda h: h

  def spg_nas_block(self) -> Callable[[], nn.Module]:
    """Factory of one NAS replica block: a residual MLP on the feature vector, identity
    at init."""
    return functools.partial(ResidualMLPBlock, dtype=self.dtype)


class DigitsCNN(layers.ClassifierHeadMixin, nn.Module):
  """8x8 digits CNN: `__call__(x [B, 8, 8, 1], train) -> (logits [B, num_classes], aux)`.

  ConvBN 3x3 units with widths (16, 32, 64) and strides (1, 2, 2): features [B, 2, 2, 64],
  whose receptive field covers the whole 8x8 image, so global average pooling loses little.
  `bn_running_var`: BatchNorm's running-variance rule, "biased" (Flax's, the default) or
  "unbiased" (torch's).
  """
  num_classes: int = 10
  widths: tuple = (16, 32, 64)
  dtype: Dtype = jnp.float32
  bn_running_var: str = "biased"
  head_dropout: float = 0.0  # dropout on the head's input in training (layers.head_input)

  def __post_init__(self):
    # Bad settings fail when the model is built, before anything is traced or compiled.
    layers.check_bn_running_var(self.bn_running_var)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool):
    x = x.astype(self.dtype)
    for i, width in enumerate(self.widths):
      x = layers.ConvBN(width, 3, 1 if i == 0 else 2, dtype=self.dtype,
                        bn_running_var=self.bn_running_var, name=f"conv{i + 1}")(
                            x, train=train)
    pre_logits = layers.global_avg_pool(x)
    logits = self.make_head(name="head")(self.head_input(pre_logits, train))
    return logits, {"pre_logits": pre_logits, "features": x}

  def spg_pre_head(self) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """Parameter-free map from aux["features"] to the head's input."""
    return layers.global_avg_pool

  def spg_nas_block(self) -> Callable[[], nn.Module]:
    """Factory of one NAS replica block: a ResNet BasicBlock, identity at init."""
    return functools.partial(BasicBlock, self.widths[-1], zero_init_last=True,
                             dtype=self.dtype, bn_running_var=self.bn_running_var)
