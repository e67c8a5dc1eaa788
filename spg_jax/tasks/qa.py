"""Extractive question answering (SQuAD): start and end logits per token.

In-step and eval metrics here are span-level (start, end, exact start+end accuracy on the
tokenised window); the text-level EM/F1 of SQuAD needs the tokenizer's offsets and belongs
to the text pipeline.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from spg_jax.losses import StepTerms, qa_terms, qa_window_positions
from spg_jax.tasks import metrics
from spg_jax.tasks.base import ConfigurableInputs, Task
from spg_jax.tasks.sequence import TEXT_INPUTS

START, END = "start_logits", "end_logits"


@dataclasses.dataclass(frozen=True)
class ExtractiveQA(ConfigurableInputs, Task):
  """Answer spans in a token window.

  Batch: the features in `inputs`, `start_positions [B]`, `end_positions [B]` int (token
  indices; positions outside the window, e.g. an answer cut off by the doc stride, make the
  example count for nothing, as Hugging Face's loss ignores them). Model output: a dict
  `{"start_logits": [B, L], "end_logits": [B, L]}`; the shared head gives both for every
  replica. Loss per step: (CE_start + CE_end) / 2; a step is correct when start and end are
  both top-1. Eval metrics: `start_accuracy`, `end_accuracy`, `exact_match` (both right,
  the selection metric), `span_f1` (SQuAD's F1 on window token positions,
  `metrics.qa_span_sums`; the official word-level EM / F1: `spg_jax.text.squad_metrics`).
  """
  name = "extractive_qa"
  selection_metric = "exact_match"
  label_features = ("start_positions", "end_positions")
  range_checked_label = None  # positions outside the window are ignored, not errors
  num_classes: int = 0  # unused: the classes are the window's positions
  inputs: tuple[str, ...] = TEXT_INPUTS

  def terms(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, Any],
            aux: Mapping[str, Any], label_smoothing: float = 0.0) -> StepTerms:
    del aux
    return qa_terms(outputs[START], outputs[END], batch["start_positions"],
                    batch["end_positions"], label_smoothing)

  def train_metrics(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, Any],
                    terms: StepTerms, survival: jax.Array) -> dict[str, jax.Array]:
    sums = self._span_sums({k: v[:, 0] for k, v in outputs.items()}, batch, None)
    count = jnp.maximum(sums["count"], 1.0)
    return {"exact_match": survival[0], "start_accuracy": sums["start_correct"] / count,
            "end_accuracy": sums["end_correct"] / count}

  def _span_sums(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, Any],
                 weights: jax.Array | None) -> dict[str, jax.Array]:
    length = outputs[START].shape[-1]
    start, start_ok = qa_window_positions(batch["start_positions"], length)
    end, end_ok = qa_window_positions(batch["end_positions"], length)
    valid = (start_ok & end_ok).astype(jnp.float32)
    if weights is not None:
      valid = valid * weights
    return metrics.qa_span_sums(outputs[START], outputs[END], start, end, valid)

  def eval_batch(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, Any],
                 aux: Mapping[str, Any], weights: jax.Array) -> dict[str, jax.Array]:
    del aux
    return self._span_sums(outputs, batch, weights)

  def eval_metrics(self, totals: Mapping[str, np.ndarray]) -> dict[str, float]:
    count = max(float(totals["count"]), 1.0)
    return {"exact_match": float(totals["exact_correct"]) / count,
            "span_f1": float(totals["f1"]) / count,
            "start_accuracy": float(totals["start_correct"]) / count,
            "end_accuracy": float(totals["end_correct"]) / count}
