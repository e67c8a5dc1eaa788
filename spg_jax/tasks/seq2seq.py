"""Per-token sequence prediction (seq2seq decoders, token tagging): every target token is
its own SPG episode; padding is ignored."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from spg_jax.losses import StepTerms, token_terms
from spg_jax.tasks import metrics
from spg_jax.tasks.base import ConfigurableInputs, Task


@dataclasses.dataclass(frozen=True)
class Seq2Seq(ConfigurableInputs, Task):
  """Target tokens per position.

  Batch: the features in `inputs`, `targets [B, L]` int, `target_paddings [B, L]` (1.0 on
  padding). Model output: logits `[B, L, C]`. Each real target token is an episode, correct
  while its top-1 token is the target. Eval metrics: `token_accuracy` (the selection
  metric) and `loss` (mean cross-entropy per real token).
  """
  name = "seq2seq"
  selection_metric = "token_accuracy"
  label_features = ("targets", "target_paddings")
  range_checked_label = "targets"
  num_classes: int = 32
  inputs: tuple[str, ...] = ("input",)

  def terms(self, outputs: jax.Array, batch: Mapping[str, Any], aux: Mapping[str, Any],
            label_smoothing: float = 0.0) -> StepTerms:
    del aux
    return token_terms(outputs, batch["targets"], batch["target_paddings"], label_smoothing)

  def train_metrics(self, outputs: Any, batch: Mapping[str, Any], terms: StepTerms,
                    survival: jax.Array) -> dict[str, jax.Array]:
    del outputs, batch, terms
    return {"token_accuracy": survival[0]}

  def eval_batch(self, outputs: jax.Array, batch: Mapping[str, Any], aux: Mapping[str, Any],
                 weights: jax.Array) -> dict[str, jax.Array]:
    del aux
    targets = batch["targets"]
    token_weights = (1.0 - batch["target_paddings"].astype(jnp.float32)) * weights[:, None]
    sums = metrics.token_accuracy_sums(jnp.argmax(outputs, -1), targets, token_weights)
    losses = optax.softmax_cross_entropy_with_integer_labels(outputs.astype(jnp.float32),
                                                             targets)
    return {**sums, "loss": jnp.sum(losses * token_weights)}

  def eval_metrics(self, totals: Mapping[str, np.ndarray]) -> dict[str, float]:
    count = max(float(totals["count"]), 1.0)
    return {"token_accuracy": float(totals["correct"]) / count,
            "loss": float(totals["loss"]) / count}
