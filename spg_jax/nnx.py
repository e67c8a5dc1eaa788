"""SPG for Flax NNX models: HPO replicas as an `nnx.Module`, one optimizer for both.

Any NNX model that lets you compute its head input `h0 [B, ..., D]` and call its head
(`model.head(h)`) can be retrained with SPG:

    replicas = spg_jax.nnx.SPGReplicas(D, num_replicas=3, rate=0.2, rngs=nnx.Rngs(1))
    trainable, optimizer = spg_jax.nnx.spg_optimizer(model, replicas, optax.adam(1e-3))

    def loss_fn(trainable):
      h0 = trainable.model.features(x)                    # the model's head input
      steps = spg_jax.nnx.spg_step_logits(trainable.replicas, trainable.model.head, h0)
      return spg_jax.classification_spg_loss(steps, y, (0.4, 0.2, 0.1))  # [B, T+1, C]

    (loss, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True)(trainable)
    optimizer.update(trainable, grads)                    # base and replicas, one state
    model = trainable.drop_replicas()                     # afterwards: the base model

The replicas are the paper's (and `spg_jax.HPOReplica`'s): `h' = Dropout(h_{t-1}; p_t)`,
`h_t = h' + F(h')`, `F` = `depth` Linear layers on the last axis, the last one
zero-initialised, so step t sees cumulative dropout at initialisation; `use_relu=True` is
the authors' replica, which can never learn and is built as parameter-free dropout. Replica
t's dropout mask is `jax.random.bernoulli(fold_in(key, t), 1 - p_t, h.shape)` (inverted
dropout), `key` drawn from the replicas' own `rngs.dropout` stream unless given.

BatchNorm in the head (`head_batch_stats`, as `spg.head_batch_stats` for linen models):
the head is called in the mode it is in (train mode normalises with the batch's
statistics); "base" (default) keeps its running statistics as the base pass left them, so
replica passes never update them (they are saved before the replica passes and put back
after); "every_step" lets every call update them in order (base, then replica 1..T), as the
authors' PyTorch code does.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from spg_jax import validation
from spg_jax.functional import resolve_rates
from spg_jax.replicas import check_bool
from spg_jax.spg_model import check_head_batch_stats

Array = jax.Array


def _dropout(h: Array, rate: Any, key: Array) -> Array:
  """Inverted dropout whose rate may be traced. `h [...]` -> same shape."""
  if isinstance(rate, (int, float)) and rate == 0.0:
    return h
  rate = jnp.asarray(rate, jnp.float32)
  keep = jax.random.bernoulli(key, 1.0 - rate, h.shape)
  return jnp.where(keep, h / (1.0 - rate).astype(h.dtype), jnp.zeros_like(h))


class SPGReplicas(nnx.Module):
  """T temporary HPO replicas for features of width `features` (NNX).

  Args:
    features: feature width D of the head input `[B, ..., D]`.
    num_replicas: T >= 1.
    rate: one shared dropout rate or one per replica, each in [0, 1).
    depth: Linear layers per replica (the last zero-initialised).
    use_relu: the authors' replica: parameter-free dropout (see `spg_jax.replicas`).
    rngs: `nnx.Rngs`; `params` initialises the Linear layers, `dropout` (or the default
      stream) draws each call's dropout key.
  """

  def __init__(self, features: int, num_replicas: int = 3, rate: Any = 0.2, *,
               depth: int = 1, use_relu: bool = False, rngs: nnx.Rngs):
    if isinstance(features, bool) or not isinstance(features, int) or features < 1:
      raise ValueError(f"features={features!r}: must be a positive integer (the width D)")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
      raise ValueError(f"depth={depth!r}: must be an integer >= 1")
    self.rates = validation.validate_rates(rate, num_replicas)
    self.use_relu = check_bool(use_relu, "use_relu")
    self.num_replicas = num_replicas
    layers = []
    for _ in range(num_replicas if not self.use_relu else 0):
      layers.append(nnx.List([
          nnx.Linear(features, features, rngs=rngs,
                     kernel_init=(nnx.initializers.zeros if k == depth - 1
                                  else nnx.initializers.lecun_normal()),
                     bias_init=nnx.initializers.zeros)
          for k in range(depth)]))
    self.layers = nnx.List(layers)
    self.rngs = rngs

  def __call__(self, h: Array, *, train: bool = True, rates: Any = None,
               key: Array | None = None) -> list[Array]:
    """`[h_1, ..., h_T]`, each `[B, ..., D]`, from the head input `h [B, ..., D]`.

    `rates`: optional `[]` / `[T]` rates overriding `self.rates`; may be traced.
    `train=False` turns dropout off (the Linear layers still apply)."""
    train = check_bool(train, "train")
    rates = self.rates if rates is None else resolve_rates(rates, self.num_replicas)
    if train and key is None:
      key = self.rngs.dropout()
    out = []
    for t in range(self.num_replicas):
      if train:
        h = _dropout(h, rates[t], jax.random.fold_in(key, t))
      if not self.use_relu:
        branch = h
        for layer in self.layers[t]:
          branch = layer(branch)
        h = h + branch
      out.append(h)
    return out


def spg_step_logits(replicas: SPGReplicas, head: Callable[[Array], Any], h0: Array, *,
                    train: bool = True, base_logits: Any = None, rates: Any = None,
                    key: Array | None = None, head_batch_stats: str = "base") -> Any:
  """The T+1 step outputs of an NNX model's head: `[B, T+1, ...]` (step 0 = base).

  Args:
    replicas: `SPGReplicas`.
    head: the model's own head (an `nnx.Module` or any callable `h -> logits`); with
      BatchNorm inside, see `head_batch_stats`.
    h0: `[B, ..., D]` the head's input from the model's forward pass.
    train: False returns `head(h0)` as `[B, 1, ...]` (the replicas are not used).
    base_logits: step 0 when the forward pass already applied the head (else `head(h0)`
      is called here, as the base pass).
    rates, key: see `SPGReplicas.__call__`.
    head_batch_stats: "base" (default): replica passes leave the head's `nnx.BatchStat`
      variables as the base pass left them; "every_step": every pass updates them.
  Returns:
    A pytree like `head`'s output, every leaf `[B, T+1, ...]`.
  """
  check_head_batch_stats(head_batch_stats)
  train = check_bool(train, "train")
  base = head(h0) if base_logits is None else base_logits
  if not train:
    return jax.tree.map(lambda o: o[:, None], base)
  keep_stats = head_batch_stats == "base" and isinstance(head, nnx.Module)
  # A copy of the values: `nnx.state` holds the live variables, which the passes change.
  saved = jax.tree.map(lambda a: a, nnx.state(head, nnx.BatchStat)) if keep_stats else None
  steps = [base] + [head(h) for h in replicas(h0, train=True, rates=rates, key=key)]
  if keep_stats:
    nnx.update(head, saved)
  return jax.tree.map(lambda *leaves: jnp.stack(leaves, axis=1), *steps)


class SPGTrainable(nnx.Module):
  """The base model and its temporary replicas in one module, so that one optimizer (one
  optax state) updates both; `drop_replicas()` gives back the base model."""

  def __init__(self, model: nnx.Module, replicas: SPGReplicas):
    self.model = model
    self.replicas = replicas

  def drop_replicas(self) -> nnx.Module:
    """The base model, with exactly its own parameters (the replicas are discarded)."""
    return self.model


def spg_optimizer(model: nnx.Module, replicas: SPGReplicas,
                  tx: Any, *, wrt: Any = nnx.Param) -> tuple[SPGTrainable, nnx.Optimizer]:
  """`(trainable, optimizer)`: `SPGTrainable(model, replicas)` and one `nnx.Optimizer`
  over it (`optimizer.update(trainable, grads)` with `grads = nnx.grad(loss)(trainable)`).
  After training, `trainable.drop_replicas()` (or just `model`, updated in place)."""
  if not isinstance(replicas, SPGReplicas):
    raise ValueError(f"replicas: expected spg_jax.nnx.SPGReplicas, got "
                     f"{type(replicas).__name__}")
  trainable = SPGTrainable(model, replicas)
  return trainable, nnx.Optimizer(trainable, tx, wrt=wrt)
