"""Temporary SPG modules (Flax linen): HPO (adaptive dropout) and NAS (extra depth) replicas.

* `HPOReplica`: `h' = Dropout(h; p)`, `h_t = h' + F(h')`, `F` = `depth` Linear layers acting
  on the last (feature / channel) axis, the last one zero-initialised (weight and bias), so
  at initialisation replica t sees cumulative dropout `1 - prod_{k<=t}(1 - p_k)`. This is
  the paper's equation and the default (`use_relu=False`); its Linear layers learn.
* `HPOReplica(use_relu=True)`: the authors' code's replica, whose branch ends in a ReLU
  after the zero-initialised Linear. The ReLU's input is then exactly 0, where its
  derivative is 0 (in PyTorch and JAX alike), so no parameter of the branch ever receives a
  gradient and `F` stays 0 for ever: the replica IS dropout, `h_t = Dropout(h; p)`, and SPG
  trains only the base model and its head through the replicas' losses. Since such
  parameters could never move, they are not created: the module has no parameters (and
  costs no memory or optimizer state), with exactly the same outputs and gradients.
* `NASReplica`: a stack of `depth` residual blocks made by a factory; each block must be the
  identity at initialisation (e.g. its last convolution zero-initialised).
The wrapper that runs them with a base model's shared head is `spg_jax.spg_model.SPGModel`.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from spg_jax import validation

Dtype = Any


def traced_dropout(module: nn.Module, h: jax.Array, rate: jax.Array | float, train: bool
                   ) -> jax.Array:
  """Inverted dropout whose rate may be a tracer (flax's `nn.Dropout` needs a Python float).

  Uses `module`'s `'dropout'` rng stream. `h [...]` -> same shape.
  """
  if not train:
    return h
  if isinstance(rate, (int, float)) and rate == 0.0:
    return h
  rate = jnp.asarray(rate, jnp.float32)
  keep = jax.random.bernoulli(module.make_rng("dropout"), 1.0 - rate, h.shape)
  return jnp.where(keep, h / (1.0 - rate).astype(h.dtype), jnp.zeros_like(h))


class HPOReplica(nn.Module):
  """Adaptive-dropout replica. `__call__(h [..., D], *, train) -> [..., D]`.

  Attributes:
    rate: dropout rate in [0, 1).
    depth: number of Linear layers in the residual branch (no activation between them, as
      the paper's equation has none); only the last one is zero-initialised, because
      zeroing every layer of a deeper branch would leave all of them with zero gradients
      forever.
    use_relu: the authors' replica (a ReLU after each Linear). Its zero-initialised branch
      can never receive a gradient, so it is built as pure dropout, without parameters
      (see the module note). False (default): the paper's residual Linear, which learns.
    dtype: computation dtype (params stay float32).
  """
  rate: float = 0.2
  depth: int = 1
  use_relu: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array, *, train: bool, rate: jax.Array | float | None = None
               ) -> jax.Array:
    """`rate`, when given, overrides `self.rate` and may be a traced value (a controller's
    choice), so changing it never recompiles. `h` may also be a mapping with
    `"hidden_states" [B, T, D]` and a mask riding along (sequence features, e.g.
    wav2vec2's frames): only the states are perturbed, per frame."""
    if isinstance(h, Mapping):
      return {**h, "hidden_states": self._perturb(h["hidden_states"], train, rate)}
    return self._perturb(h, train, rate)

  def _perturb(self, h: jax.Array, train: bool, rate: Any) -> jax.Array:
    h = traced_dropout(self, h, self.rate if rate is None else rate, train)
    if self.use_relu:
      # h + relu(0 @ h + 0) == h, and the branch's gradient is 0 for ever: pure dropout.
      return h
    branch = h
    for layer in range(self.depth):
      last = layer == self.depth - 1
      init = nn.initializers.zeros if last else nn.initializers.lecun_normal()
      branch = nn.Dense(h.shape[-1], kernel_init=init, bias_init=nn.initializers.zeros,
                        dtype=self.dtype, name=f"linear_{layer}")(branch)
    return h + branch


class ResidualMLPBlock(nn.Module):
  """NAS block for vectors: `h + Dense_zero(relu(Dense(h)))`, identity at init. `[..., D]`."""
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array, *, train: bool) -> jax.Array:
    del train
    width = h.shape[-1]
    branch = nn.relu(nn.Dense(width, dtype=self.dtype)(h))
    branch = nn.Dense(width, kernel_init=nn.initializers.zeros, dtype=self.dtype)(branch)
    return h + branch


class ResidualConvBlock(nn.Module):
  """NAS block for feature maps `[B, *spatial, C]`: `h + Conv_zero(relu(Conv(h)))`."""
  kernel_size: int = 3
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array, *, train: bool) -> jax.Array:
    del train
    channels, spatial = h.shape[-1], h.ndim - 2
    kernel = (self.kernel_size,) * spatial
    branch = nn.relu(nn.Conv(channels, kernel, dtype=self.dtype)(h))
    branch = nn.Conv(channels, kernel, kernel_init=nn.initializers.zeros,
                     dtype=self.dtype)(branch)
    return h + branch


class NASReplica(nn.Module):
  """Extra-depth replica: `depth` blocks from `block()`, each identity at initialisation.

  Attributes:
    block: zero-argument factory returning a module `(h, *, train) -> h'` of h's shape.
    depth: number of blocks.
  """
  block: Callable[[], nn.Module]
  depth: int = 1

  @nn.compact
  def __call__(self, h: jax.Array, *, train: bool, rate: Any = None) -> jax.Array:
    del rate  # NAS replicas have no dropout; accepted so SPGModel treats both kinds alike
    for _ in range(self.depth):
      h = self.block()(h, train=train)
    return h


def check_bool(value: Any, field: str) -> bool:
  """`value` if it is a bool, else a one-line ValueError: a string such as "False" is
  truthy, so accepting it would silently select the other behaviour."""
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{field}={value!r}: must be True or False (a bool)")
  return bool(value)


def _check_depth(depth: Any) -> int:
  if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
    raise ValueError(f"depth={depth!r}: must be an integer >= 1")
  return depth


def hpo_replicas(num_replicas: int = 3, rate: float | Sequence[float] = 0.2, depth: int = 1,
                 use_relu: bool = False, dtype: Dtype = jnp.float32
                 ) -> tuple[HPOReplica, ...]:
  """T HPO replicas; `rate` is one shared rate (reference) or one per replica (paper);
  `use_relu=True` gives the authors' replica, i.e. parameter-free dropout."""
  rates = validation.validate_rates(rate, num_replicas)
  depth = _check_depth(depth)
  use_relu = check_bool(use_relu, "use_relu")
  return tuple(HPOReplica(rate=r, depth=depth, use_relu=use_relu, dtype=dtype) for r in rates)


def nas_replicas(num_replicas: int = 3, block: Callable[[], nn.Module] | None = None,
                 depth: int = 1) -> tuple[NASReplica, ...]:
  """T NAS replicas built from `block` (default: `ResidualMLPBlock` for vectors)."""
  validation.validate_rates(0.0, num_replicas)  # validates num_replicas
  depth = _check_depth(depth)
  if block is None:
    block = ResidualMLPBlock
  if not callable(block):
    raise ValueError(f"block={block!r}: must be a zero-argument factory returning a module")
  return tuple(NASReplica(block=block, depth=depth) for _ in range(num_replicas))
