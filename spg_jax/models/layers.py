"""Building blocks shared by the vision models: torch-compatible conv + BatchNorm, pooling,
and the classifier head with its SPG attach points (`ClassifierHeadMixin`, and
`DropoutClassifierHeadMixin` for torchvision's `classifier = Sequential(Dropout, Linear)`).

BatchNorm's running variance: torch updates `running_var` with the UNBIASED batch variance
(factor n / (n - 1), n = values per channel in the batch), Flax's `nn.BatchNorm` with the
biased one. Models with BatchNorm take `bn_running_var` ("biased", the default, Flax's rule;
"unbiased", torch's rule through `TorchBatchNorm`); both keep Flax's variable names
(`params/.../scale, bias`, `batch_stats/.../mean, var`), so checkpoints are interchangeable.
Retraining a converted torchvision checkpoint with "unbiased" updates the running statistics
exactly as torch would; the normalisation itself (batch statistics in train mode, running
ones in eval mode) is the same under both rules.

Everything here works for any number of spatial axes: inputs are channels-last, `[B, *S, C]`
with `S` = (H, W) for images or (L,) for 1-D signals.
"""
import dataclasses
import math
from typing import Any, Callable, Dict, Optional

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from spg_jax.spg_model import MAIN_HEAD, Attachment

Dtype = Any

# The kinds of SPG replicas a model can give attachments for.
KINDS = ("hpo", "nas")


def check_kind(kind: Any) -> str:
  """`kind` if it is one of `KINDS`, else a one-line ValueError."""
  if kind not in KINDS:
    raise ValueError(f"kind={kind!r}: must be one of {KINDS}")
  return kind

# BatchNorm running-variance rules: Flax's (biased batch variance) and torch's (unbiased).
BN_RUNNING_VAR = ("biased", "unbiased")
# Where SPG attaches to a classifier whose head is torchvision's Sequential(Dropout, Linear):
# after the dropout (the head is the Linear alone) or as the authors' reference code does.
SPG_ATTACH = ("after_dropout", "reference")


def check_bn_running_var(value: Any) -> str:
  """`value` if it is one of `BN_RUNNING_VAR`, else a one-line ValueError."""
  if value not in BN_RUNNING_VAR:
    raise ValueError(f"bn_running_var={value!r}: must be one of {BN_RUNNING_VAR}")
  return value


