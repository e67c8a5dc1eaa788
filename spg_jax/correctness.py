"""Per-task correctness of every trajectory step: what keeps an SPG episode alive.

Pure JAX, batched by default: step outputs `[B, T+1, ...]` (`step_axis=1`, the layout of
`SPGModel`, `hpo_step_logits` and the losses) with labels `[B, ...]`; per sample (e.g. inside
`jax.vmap`) pass `step_axis=0`. The labels' shape is checked against the step outputs' shape
without the step and class axes, so a per-sample array given as a batch (or the reverse)
is a one-line ValueError instead of a broadcast or a silently transposed answer.
Classification: top-1; extractive QA: start and end both top-1; segmentation: per pixel (each
pixel its own episode, the ignore label excluded); seq2seq: per token; CTC speech
recognition: at least `threshold` of the target tokens match after greedy decoding.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def check_step_layout(step_logits: Array, labels: Array, step_axis: int, field: str = "labels"
                  ) -> None:
  """One-line ValueError unless `labels` has `step_logits`' shape without the step axis
  and the class axis (batched `[B, T+1, *E, C]` / `[B, *E]`, or per sample)."""
  shape = tuple(jnp.shape(step_logits))
  if isinstance(step_axis, bool) or step_axis not in range(max(len(shape) - 1, 0)):
    raise ValueError(f"step_axis={step_axis!r}: step outputs of shape {shape} need a step "
                     f"axis before the class axis; 1 for batched [B, T+1, ..., C] (default), "
                     f"0 per sample [T+1, ..., C]")
  expected = shape[:step_axis] + shape[step_axis + 1:-1]
  if tuple(jnp.shape(labels)) != expected:
    layout = "[B, T+1, ..., C]" if step_axis == 1 else "[T+1, ..., C]"
    raise ValueError(f"{field}: shape {tuple(jnp.shape(labels))} does not match step outputs "
                     f"{shape} read as {layout} (step_axis={step_axis}), which need {expected}; "
                     f"per sample pass step_axis=0, batched step_axis=1")


def _labels_at_steps(labels: Array, step_axis: int) -> Array:
  return jnp.expand_dims(labels, step_axis)


def hard_labels(labels: Array, num_classes: int) -> Array:
  """Integer labels from integer or soft/label-smoothed `[..., C]` targets (argmax)."""
  labels = jnp.asarray(labels)
  if jnp.issubdtype(labels.dtype, jnp.floating) and labels.ndim >= 1 \
      and labels.shape[-1] == num_classes:
    return jnp.argmax(labels, axis=-1)
  return labels.astype(jnp.int32)


def classification_correct(step_logits: Array, labels: Array, step_axis: int = 1) -> Array:
  """Top-1 correctness per step.

  Args:
    step_logits: `[B, T+1, *E, C]` (step axis at `step_axis`; per sample `[T+1, *E, C]`
      with `step_axis=0`).
    labels: int `[B, *E]`, or soft targets `[B, *E, C]` (argmax is the label).
  Returns:
    bool `[B, T+1, *E]`.
  """
  hard = hard_labels(labels, step_logits.shape[-1])
  check_step_layout(step_logits, hard, step_axis)
  return jnp.argmax(step_logits, axis=-1) == _labels_at_steps(hard, step_axis)


def qa_correct(start_logits: Array, end_logits: Array, start_positions: Array,
               end_positions: Array, step_axis: int = 1) -> Array:
  """Extractive QA: correct when both the start and the end top-1 positions are right.

  Args:
    start_logits, end_logits: `[B, T+1, L]` (step axis at `step_axis`; per sample
      `[T+1, L]` with `step_axis=0`), L = sequence length.
    start_positions, end_positions: int `[B]` (per sample `[]`). A position outside the window
      (>= L) is never matched; `spg_jax.losses.qa_terms` makes such examples ignored
      episodes, as Hugging Face's loss ignores them.
  Returns:
    bool `[B, T+1]`.
  """
  return (classification_correct(start_logits, start_positions, step_axis)
          & classification_correct(end_logits, end_positions, step_axis))


def segmentation_correct(step_logits: Array, labels: Array, ignore_label: int = 255,
                         step_axis: int = 1) -> tuple[Array, Array]:
  """Per-pixel correctness; every pixel is its own episode.

  Args:
    step_logits: `[B, T+1, H, W, C]` (step axis at `step_axis`; per sample
      `[T+1, H, W, C]` with `step_axis=0`).
    labels: int `[B, H, W]`; pixels equal to `ignore_label` are not episodes.
  Returns:
    (correct bool `[B, T+1, H, W]`, valid float32 `[B, H, W]`).
  """
  valid = (labels != ignore_label)
  safe = jnp.where(valid, labels, 0)
  return classification_correct(step_logits, safe, step_axis), valid.astype(jnp.float32)


def token_correct(step_logits: Array, targets: Array, step_axis: int = 1) -> Array:
  """Seq2seq: per-token correctness, every token its own episode.

  Args: step_logits `[B, T+1, L, C]`; targets int `[B, L]`. Returns bool `[B, T+1, L]`
  (per sample: `[T+1, L, C]`, `[L]`, `step_axis=0`).
  """
  return classification_correct(step_logits, targets, step_axis)


def greedy_ctc_decode(logits: Array, logit_paddings: Array, blank_id: int = 0
                      ) -> tuple[Array, Array]:
  """Greedy CTC decoding with static shapes (argmax, collapse repeats, drop blanks).

  Args:
    logits: `[L, C]` frame logits; logit_paddings: `[L]`, 1.0 on padded frames.
  Returns:
    (tokens int32 `[L]` left-aligned, padded with -1; length int32 `[]`).
  """
  best = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  previous = jnp.concatenate([jnp.full((1,), -1, jnp.int32), best[:-1]])
  keep = (best != blank_id) & (best != previous) & (logit_paddings < 0.5)
  position = jnp.cumsum(keep) - 1
  length = logits.shape[0]
  index = jnp.where(keep, position, length)  # out-of-range index: dropped by the scatter
  tokens = jnp.full((length,), -1, jnp.int32).at[index].set(best, mode="drop")
  return tokens, jnp.sum(keep).astype(jnp.int32)


def ctc_correct(step_logits: Array, logit_paddings: Array, labels: Array,
                label_paddings: Array, threshold: float = 0.5, blank_id: int = 0,
                step_axis: int = 1) -> Array:
  """CTC speech recognition: a step is correct when at least `threshold` of the target
  tokens match the greedy decoding position by position.

  Args:
    step_logits: `[B, T+1, L, C]` (step axis at `step_axis`; per sample `[T+1, L, C]`
      with `step_axis=0`); logit_paddings `[B, L]`;
    labels: int `[B, S]`; label_paddings: `[B, S]`, 1.0 on padding.
  Returns:
    bool `[B, T+1]`.
  """
  check_step_layout(step_logits, logit_paddings, step_axis, "logit_paddings")
  logits = jnp.moveaxis(step_logits, step_axis, 0)
  extra_batch = logits.ndim - 3  # > 0 when called batched (step_axis=1)
  decode = greedy_ctc_decode
  for _ in range(extra_batch):
    decode = jax.vmap(decode, in_axes=(0, 0, None))
  decode = jax.vmap(decode, in_axes=(0, None, None))  # over steps
  tokens, _ = decode(logits, logit_paddings, blank_id)  # [T+1, (B,) L]
  num_labels = labels.shape[-1]
  width = max(num_labels, tokens.shape[-1])
  tokens = jnp.pad(tokens, [(0, 0)] * (tokens.ndim - 1) + [(0, width - tokens.shape[-1])],
                   constant_values=-1)[..., :num_labels]
  real = (label_paddings < 0.5).astype(jnp.float32)
  matches = jnp.sum((tokens == labels) * real, axis=-1)
  fraction = matches / jnp.maximum(jnp.sum(real, axis=-1), 1.0)
  return jnp.moveaxis(fraction >= threshold, 0, step_axis)
