"""Temporary SPG modules (Flax linen) and the wrapper that runs base + replicas in ONE apply.

* `HPOReplica`: `h' = Dropout(h; p)`, `h_t = h' + F(h')`, `F` = `depth` Linear(+ReLU) layers
  acting on the last (feature / channel) axis, the last Linear zero-initialised (weight and
  bias), so at initialisation replica t sees cumulative dropout `1 - prod_{k<=t}(1 - p_k)`.
* `NASReplica`: a stack of `depth` residual blocks made by a factory; each block must be the
  identity at initialisation (e.g. its last convolution zero-initialised).
* `SPGModel`: wraps any base model `base(x, *, train) -> (logits, aux)`; reads `h_0 =
  aux[feature_key]`, chains the replicas and applies the base's own head (same parameters) to
  every `h_t`. Train mode returns `[B, T+1, ...]` step logits; eval mode returns the base
  logits as `[B, 1, ...]` and never touches the replicas.

Note on `use_relu` (the reference default): with weight AND bias at zero, the ReLU's input is
exactly 0, where its derivative is 0 (in PyTorch and JAX alike), so `F` receives no gradient
and stays zero: the replica acts as pure dropout, and SPG trains the base model and its head
through the replicas' losses. `use_relu=False` gives the paper's plain residual Linear, which
does learn.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from spg_jax import core

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
    depth: number of Linear(+ReLU) layers in the residual branch; only the last one is
      zero-initialised, because zeroing every layer of a deeper branch would leave all of
      them with zero gradients forever.
    use_relu: follow each Linear with a ReLU (reference behaviour; see the module note).
    dtype: computation dtype (params stay float32).
  """
  rate: float = 0.2
  depth: int = 1
  use_relu: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array, *, train: bool, rate: jax.Array | float | None = None
               ) -> jax.Array:
    """`rate`, when given, overrides `self.rate` and may be a traced value (a controller's
    choice), so changing it never recompiles."""
    h = traced_dropout(self, h, self.rate if rate is None else rate, train)
    branch = h
    for layer in range(self.depth):
      last = layer == self.depth - 1
      init = nn.initializers.zeros if last else nn.initializers.lecun_normal()
      branch = nn.Dense(h.shape[-1], kernel_init=init, bias_init=nn.initializers.zeros,
                        dtype=self.dtype, name=f"linear_{layer}")(branch)
      if self.use_relu:
        branch = nn.relu(branch)
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


def _check_depth(depth: Any) -> int:
  if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
    raise ValueError(f"depth={depth!r}: must be an integer >= 1")
  return depth


def hpo_replicas(num_replicas: int = 3, rate: float | Sequence[float] = 0.2, depth: int = 1,
                 use_relu: bool = True, dtype: Dtype = jnp.float32) -> tuple[HPOReplica, ...]:
  """T HPO replicas; `rate` is one shared rate (reference) or one per replica (paper)."""
  rates = core.validate_rates(rate, num_replicas)
  depth = _check_depth(depth)
  return tuple(HPOReplica(rate=r, depth=depth, use_relu=use_relu, dtype=dtype) for r in rates)


def nas_replicas(num_replicas: int = 3, block: Callable[[], nn.Module] | None = None,
                 depth: int = 1) -> tuple[NASReplica, ...]:
  """T NAS replicas built from `block` (default: `ResidualMLPBlock` for vectors)."""
  core.validate_rates(0.0, num_replicas)  # validates num_replicas
  depth = _check_depth(depth)
  if block is None:
    block = ResidualMLPBlock
  if not callable(block):
    raise ValueError(f"block={block!r}: must be a zero-argument factory returning a module")
  return tuple(NASReplica(block=block, depth=depth) for _ in range(num_replicas))


def _subtree(tree: Any, path: Sequence[str]) -> Any:
  for key in path:
    tree = tree[key]
  return tree


def head_variables(base_variables: dict, head_path: Sequence[str]) -> dict:
  """The head's variables (every collection that has them) inside the base's variables."""
  out = {}
  for collection, tree in base_variables.items():
    try:
      out[collection] = _subtree(tree, head_path)
    except (KeyError, TypeError):
      continue
  if "params" not in out:
    raise ValueError(f"head_path={tuple(head_path)!r}: no such entry in the base model's "
                     f"params (top-level names: {sorted(base_variables.get('params', {}))})")
  return out


