"""Semantic segmentation: every labelled pixel is its own SPG episode; mIoU over a split."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from spg_jax.losses import StepTerms, segmentation_terms
from spg_jax.tasks import metrics
from spg_jax.tasks.base import Task


@dataclasses.dataclass(frozen=True)
class Segmentation(Task):
  """Per-pixel classes with an ignore label.

  Batch: `input [B, H, W, 3]` float, `label [B, H, W]` int in [0, num_classes) or
  `ignore_label` (object boundaries and "don't care" pixels, 255 as in Pascal VOC). Model
  output: logits `[B, H, W, C]` (upsampled to the label size). Each non-ignored pixel is an
  episode, correct while its top-1 class is the label. Eval metrics from the confusion
  matrix summed over the split, as torchvision's segmentation reference computes them:
  `pixel_accuracy` (global), `mean_class_accuracy`, `mIoU` (the selection metric; classes
  with an empty union are left out of the mean, where torchvision would give NaN) and
  `iou_<c>` per class; `loss` is the mean cross-entropy over labelled pixels.
  """
  name = "segmentation"
  selection_metric = "mIoU"
  num_classes: int = 21
  ignore_label: int = 255

  def label_problem(self) -> str:
    return (f"holds values outside [0, {self.num_classes}) other than the ignore label "
            f"{self.ignore_label}")

  def terms(self, outputs: jax.Array, batch: Mapping[str, Any], aux: Mapping[str, Any],
            label_smoothing: float = 0.0) -> StepTerms:
    del aux
    return segmentation_terms(outputs, batch["label"], self.ignore_label, label_smoothing)

  def train_metrics(self, outputs: Any, batch: Mapping[str, Any], terms: StepTerms,
                    survival: jax.Array) -> dict[str, jax.Array]:
    del outputs, batch, terms
    return {"pixel_accuracy": survival[0]}

  def eval_batch(self, outputs: jax.Array, batch: Mapping[str, Any], aux: Mapping[str, Any],
                 weights: jax.Array) -> dict[str, jax.Array]:
    del aux
    labels = batch["label"]
    valid = (labels != self.ignore_label).astype(jnp.float32)
    pixel_weights = valid * weights.reshape((-1,) + (1,) * (labels.ndim - 1))
    safe = jnp.where(valid > 0, labels, 0)
    losses = optax.softmax_cross_entropy_with_integer_labels(outputs.astype(jnp.float32),
                                                             safe)
    predictions = jnp.argmax(outputs, axis=-1)
    return {"confusion": metrics.confusion_matrix(predictions, safe, self.num_classes,
                                                  pixel_weights),
            "loss": jnp.sum(losses * pixel_weights), "pixels": jnp.sum(pixel_weights)}

  def eval_metrics(self, totals: Mapping[str, np.ndarray]) -> dict[str, float]:
    scores = metrics.segmentation_metrics(np.asarray(totals["confusion"]))
    out = {"mIoU": scores["mIoU"], "pixel_accuracy": scores["pixel_accuracy"],
           "mean_class_accuracy": scores["mean_class_accuracy"],
           "loss": float(totals["loss"]) / max(float(totals["pixels"]), 1.0)}
    for c, iou in enumerate(np.asarray(scores["iou"], np.float64)):
      if np.isfinite(iou):
        out[f"iou_{c}"] = float(iou)
    return out