def check_bn_epsilon(value: Any) -> float:
  """`value` if it is a positive number, else a one-line ValueError."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
    raise ValueError(f"bn_epsilon={value!r}: must be a number > 0 (torch's default 1e-5; "
                     f"EfficientNet 1e-3)")
  return value


def check_spg_attach(value: Any) -> str:
  """`value` if it is one of `SPG_ATTACH`, else a one-line ValueError."""
  if value not in SPG_ATTACH:
    raise ValueError(f"spg_attach={value!r}: must be one of {SPG_ATTACH}")
  return value

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


class TorchBatchNorm(nn.Module):
  """BatchNorm over the last (channel) axis with a choice of running-variance rule.

  The same computation as Flax's `nn.BatchNorm` (statistics in at least float32, one-pass
  variance E[x^2] - E[x]^2 clipped at 0, then `(x - mean) * rsqrt(var + epsilon) * scale +
  bias`) and the same variables (`params`: scale, bias [C]; `batch_stats`: mean, var [C]);
  only the update of `var` in train mode depends on `running_var`:
    "biased":   var <- momentum * var + (1 - momentum) * v            (Flax)
    "unbiased": var <- momentum * var + (1 - momentum) * v * n/(n-1)  (torch)
  with v the biased batch variance and n the number of values per channel (all axes but
  the last: B * H * W for images). The running mean is updated alike under both rules, and
  nothing is updated during `init`, as in Flax. torch's momentum 0.1 is 0.9 here.

  `__call__(x [..., C], use_running_average=None) -> [..., C]`.
  """
  use_running_average: Optional[bool] = None
  momentum: float = 0.9
  epsilon: float = 1e-5
  running_var: str = "unbiased"
  dtype: Optional[Dtype] = None
  scale_init: Callable = nn.initializers.ones
  bias_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jnp.ndarray, use_running_average: Optional[bool] = None
               ) -> jnp.ndarray:
    check_bn_running_var(self.running_var)
    use_running_average = nn.merge_param("use_running_average", self.use_running_average,
                                         use_running_average)
    features = x.shape[-1]
    axes = tuple(range(x.ndim - 1))
    ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
    ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
    if use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      # As Flax: reduce in at least float32 even when computing in bfloat16.
      stats_dtype = jnp.promote_types(self.dtype or jnp.result_type(x), jnp.float32)
      xs = x.astype(stats_dtype)
      mean = xs.mean(axes)
      var = jnp.maximum(0.0, lax.square(xs).mean(axes) - lax.square(mean))
      if not self.is_initializing():
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = (self.momentum * ra_var.value
                        + (1 - self.momentum) * self._update_variance(var, x.shape))
    scale = self.param("scale", self.scale_init, (features,), jnp.float32)
    bias = self.param("bias", self.bias_init, (features,), jnp.float32)
    y = x - mean
    y = y * (lax.rsqrt(var + self.epsilon) * scale)
    y = y + bias
    return jnp.asarray(y, nn.dtypes.canonicalize_dtype(x, scale, bias, dtype=self.dtype))

  def _update_variance(self, var: jnp.ndarray, shape: tuple) -> jnp.ndarray:
    """The batch variance that enters the running average under `running_var`."""
    if self.running_var == "biased":
      return var
    n = math.prod(shape[:-1])
    if n < 2:  # torch refuses to train BatchNorm on one value per channel, too
      raise ValueError(f"bn_running_var='unbiased': needs more than 1 value per channel in "
                       f"a training batch, got input shape {tuple(shape)}")
    return var * (n / (n - 1))


def batch_norm(train: bool, dtype: Dtype, scale_init=nn.initializers.ones,
               name: Optional[str] = None, *, epsilon: float = 1e-5,
               running_var: str = "biased") -> nn.Module:
  """BatchNorm with torch's defaults (momentum 0.1 in torch == 0.9 here, epsilon 1e-5).

  `running_var`: "biased" gives Flax's own `nn.BatchNorm` (so results made before the option
  existed stay bit for bit); "unbiased" gives `TorchBatchNorm`, torch's update rule. Both
  have the same variables. `epsilon`: torchvision's value for the model family (EfficientNet
  uses 1e-3).
  """
  check_bn_epsilon(epsilon)
  if check_bn_running_var(running_var) == "biased":
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=epsilon,
                        dtype=dtype, scale_init=scale_init, name=name)
  return TorchBatchNorm(use_running_average=not train, momentum=0.9, epsilon=epsilon,
                        running_var=running_var, dtype=dtype, scale_init=scale_init,
                        name=name)


class ConvBN(nn.Module):
  """Convolution without bias, then BatchNorm, then an optional activation.

  Attributes:
    features: output channels.
    kernel_size: kernel extent along every spatial axis.
    strides, dilation, groups: as in torch's ConvNd (groups == channels is depthwise).
    activation: applied after BatchNorm, or None.
    zero_init_scale: start BatchNorm's scale at 0, so the whole unit outputs 0 at init
      (used to make residual branches start as the identity while staying trainable).
    bn_epsilon: BatchNorm's epsilon (torch's default 1e-5; EfficientNet 1e-3).
    bn_running_var: BatchNorm's running-variance rule, "biased" (Flax) or "unbiased"
      (torch); see `batch_norm`.
  """
  features: int
  kernel_size: int = 3
  strides: int = 1
  dilation: int = 1
  groups: int = 1
  activation: Optional[Callable[[jnp.ndarray], jnp.ndarray]] = nn.relu
  zero_init_scale: bool = False
  dtype: Dtype = jnp.float32
  bn_epsilon: float = 1e-5
  bn_running_var: str = "biased"

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
    x = batch_norm(train, self.dtype, scale_init=scale_init, name="bn",
                   epsilon=self.bn_epsilon, running_var=self.bn_running_var)(x)
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


def check_head_dropout(rate: Any) -> float:
  """`rate` if it is a number in [0, 1), else a one-line ValueError."""
  if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
    raise ValueError(f"head_dropout={rate!r}: must be a number in [0, 1) (dropout rate on "
                     f"the head's input in training; 0: none)")
  return float(rate)


def head_input_dropout(x: jnp.ndarray, rate: float, train: bool) -> jnp.ndarray:
  """Dropout at `rate` on the head's input `x [B, ..., D]` in train mode (a "dropout" rng is
  needed then); `x` itself, untouched, at rate 0 or in eval mode, so a model with
  `head_dropout=0` computes exactly what it did without the option. Call it inside a
  compact `__call__`: the Dropout module (no variables) belongs to the caller.

  This is the same-budget dropout baseline of the protocol (`spg_jax.protocol_arms`):
  plain dropout exactly where SPG-HPO's replicas drop units (`aux["pre_logits"]`).
  """
  rate = check_head_dropout(rate)
  if rate == 0.0 or not train:
    return x
  return nn.Dropout(rate, deterministic=False)(x)


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

  def head_input(self, pre_logits: jnp.ndarray, train: bool) -> jnp.ndarray:
    """The head's input in this pass: `pre_logits` with the model's `head_dropout` (a
    field of every registry classifier; 0 by default: unchanged) in train mode. The model
    still returns the un-dropped `pre_logits` in aux, where SPG's replicas read it."""
    return head_input_dropout(pre_logits, getattr(self, "head_dropout", 0.0), train)

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


