"""Sequence-level tasks of text (GLUE) and audio models: classification and regression.

Both read the model inputs named by `inputs` (token ids, token types and attention masks
for BERT; waveforms for wav2vec2) and one label per sequence.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from spg_jax.losses import StepTerms
from spg_jax.tasks import metrics
from spg_jax.tasks.base import (
    BatchCheck, ConfigurableInputs, Task, all_finite, cross_entropy_sums)

TEXT_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
CLASSIFICATION_METRICS = ("accuracy", "f1", "matthews")
REGRESSION_METRICS = ("pearson", "spearman", "mse")


@dataclasses.dataclass(frozen=True)
class SequenceClassification(ConfigurableInputs, Task):
  """One class per sequence (GLUE's CoLA, SST-2, MRPC, QQP, RTE, MNLI, QNLI; keyword
  spotting).

  Batch: the features in `inputs`, `label [B]` int. Model output: logits `[B, C]`; a step is
  correct when its top-1 class is the label. Eval metrics from the confusion matrix over the
  split: `accuracy`, `f1` (binary: of class 1, as GLUE's MRPC/QQP; else macro), `matthews`
  (CoLA's metric), `loss`; `metric` names the selection metric.
  """
  name = "sequence_classification"
  num_classes: int = 2
  inputs: tuple[str, ...] = TEXT_INPUTS
  metric: str = "accuracy"

  def __post_init__(self):
    super().__post_init__()
    if self.metric not in CLASSIFICATION_METRICS:
      raise ValueError(f"config.task.metric={self.metric!r}: must be one of "
                       f"{list(CLASSIFICATION_METRICS)}")

  @property
  def selection_metric(self) -> str:
    return self.metric

  def eval_batch(self, outputs: jax.Array, batch: Mapping[str, Any], aux: Mapping[str, Any],
                 weights: jax.Array) -> dict[str, jax.Array]:
    del aux
    labels = batch["label"]
    return {**cross_entropy_sums(outputs, labels, weights),
            "confusion": metrics.confusion_matrix(jnp.argmax(outputs, -1), labels,
                                                  self.num_classes, weights)}

  def eval_metrics(self, totals: Mapping[str, np.ndarray]) -> dict[str, float]:
    scores = metrics.classification_metrics(np.asarray(totals["confusion"]))
    return {"accuracy": scores["accuracy"], "f1": scores["f1"],
            "matthews": scores["matthews"],
            "loss": float(totals["loss"]) / max(float(totals["count"]), 1.0)}


@dataclasses.dataclass(frozen=True)
class SequenceRegression(ConfigurableInputs, Task):
  """One real number per sequence (GLUE's STS-B, similarity 0-5), trained with MSE.

  Batch: the features in `inputs`, `label [B]` float. Model output: `[B, 1]` (or `[B]`). SPG
  needs a correct/wrong verdict per step: a step is correct when its absolute error is at
  most `tolerance` (this project's choice; the paper defines correctness only for
  classification-like tasks). Eval metrics over the whole split: `pearson`, `spearman`
  (GLUE's STS-B metrics), `mse`; `metric` names the selection metric (`mse`: lower is
  better).
  """
  name = "sequence_regression"
  eval_reduction = "concat"
  range_checked_label = None  # real-valued: checked finite instead
  num_classes: int = 1
  inputs: tuple[str, ...] = TEXT_INPUTS
  metric: str = "pearson"
  tolerance: float = 0.5

  def __post_init__(self):
    super().__post_init__()
    if self.metric not in REGRESSION_METRICS:
      raise ValueError(f"config.task.metric={self.metric!r}: must be one of "
                       f"{list(REGRESSION_METRICS)}")
    if not self.tolerance > 0:
      raise ValueError(f"config.task.tolerance={self.tolerance!r}: must be a number > 0")

  @property
  def selection_metric(self) -> str:
    return self.metric

  @property
  def selection_mode(self) -> str:
    return "min" if self.metric == "mse" else "max"

  def batch_checks(self) -> tuple[BatchCheck, ...]:
    return super().batch_checks() + (BatchCheck("label", "holds NaN or Inf"),)

  def check_batch(self, batch: Mapping[str, Any]) -> dict[str, jax.Array]:
    return {**super().check_batch(batch), "label": all_finite(batch["label"])}

  @staticmethod
  def _predictions(outputs: jax.Array) -> jax.Array:
    return outputs[..., 0] if outputs.shape[-1:] == (1,) else outputs

  def terms(self, outputs: jax.Array, batch: Mapping[str, Any], aux: Mapping[str, Any],
            label_smoothing: float = 0.0) -> StepTerms:
    del aux, label_smoothing  # no classes to smooth
    predictions = self._predictions(outputs).astype(jnp.float32)  # [B, T+1]
    error = predictions - batch["label"].astype(jnp.float32)[:, None]
    return StepTerms(jnp.square(error), jnp.abs(error) <= self.tolerance)

  def eval_batch(self, outputs: jax.Array, batch: Mapping[str, Any], aux: Mapping[str, Any],
                 weights: jax.Array) -> dict[str, jax.Array]:
    del aux, weights  # padding rows are dropped when the rows are concatenated
    return {"prediction": self._predictions(outputs).astype(jnp.float32),
            "label": batch["label"].astype(jnp.float32)}

  def eval_metrics(self, totals: Mapping[str, np.ndarray]) -> dict[str, float]:
    scores = metrics.regression_metrics(np.asarray(totals["prediction"]),
                                        np.asarray(totals["label"]))
    return {"pearson": scores["pearson"], "spearman": scores["spearman"],
            "mse": scores["mse"], "loss": scores["mse"]}
