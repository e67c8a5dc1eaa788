"""SPG for any JAX model, without the `SPGModel` wrapper.

A project with its own model (Flax linen, NNX, Equinox, plain JAX) needs three things:

    replica_params = spg_jax.init_hpo_replicas(key, width=D, num_replicas=3)
    step_logits = spg_jax.hpo_step_logits(replica_params, h0, head_fn, key, rate=0.2)
    loss, metrics = spg_jax.classification_spg_loss(step_logits, labels, (0.4, 0.2, 0.1))

where `h0 [B, D]` is the input of the model's head in the same forward pass and `head_fn(h)`
applies the model's own head (same parameters). Differentiate the loss with respect to both
the model's params and `replica_params`; drop `replica_params` after training.

The replicas are the paper's residual Linear (it learns). `use_relu=True` gives the authors'
replica, which can never learn (see `spg_jax.replicas`) and is therefore pure dropout
without parameters: `init_hpo_replicas(..., use_relu=True)` returns empty entries.

What must agree between the two calls is carried by `replica_params` itself: the number of
replicas T (its entries), the depth (its Linear layers), the kind (empty entries: the
authors' dropout-only replica) and the feature width; `hpo_step_logits` reads them from
there. Only the dropout rate is given per call, and it may be traced (a controller's
choice under `jit`), as `SPGModel(...)(x, train=True, replica_rates=...)` allows.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from spg_jax import validation
from spg_jax.replicas import HPOReplica, check_bool


def _replica_modules(num_replicas: int, depth: int, use_relu: bool
                     ) -> tuple[HPOReplica, ...]:
  """T `HPOReplica`s (their rate is given at call time, see `resolve_rates`)."""
  if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
    raise ValueError(f"depth={depth!r}: must be an integer >= 1")
  return tuple(HPOReplica(rate=0.0, depth=depth, use_relu=use_relu)
               for _ in range(num_replicas))


def resolve_rates(rate: Any, num_replicas: int) -> tuple[Any, ...]:
  """T per-replica rates: Python floats after `validate_rates`, or, for a traced rate
  (`[]` or `[T]`, e.g. under `jit`), T traced scalars whose values cannot be checked."""
  leaves = rate if isinstance(rate, (list, tuple)) else [rate]
  if not any(isinstance(r, jax.Array) for r in leaves):
    return validation.validate_rates(rate, num_replicas)
  values = jnp.asarray(rate, jnp.float32)
  if values.ndim > 1 or values.size not in (1, num_replicas):
    raise ValueError(f"rate: shape {values.shape}; give one shared rate [] or one per "
                     f"replica [{num_replicas}]")
  try:
    return validation.validate_rates(np.asarray(values), num_replicas)
  except jax.errors.TracerArrayConversionError:
    values = jnp.broadcast_to(values.reshape(-1), (num_replicas,))
    return tuple(values[t] for t in range(num_replicas))


def init_hpo_replicas(key: jax.Array, width: int, num_replicas: int = 3, depth: int = 1,
                      use_relu: bool = False) -> dict:
  """Parameters of T HPO replicas for features of `width`.

  Returns `{"replicas_0": {...}, ..., "replicas_{T-1}": {...}}`, the same structure as the
  replica entries of `SPGModel`'s params (residual branch zero at initialisation; empty
  dicts for `use_relu=True`, the authors' replica, which is pure dropout). T, the depth,
  the kind and the width are read back from this tree by `hpo_step_logits`.
  """
  if isinstance(width, bool) or not isinstance(width, int) or width < 1:
    raise ValueError(f"width={width!r}: must be a positive integer (the feature width D)")
  validation.validate_rates(0.0, num_replicas)  # validates num_replicas
  use_relu = check_bool(use_relu, "use_relu")
  modules = _replica_modules(num_replicas, depth, use_relu)
  keys = jax.random.split(key, num_replicas)
  dummy = jnp.zeros((1, width), jnp.float32)
  return {f"replicas_{t}": dict(m.init(k, dummy, train=False).get("params", {}))
          for t, (m, k) in enumerate(zip(modules, keys))}


def _replica_width(params: dict) -> int:
  return int(params["linear_0"]["kernel"].shape[0])


def _replica_structure(replica_params: Any, use_relu: bool | None) -> tuple[int, int, bool]:
  """(T, depth, use_relu) read from the parameters: empty entries are the parameter-free
  (dropout-only) replicas of `use_relu=True`."""
  names = [f"replicas_{t}" for t in range(len(replica_params) if isinstance(
      replica_params, Mapping) else 0)]
  if not names or sorted(replica_params) != sorted(names):
    got = sorted(replica_params) if isinstance(replica_params, Mapping) else \
        type(replica_params).__name__
    raise ValueError(f"replica_params: expected the tree of init_hpo_replicas "
                     f"('replicas_0'..'replicas_<T-1>'), got {got}")
  depths = {sum(n.startswith("linear_") for n in replica_params[k]) for k in names}
  if len(depths) != 1:
    raise ValueError(f"replica_params: replicas of different depths {sorted(depths)}")
  depth = depths.pop()
  inferred = depth == 0
  if use_relu is not None:
    use_relu = check_bool(use_relu, "use_relu")
    if use_relu != inferred:
      made = "no parameters: pure dropout" if inferred else f"{depth} Linear layer(s)"
      raise ValueError(f"use_relu={use_relu!r}: the replica params were made with "
                       f"use_relu={inferred} ({made}); pass the same value to "
                       f"init_hpo_replicas and hpo_step_logits, or None")
  return len(names), max(depth, 1), inferred


def hpo_step_logits(replica_params: dict, h0: jax.Array,
                    head_fn: Callable[[jax.Array], jax.Array], key: jax.Array | None, *,
                    rate: Any = 0.2, use_relu: bool | None = None,
                    train: bool = True) -> jax.Array:
  """Logits of all T+1 steps from the head input `h0`.

  Args:
    replica_params: from `init_hpo_replicas` (T entries); T, depth, kind and width are
      read from it.
    h0: `[B, *spatial, D]` head input of the base model, from the same forward pass.
    head_fn: `h [B, *spatial, D] -> logits [B, ...]`, the model's own head.
    key: dropout key (typed `jax.random.key`); replica t uses `fold_in(key, t)`.
    rate: dropout rate(s), one shared or one per replica: Python floats (checked to be in
      [0, 1)) or a JAX array `[]` / `[T]`, which may be traced (changing it never
      recompiles; a traced value cannot be checked).
    use_relu: None (default): read from `replica_params` (empty entries: the authors'
      dropout-only replica); a bool is checked against them.
    train: when False, returns only the base logits as `[B, 1, ...]`.
  Returns:
    `[B, T+1, ...]` step logits (step 0 = `head_fn(h0)`).
  """
  train = check_bool(train, "train")
  num_replicas, depth, use_relu = _replica_structure(replica_params, use_relu)
  modules = _replica_modules(num_replicas, depth, use_relu)
  rates = resolve_rates(rate, num_replicas)
  if not use_relu:
    width = _replica_width(replica_params["replicas_0"])
    if h0.shape[-1] != width:
      raise ValueError(f"h0: feature width {h0.shape[-1]} does not match the replicas' "
                       f"width {width} (init_hpo_replicas(width=...))")
  base_logits = head_fn(h0)
  if not train:
    return jax.tree.map(lambda o: o[:, None], base_logits)
  if key is None:
    raise ValueError("key=None: a dropout key is required when train=True")
  steps, h = [base_logits], h0
  for t, module in enumerate(modules):
    h = module.apply({"params": replica_params[f"replicas_{t}"]}, h, train=True,
                     rate=rates[t], rngs={"dropout": jax.random.fold_in(key, t)})
    steps.append(head_fn(h))
  return jax.tree.map(lambda *leaves: jnp.stack(leaves, axis=1), *steps)