class DropoutDense(nn.Dense):
  """Dropout(rate) on the input, then the Dense: torchvision's `classifier =
  Sequential(Dropout(p), Linear)` as ONE module whose parameters are the Dense's own
  (`kernel`, `bias` directly, so it reads a model's `params["head"]`).

  `__call__(x [..., D], *, deterministic=None) -> [..., features]`; the mode comes from the
  call or, when the call gives none, from the `deterministic` field (Flax's merge_param
  pattern): SPG's wrapper applies shared heads without a mode, only in train mode, with a
  fresh "dropout" rng for every trajectory step, so a copy with `deterministic=False` draws
  its own mask at every step.
  """
  rate: float = 0.0
  deterministic: Optional[bool] = None

  @nn.compact
  def __call__(self, inputs: jnp.ndarray, *, deterministic: Optional[bool] = None
               ) -> jnp.ndarray:
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    inputs = nn.Dropout(self.rate, deterministic=deterministic)(inputs)
    return super().__call__(inputs)


class DropoutClassifierHeadMixin(ClassifierHeadMixin):
  """`ClassifierHeadMixin` for models whose torchvision classifier is Sequential(Dropout(p),
  Linear) (MobileNetV2, EfficientNet), with two ways for SPG to attach.

  Subclasses have the fields `dropout_rate` and `spg_attach`, and put the pooled vector
  before the dropout in `aux["pooled"]` and the head's input (after it) in
  `aux["pre_logits"]`. The model's own forward pass is the same under both settings:
  * "after_dropout" (default): HPO replicas start from `aux["pre_logits"]`, after the base
    model's dropout, and every step goes through the Linear head alone (NAS: the pooled
    replica map, no dropout).
  * "reference" (the authors' PyTorch code): HPO replicas start from `aux["pooled"]`, BEFORE
    the dropout, and every step's prediction goes through the whole classifier, Dropout
    then Linear (`DropoutDense`), with a dropout mask of its own (NAS: the pooled replica
    map, then the whole classifier). Step 0 is the base model's own prediction, with the
    base model's own mask.
  """

  def spg_head(self) -> nn.Module:
    """Unbound copy of the head for SPG: the Dense, or Dropout + Dense ("reference"; train
    mode, since the wrapper runs replicas only in training)."""
    if check_spg_attach(self.spg_attach) == "after_dropout":
      return super().spg_head()
    return DropoutDense(self.num_classes, rate=self.dropout_rate, deterministic=False,
                        dtype=self.dtype, kernel_init=self.head_kernel_init, parent=None)

  def spg_attachments(self, kind: str) -> Dict[str, Attachment]:
    """As `ClassifierHeadMixin.spg_attachments`; with "reference", HPO reads
    `aux["pooled"]` and both kinds share the Dropout + Dense head."""
    attachments = super().spg_attachments(kind)
    if self.spg_attach == "reference" and kind == "hpo":
      attachments = {name: dataclasses.replace(a, feature_key="pooled")
                     for name, a in attachments.items()}
    return attachments