def apply_shared_head(head: nn.Module, variables: dict, h: jax.Array,
                      rngs: dict | None = None) -> jax.Array:
  """Applies an unbound head definition with the base's head variables.

  Batch-statistics updates made by the head (BatchNorm in train mode) are discarded: only
  the base pass updates running statistics.
  """
  mutable = [c for c in variables if c != "params"]
  if not mutable:
    return head.apply(variables, h, rngs=rngs)
  return head.apply(variables, h, rngs=rngs, mutable=mutable)[0]


class SPGModel(nn.Module):
  """Base model + T temporary replicas sharing the base's head, in one apply.

  `__call__(x, *, train) -> (step_logits, aux)`: `step_logits` is `[B, T+1, *out]` in train
  mode (step 0 = the base logits) and `[B, 1, *out]` in eval mode. Params: `{"base": <exactly
  the base model's params>, "replicas_0": ..., ...}`; `strip_replicas` returns the first.

  Attributes:
    base: module with `__call__(x, *, train) -> (logits, aux)`.
    head: an unbound copy of the base's head definition (e.g. `nn.Dense(C, parent=None)`);
      it is applied with the base's variables found at `head_path`.
    replicas: from `hpo_replicas(...)` or `nas_replicas(...)`.
    head_path: where the head's variables sit inside the base's variables.
    feature_key: the `aux` entry that holds `h_0` (the head's input for HPO; a feature map
      for NAS, then give `pre_head`).
    pre_head: optional parameter-free function applied to each `h_t` before the head
      (e.g. global average pooling when the replicas act on feature maps).
  """
  base: nn.Module
  head: nn.Module
  replicas: Sequence[nn.Module]
  head_path: Sequence[str] = ("head",)
  feature_key: str = "pre_logits"
  pre_head: Callable[[jax.Array], jax.Array] | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool, replica_rates: jax.Array | None = None
               ) -> tuple[jax.Array, dict]:
    """`replica_rates`: optional `[T]` dropout rates overriding the replicas' own; may be
    traced (an online controller's choice), so changing them never recompiles."""
    logits, aux = self.base(x, train=train)
    if not train:
      return logits[:, None], aux
    if self.feature_key not in aux:
      raise ValueError(f"feature_key={self.feature_key!r}: not among the base model's aux "
                       f"entries {sorted(aux)}")
    variables = head_variables(self.base.variables, self.head_path)
    head = self.head.clone(parent=None)  # a definition, never a child with its own params
    h = aux[self.feature_key]
    steps = [logits]
    for t, replica in enumerate(self.replicas):
      h = replica(h, train=train, rate=None if replica_rates is None else replica_rates[t])
      features = h if self.pre_head is None else self.pre_head(h)
      rngs = {"dropout": self.make_rng("dropout")} if self.has_rng("dropout") else None
      steps.append(apply_shared_head(head, variables, features, rngs).astype(logits.dtype))
    return jnp.stack(steps, axis=1), aux


def strip_replicas(tree: dict) -> dict:
  """Base-model params (or variables) from SPGModel's, dropping every replica.

  Accepts either a params tree (`{"base": ..., "replicas_0": ...}`) or a variables dict of
  collections (`{"params": {...}, "batch_stats": {...}}`); returns the same kind of tree
  with exactly the structure of a base-only `init`.
  """
  if "base" in tree:
    return tree["base"]
  return {collection: sub["base"] for collection, sub in tree.items() if "base" in sub}


def with_base(variables: dict, base_variables: dict) -> dict:
  """SPGModel variables whose base part is replaced by `base_variables` (e.g. a trained
  checkpoint to retrain with SPG); replicas keep their values.

  Args:
    variables: SPGModel variables `{"params": {"base": ..., "replicas_t": ...}, ...}`.
    base_variables: base-model variables `{"params": ..., "batch_stats": ...}` with exactly
      the structure of `strip_replicas(variables)`.
  Raises:
    ValueError if the structures or shapes differ (a checkpoint of another model/config).
  """
  current = strip_replicas(variables)
  expected = jax.tree.structure(current)
  given = jax.tree.structure(base_variables)
  if expected != given:
    raise ValueError("base_variables: tree structure does not match the model "
                     f"(expected collections {sorted(current)}, got {sorted(base_variables)}); "
                     "is it a checkpoint of a different model or config?")
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(current)[0],
                          jax.tree.leaves(base_variables)):
    if jnp.shape(a) != jnp.shape(b):
      raise ValueError(f"base_variables{jax.tree_util.keystr(path)}: shape {jnp.shape(b)} "
                       f"does not match the model's {jnp.shape(a)}")
  out = {collection: dict(tree) for collection, tree in variables.items()}
  for collection, tree in base_variables.items():
    out[collection]["base"] = tree
  return out
