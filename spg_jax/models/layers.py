"""Building blocks shared by the vision models: torch-compatible conv + BatchNorm, pooling,
and the classifier head with its SPG attach points (`ClassifierHeadMixin`).

Everything here works for any number of spatial axes: inputs are channels-last, `[B, *S, C]`
with `S` = (H, W) for images or (L,) for 1-D signals.
"""
from typing import Any, Callable, Dict, Optional

import flax.linen as nn
import jax.numpy as jnp

from spg_jax.spg_model import MAIN_HEAD, Attachment

Dtype = Any

# The kinds of SPG replicas a model can give attachments for.
KINDS = ("hpo", "nas")


def check_kind(kind: Any) -> str:
  """`kind` if it is one of `KINDS`, else a one-line ValueError."""
  if kind not in KINDS:
    raise ValueError(f"kind={kind!r}: must be one of {KINDS}")
  return kind

# torchvision initialises convolutions with kaiming_normal_(mode="fan_out", nonlinearity="relu").
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torch.nn.Linear's default weight init is U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_linear_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_padding(kernel_size: int, dilation: int, num_spatial: int):
  """Symmetric padding `dilation * (k - 1) // 2` per axis, as torch's `padding=` argument.

  Flax's "SAME" pads asymmetrically for even inputs with stride 2; explicit symmetric padding
  keeps feature maps identical to torchvision's, so ported weights give the same outputs.
  """
  pad = dilation * (kernel_size - 1) // 2
  return [(pad, pad)] * num_spatial


def batch_norm(train: bool, dtype: Dtype, scale_init=nn.initializers.ones,
               name: Optional[str] = None) -> nn.BatchNorm:
  """BatchNorm with torch's defaults (momentum 0.1 in torch == 0.9 here, epsilon 1e-5)."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      dtype=dtype, scale_init=scale_init, name=name)


class ConvBN(nn.Module):
  """Convolution without bias, then BatchNorm, then an optional activation.

  Attributes:
    features: output channels.
    kernel_size: kernel extent along every spatial axis.
    strides, dilation, groups: as in torch's ConvNd (groups == channels is depthwise).
    activation: applied after BatchNorm, or None.
    zero_init_scale: start BatchNorm's scale at 0, so the whole unit outputs 0 at init
      (used to make residual branches start as the identity while staying trainable).
  """
  features: int
  kernel_size: int = 3
  strides: int = 1
  dilation: int = 1
  groups: int = 1
  activation: Optional[Callable[[jnp.ndarray], jnp.ndarray]] = nn.relu
  zero_init_scale: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """[B, *S, C_in] -> [B, *S / strides, features]."""
    num_spatial = x.ndim - 2
    x = nn.Conv(self.features, (self.kernel_size,) * num_spatial,
                strides=(self.strides,) * num_spatial,
                padding=torch_padding(self.kernel_size, self.dilation, num_spatial),
                kernel_dilation=(self.dilation,) * num_spatial,
                feature_group_count=self.groups, use_bias=False,
                kernel_init=conv_kernel_init, dtype=self.dtype, name="conv")(x)
    scale_init = nn.initializers.zeros if self.zero_init_scale else nn.initializers.ones
    x = batch_norm(train, self.dtype, scale_init=scale_init, name="bn")(x)
    return x if self.activation is None else self.activation(x)


def global_avg_pool(features: jnp.ndarray) -> jnp.ndarray:
  """[B, *S, C] -> [B, C]: mean over every spatial axis (torch's AdaptiveAvgPool to 1)."""
  return jnp.mean(features, axis=tuple(range(1, features.ndim - 1)))


def flatten(features: jnp.ndarray) -> jnp.ndarray:
  """[B, *S, C] -> [B, prod(S) * C]."""
  return features.reshape(features.shape[0], -1)


def class_token(tokens: jnp.ndarray) -> jnp.ndarray:
  """[B, 1 + N, D] -> [B, D]: the class token of a ViT token sequence."""
  return tokens[:, 0]


class ClassifierHeadMixin:
  """The classifier head of every classifier here: `nn.Dense(num_classes)` named "head".

  Subclasses (Flax modules with `num_classes` and `dtype` fields) build the head in their own
  `__call__` with `self.make_head(name="head")`, so it sits at `params["head"]`; the SPG wrapper
  gets an unbound twin from `spg_head()` and applies it with those same parameters.

  For NAS, subclasses also define `spg_pre_head()` (the parameter-free map from
  `aux["features"]` to the head's input) and `spg_nas_block()` (a factory of one block,
  identity at init); `spg_attachments(kind)` assembles the attachment from these hooks.
  """
  # How the head's weight starts (torch.nn.Linear's default unless a model says otherwise);
  # a staticmethod so that reading it from an instance does not bind `self`.
  head_kernel_init = staticmethod(torch_linear_kernel_init)

  def make_head(self, **kwargs) -> nn.Dense:
    return nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=self.head_kernel_init,
                    **kwargs)

  def spg_head(self) -> nn.Module:
    """A new unbound copy of the head definition (its parameters live at params["head"])."""
    return self.make_head(parent=None)

  def spg_attachments(self, kind: str) -> Dict[str, Attachment]:
    """`{"out": Attachment}` for SPG replicas of `kind` ("hpo" or "nas").

    HPO replicas act on the head's own input (`aux["pre_logits"]`, a vector per sample);
    NAS replicas extend the last feature map (`aux["features"]`) with the model's own block
    kind, so the head needs `spg_pre_head()` (e.g. global average pooling) in front.
    """
    if check_kind(kind) == "hpo":
      attachment = Attachment(head=self.spg_head(), head_path=("head",),
                              feature_key="pre_logits")
    else:
      attachment = Attachment(head=self.spg_head(), head_path=("head",),
                              feature_key="features", pre_head=self.spg_pre_head(),
                              block=self.spg_nas_block())
    return {MAIN_HEAD: attachment}
