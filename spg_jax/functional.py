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
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from spg_jax import validation
from spg_jax.replicas import HPOReplica


def _replica_modules(num_replicas: int, rate: Any, depth: int, use_relu: bool
                     ) -> tuple[HPOReplica, ...]:
  """T `HPOReplica`s after checking rates and depth (one-line errors)."""
  rates = validation.validate_rates(rate, num_replicas)
  if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
    raise ValueError(f"depth={depth!r}: must be an integer >= 1")
  return tuple(HPOReplica(rate=r, depth=depth, use_relu=use_relu) for r in rates)


def init_hpo_replicas(key: jax.Array, width: int, num_replicas: int = 3, depth: int = 1,
                      use_relu: bool = False) -> dict:
  """Parameters of T HPO replicas for features of `width`.

  Returns `{"replicas_0": {...}, ..., "replicas_{T-1}": {...}}`, the same structure as the
  replica entries of `SPGModel`'s params (residual branch zero at initialisation; empty
  dicts for `use_relu=True`, the authors' replica, which is pure dropout).
  """
  if isinstance(width, bool) or not isinstance(width, int) or width < 1:
    raise ValueError(f"width={width!r}: must be a positive integer (the feature width D)")
  modules = _replica_modules(num_replicas, 0.0, depth, use_relu)
  keys = jax.random.split(key, num_replicas)
  dummy = jnp.zeros((1, width), jnp.float32)
  return {f"replicas_{t}": dict(m.init(k, dummy, train=False).get("params", {}))
          for t, (m, k) in enumerate(zip(modules, keys))}


def _replica_width(params: dict) -> int:
  return int(params["linear_0"]["kernel"].shape[0])


def _replica_structure(replica_params: dict, use_relu: bool | None) -> tuple[int, bool]:
  """(depth, use_relu) read from the parameters: empty entries are the parameter-free
  (dropout-only) replicas of `use_relu=True`."""
  first = replica_params["replicas_0"]
  depth = sum(name.startswith("linear_") for name in first)
  inferred = depth == 0
  if use_relu is not None and bool(use_relu) != inferred:
    made = "no parameters: pure dropout" if inferred else f"{depth} Linear layer(s)"
    raise ValueError(f"use_relu={use_relu!r}: the replica params were made with "
                     f"use_relu={inferred} ({made}); pass the same value to "
                     f"init_hpo_replicas and hpo_step_logits, or None")
  return max(depth, 1), inferred


def hpo_step_logits(replica_params: dict, h0: jax.Array,
                    head_fn: Callable[[jax.Array], jax.Array], key: jax.Array | None, *,
                    rate: float | Sequence[float] = 0.2, use_relu: bool | None = None,
                    train: bool = True) -> jax.Array:
  """Logits of all T+1 steps from the head input `h0`.

  Args:
    replica_params: from `init_hpo_replicas` (T entries).
    h0: `[B, *spatial, D]` head input of the base model, from the same forward pass.
    head_fn: `h [B, *spatial, D] -> logits [B, ...]`, the model's own head.
    key: dropout key (typed `jax.random.key`); replica t uses `fold_in(key, t)`.
    rate: dropout rate(s), one shared or one per replica.
    use_relu: None (default): read from `replica_params` (empty entries: the authors'
      dropout-only replica); a bool is checked against them.
    train: when False, returns only the base logits as `[B, 1, ...]`.
  Returns:
    `[B, T+1, ...]` step logits (step 0 = `head_fn(h0)`).
  """
  num_replicas = len(replica_params)
  depth, use_relu = _replica_structure(replica_params, use_relu)
  modules = _replica_modules(num_replicas, rate, depth, use_relu)
  if not use_relu:
    width = _replica_width(replica_params["replicas_0"])
    if h0.shape[-1] != width:
      raise ValueError(f"h0: feature width {h0.shape[-1]} does not match the replicas' "
                       f"width {width} (init_hpo_replicas(width=...))")
  base_logits = head_fn(h0)
  if not train:
    return base_logits[:, None]
  if key is None:
    raise ValueError("key=None: a dropout key is required when train=True")
  steps, h = [base_logits], h0
  for t, module in enumerate(modules):
    h = module.apply({"params": replica_params[f"replicas_{t}"]}, h, train=True,
                     rngs={"dropout": jax.random.fold_in(key, t)})
    steps.append(head_fn(h))
  return jnp.stack(steps, axis=1)
