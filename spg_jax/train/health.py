"""Health of a train step, named: which loss terms, gradients and updates are finite, and
whether the batch obeys its task's rules.

Inside the jitted step (no host sync) `step_health` builds a dict of bool arrays; the loop
fetches it with the other metrics and `first_problem` names the first bad term in a fixed
order: `loss_base`, `loss_replicas[t]`, `loss`, `grad <params path>` for every leaf, then
`updated params/batch_stats`. The batch rules come from the task
(`spg_jax.tasks.base.Task.check_batch`, a dict of bool scalars by batch field).
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

# Keys of the train-step metrics that hold health flags (never logged as scalars).
HEALTH = "health"
BATCH_OK = "batch_ok"


def path_name(path: tuple) -> str:
  """A pytree key path as `"base/head/kernel"`."""
  return jax.tree_util.keystr(path, simple=True, separator="/")


def _all_finite(x: jax.Array) -> jax.Array:
  return jnp.all(jnp.isfinite(x))


def step_health(metrics: Mapping[str, jax.Array], grads: Any, updated: Any
                ) -> dict[str, Any]:
  """Named finiteness flags of one step (bool arrays, in-jit).

  Args:
    metrics: the step's loss metrics (`loss_base` [], `loss_replicas` [T], `loss` []).
    grads: the params' gradients; `updated`: the new params and batch_stats.
  Returns:
    `{"loss_base": [], "loss_replicas": [T], "loss": [], "grads": <params tree of []>,
    "updated": []}`.
  """
  return {"loss_base": jnp.isfinite(metrics["loss_base"]),
          "loss_replicas": jnp.isfinite(metrics["loss_replicas"]),
          "loss": jnp.isfinite(metrics["loss"]),
          "grads": jax.tree.map(_all_finite, grads),
          "updated": jnp.all(jnp.stack([_all_finite(x) for x in jax.tree.leaves(updated)]))}


def is_finite(health: Mapping[str, Any]) -> jax.Array:
  """bool []: every flag of `step_health` is True (works in-jit and on host arrays)."""
  return jnp.all(jnp.stack([jnp.all(f) for f in jax.tree.leaves(health)]))


def named_flags(health: Mapping[str, Any]) -> list[tuple[str, bool]]:
  """The host flags of `step_health` as `(name, ok)` in reporting order."""
  out = [("loss_base", bool(health["loss_base"]))]
  out += [(f"loss_replicas[{t}]", bool(v))
          for t, v in enumerate(np.asarray(health["loss_replicas"]).reshape(-1))]
  out.append(("loss", bool(health["loss"])))
  out += [(f"grad {path_name(path)}", bool(v))
          for path, v in jax.tree_util.tree_flatten_with_path(health["grads"])[0]]
  out.append(("updated params/batch_stats", bool(health["updated"])))
  return out


def first_problem(health: Mapping[str, Any]) -> str | None:
  """The name of the first non-finite term of a fetched `step_health`, or None."""
  for name, ok in named_flags(health):
    if not ok:
      return name
  return None


def first_bad_field(batch_ok: Mapping[str, Any]) -> str | None:
  """The first batch field (sorted) whose task rule failed, or None."""
  for field in sorted(batch_ok):
    if not bool(batch_ok[field]):
      return field
  return None
