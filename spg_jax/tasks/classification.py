"""Image (or any single-label) classification: top-1 episodes, top-1/top-k accuracy."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from spg_jax.tasks import metrics
from spg_jax.tasks.base import Task, check_int, cross_entropy_sums


@dataclasses.dataclass(frozen=True)
class Classification(Task):
  """One label per example.

  Batch: `input [B, ...]` float, `label [B]` int in [0, num_classes). Model output: logits
  `[B, C]`. A trajectory step is correct when its top-1 class is the label. Eval metrics:
  `accuracy` (top-1, the selection metric), `top{top_k}_accuracy`, `loss` (mean
  cross-entropy, no label smoothing).
  """
  name = "classification"
  selection_metric = "accuracy"
  num_classes: int = 10
  top_k: int = 5

  def __post_init__(self):
    check_int("top_k", self.top_k, 1)

  def eval_batch(self, outputs: jax.Array, batch: Mapping[str, Any], aux: Mapping[str, Any],
                 weights: jax.Array) -> dict[str, jax.Array]:
    del aux
    labels = batch["label"]
    correct = (jnp.argmax(outputs, -1) == labels).astype(jnp.float32)
    top_k = metrics.topk_correct(outputs, labels, self.top_k)
    return {**cross_entropy_sums(outputs, labels, weights),
            "correct": jnp.sum(correct * weights), "top_k_correct": jnp.sum(top_k * weights)}

  def eval_metrics(self, totals: Mapping[str, np.ndarray]) -> dict[str, float]:
    count = max(float(totals["count"]), 1.0)
    return {"accuracy": float(totals["correct"]) / count,
            "loss": float(totals["loss"]) / count,
            f"top{self.top_k}_accuracy": float(totals["top_k_correct"]) / count}
