"""The task seam: what the training engine asks a task, and nothing more.

The engine (`spg_jax.train`) knows nothing about labels or accuracy. A task says

* which batch features it reads and how they are checked (`required_features`,
  `batch_checks`: the same pure rule on the host for the first batch and inside the jitted
  step for every later one),
* what the model is called with (`model_input`; `dummy_input` for `init`),
* how one head's step outputs `[B, T+1, ...]` become `StepTerms` (per-step losses,
  correctness, episode weights) for the SPG loss (`terms`), and its in-step metrics,
* what one evaluation batch contributes (`eval_batch`, inside jit, from the base model's
  outputs), how batches combine over a split (`eval_reduction`: "sum" adds them on device,
  "concat" gathers per-example rows on the host), and the split's metrics (`eval_metrics`),
* which metric selects checkpoints, and whether higher is better (`selection_metric`,
  `selection_mode`).

Tasks are frozen dataclasses (hashable: part of the engine's static settings). Their fields
come from `config.task` plus what the dataset says (`num_classes`, `ignore_label`); see
`spg_jax.tasks.build`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from spg_jax.losses import StepTerms, classification_terms
from spg_jax.validation import labels_in_range

Array = jax.Array
SELECTION_MODES = ("max", "min")
EVAL_REDUCTIONS = ("sum", "concat")


@dataclasses.dataclass(frozen=True)
class BatchCheck:
  """One rule a batch must satisfy: `ok(batch) -> bool []` (pure jax.numpy) and the words
  that complete "batch field '<field>' ..." when it fails."""
  field: str
  problem: str


class Task:
  """Base class of the tasks; subclasses are frozen dataclasses.

  Subclasses set the class attributes `name`, `selection_metric`, `selection_mode` and
  `eval_reduction`, and implement `terms`, `eval_batch` and `eval_metrics`. The defaults
  here read `batch["input"]` (float, checked finite) and `batch["label"]` (int, checked
  against the classes).
  """
  name: ClassVar[str] = ""
  selection_metric: ClassVar[str] = ""
  selection_mode: ClassVar[str] = "max"
  eval_reduction: ClassVar[str] = "sum"
  # Features the model reads (its input) and the labels the loss reads.
  input_features: ClassVar[tuple[str, ...]] = ("input",)
  label_features: ClassVar[tuple[str, ...]] = ("label",)
  # The integer class label checked against [0, num_classes) (None: no such label).
  range_checked_label: ClassVar[str | None] = "label"

  # ------------------------------------------------------------------------ batch
  def required_features(self) -> tuple[str, ...]:
    """Every batch feature the task reads."""
    return self.input_features + self.label_features

  def check_features(self, features: Mapping[str, Any], dataset: str) -> None:
    """One-line ValueError unless the dataset's example `features` has what the task reads."""
    missing = [f for f in self.required_features() if f not in features]
    if missing:
      raise ValueError(f"config.task.name={self.name!r}: dataset {dataset!r} has no feature "
                       f"{missing[0]!r} (it has {sorted(features)})")

  def model_input(self, batch: Mapping[str, Any]) -> Any:
    """What the model is called with: one array, or a dict of arrays (text models)."""
    if len(self.input_features) == 1:
      return batch[self.input_features[0]]
    return {k: batch[k] for k in self.input_features}

  def dummy_input(self, features: Mapping[str, Any], batch_size: int = 2) -> Any:
    """Zeros shaped like `model_input` of a batch of `batch_size`, for `init`.

    `features`: name -> object with `shape` (no batch axis) and `dtype` (dataset spec).
    """
    dummy = {k: jnp.zeros((batch_size,) + tuple(features[k].shape), features[k].dtype)
             for k in self.input_features}
    return self.model_input(dummy)

  def _input_key(self) -> str:
    """The batch-check name of the model inputs: the feature's name, or "inputs"."""
    return self.input_features[0] if len(self.input_features) == 1 else "inputs"

  def batch_checks(self) -> tuple[BatchCheck, ...]:
    """The rules of a training batch (see `check_batch`): the model inputs are finite, and
    the class labels (`range_checked_label`, when there is one) are in range."""
    checks = [BatchCheck(self._input_key(), "holds NaN or Inf")]
    if self.range_checked_label is not None:
      checks.append(BatchCheck(self.range_checked_label, self.label_problem()))
    return tuple(checks)

  def label_problem(self) -> str:
    return f"holds values outside [0, {self.num_classes})"

  def check_batch(self, batch: Mapping[str, Any]) -> dict[str, Array]:
    """`{field: bool []}`, True where the field is fine. Pure jax.numpy (runs in jit)."""
    out = {self._input_key(): all_finite([batch[k] for k in self.input_features])}
    label = self.range_checked_label
    if label is not None:
      out[label] = labels_in_range(batch[label], self.num_classes,
                                   getattr(self, "ignore_label", None))
    return out

  def describe_bad_field(self, field: str, batch: Mapping[str, Any]) -> str:
    """Words for a failed field of a host batch (with the offending values where useful)."""
    if field == self.range_checked_label:
      labels = np.asarray(batch[field])
      ignore = getattr(self, "ignore_label", None)
      values = labels[labels != ignore] if ignore is not None else labels
      allowed = f"[0, {self.num_classes})"
      if ignore is not None:
        allowed += f" or the ignore label {ignore}"
      return (f"holds values in [{values.min()}, {values.max()}], outside {allowed} (the "
              f"model's classes)")
    return dict((c.field, c.problem) for c in self.batch_checks())[field]

  # ------------------------------------------------------------------------- train
  def terms(self, outputs: Any, batch: Mapping[str, Any], aux: Mapping[str, Any],
            label_smoothing: float = 0.0) -> StepTerms:
    """`StepTerms` of one head's step outputs (leaves `[B, T+1, ...]`); `aux`: the base
    model's aux dict (e.g. CTC frame paddings). Default: one class per example, logits
    `[B, T+1, C]` against `batch["label"]` (top-1 episodes)."""
    del aux
    return classification_terms(outputs, batch["label"], label_smoothing)

  def train_metrics(self, outputs: Any, batch: Mapping[str, Any], terms: StepTerms,
                    survival: Array) -> dict[str, Array]:
    """In-step metrics besides the loss terms; default: `accuracy` = the base step's
    survival (the fraction of episodes it gets right)."""
    del outputs, batch, terms
    return {"accuracy": survival[0]}

  # -------------------------------------------------------------------------- eval
  def eval_batch(self, outputs: Any, batch: Mapping[str, Any], aux: Mapping[str, Any],
                 weights: Array) -> dict[str, Array]:
    """One evaluation batch's contribution; `outputs`: the base model's main-head output
    (leaves `[B, ...]`), `aux`: its aux dict, `weights [B]`: 1.0 for real examples, 0.0 for
    padding. With `eval_reduction == "sum"` every value is summed over the split; with
    "concat" every value keeps its leading batch axis and the rows of real examples are
    concatenated over the split."""
    raise NotImplementedError

  def eval_metrics(self, totals: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The split's metrics from the reduced `eval_batch` results (host numpy)."""
    raise NotImplementedError

  def better(self, score: float, best: float | None) -> bool:
    """Whether `score` of the selection metric beats `best` (None: nothing yet)."""
    if best is None:
      return True
    return score > best if self.selection_mode == "max" else score < best


class ConfigurableInputs:
  """For tasks whose model inputs are named by a dataclass field `inputs` (text and audio
  models read several features: token ids, token types, attention masks)."""

  def __post_init__(self):
    check_inputs(self.inputs)

  @property
  def input_features(self) -> tuple[str, ...]:
    return tuple(self.inputs)


def cross_entropy_sums(logits: Array, labels: Array, weights: Array) -> dict[str, Array]:
  """`loss` (summed cross-entropy) and `count` of a batch's real examples; `logits [B, C]`,
  int `labels [B]`, `weights [B]`."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  return {"loss": jnp.sum(losses * weights), "count": jnp.sum(weights)}


def check_int(field: str, value: Any, minimum: int) -> None:
  """One-line ValueError naming `config.task.<field>` unless `value` is an int >= minimum."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"config.task.{field}={value!r}: must be an integer >= {minimum}")


def check_inputs(inputs: Any) -> None:
  """One-line ValueError unless `inputs` is a non-empty tuple of feature names."""
  if not inputs or not all(isinstance(n, str) for n in inputs):
    raise ValueError(f"config.task.inputs={inputs!r}: must be a non-empty tuple of batch "
                     f"feature names")


def all_finite(x: Any) -> Array:
  """bool []: every float leaf of `x` is finite (integer leaves are always fine)."""
  leaves = [jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(x)
            if jnp.issubdtype(jnp.asarray(v).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)
