"""Evaluation over a whole split: the engine's eval step on every batch, combined as the task
says ("sum": added on device; "concat": real rows gathered on the host), then the task's
metrics. One implementation for the loop's validation/test and for a given checkpoint."""
from __future__ import annotations

from typing import Any, Iterable

import jax
import numpy as np


def evaluate(engine: Any, state: Any, batches: Iterable[dict]) -> dict[str, float]:
  """The task's metrics of `state` over `batches` (one pass over a split, padded batches
  carrying a bool `"mask"`).

  Args:
    engine: a `spg_jax.train.engine.Engine`.
    state: a `TrainState` (only its variables are read).
    batches: sharded batches (e.g. `spg_jax.data.make_iterator(..., num_epochs=1,
      drop_remainder=False)`).
  Returns:
    `{metric name: float}` from `engine.task.eval_metrics`.
  """
  task = engine.task
  if task.eval_reduction == "sum":
    totals = None
    for batch in batches:
      sums = engine.eval_step(state, batch)
      totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    if totals is None:
      raise ValueError("evaluation split: has no batches")
    return task.eval_metrics(jax.tree.map(np.asarray, jax.device_get(totals)))
  rows: list[dict] = []
  for batch in batches:
    out = jax.device_get(engine.eval_step(state, batch))
    keep = np.asarray(out["weights"]) > 0
    rows.append({k: np.asarray(v)[keep] for k, v in out["values"].items()})
  if not rows:
    raise ValueError("evaluation split: has no batches")
  return task.eval_metrics({k: np.concatenate([r[k] for r in rows]) for k in rows[0]})
