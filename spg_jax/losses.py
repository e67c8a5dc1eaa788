"""SPG losses: per-step cross-entropy, `StepTerms`, the masked and REINFORCE forms, loss
normalisation, and `spg_loss`, the objective of any task.

Pure JAX. Batched inputs are `[B, T+1, *E]` (see `spg_jax.trajectory`); a task turns its
model outputs into `StepTerms` (per-step losses, correctness, episode weights) and
`spg_loss` does the rest.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from spg_jax.correctness import (
    classification_correct, ctc_correct, qa_correct, segmentation_correct, token_correct)
from spg_jax.trajectory import (
    MASKED_EPS, alive_masks, episode_returns, trajectory_stats, weighted_mean)
from spg_jax.validation import check_labels, validate_lambdas

Array = jax.Array
LOSS_FORMS = ("masked", "reinforce")


def step_cross_entropy(step_logits: Array, labels: Array, label_smoothing: float = 0.0,
                       step_axis: int = 0) -> Array:
  """Cross-entropy of every step's prediction, with torch's label-smoothing convention.

  Args:
    step_logits: `[T+1, *E, C]` (step axis at `step_axis`).
    labels: int `[*E]` or soft targets `[*E, C]` (used as given, then smoothed).
    label_smoothing: in [0, 1): targets become `(1 - ls) * y + ls / C`.
  Returns:
    float32 `[T+1, *E]`.
  """
  if not 0.0 <= float(label_smoothing) < 1.0:
    raise ValueError(f"label_smoothing={label_smoothing!r}: must be in [0, 1)")
  num_classes = step_logits.shape[-1]
  labels = jnp.asarray(labels)
  if jnp.issubdtype(labels.dtype, jnp.floating) and labels.ndim >= 1 \
      and labels.shape[-1] == num_classes:
    targets = labels.astype(jnp.float32)
  else:
    targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  targets = (1.0 - label_smoothing) * targets + label_smoothing / num_classes
  targets = jnp.expand_dims(targets, step_axis)
  return optax.softmax_cross_entropy(step_logits.astype(jnp.float32), targets)


class StepTerms(NamedTuple):
  """What the loss needs from a task, per episode and step.

  losses: float32 `[B, T+1, *E]` per-step loss (cross-entropy) of every episode.
  correct: bool `[B, T+1, *E]` per-step correctness.
  valid: float32 `[B, *E]` episode weights (0 for ignored pixels / padded tokens), or None.
  """
  losses: Array
  correct: Array
  valid: Array | None = None


def classification_terms(step_logits: Array, labels: Array, label_smoothing: float = 0.0
                         ) -> StepTerms:
  """Batched classification terms from `step_logits [B, T+1, C]` and labels `[B]` / `[B, C]`."""
  check_labels(labels, step_logits.shape[-1])
  return StepTerms(step_cross_entropy(step_logits, labels, label_smoothing, step_axis=1),
                   classification_correct(step_logits, labels, step_axis=1))


def qa_terms(start_logits: Array, end_logits: Array, start_positions: Array,
             end_positions: Array) -> StepTerms:
  """Batched extractive-QA terms; loss = (CE_start + CE_end) / 2 as in Hugging Face.

  start_logits, end_logits: `[B, T+1, L]`; positions: int `[B]`.
  """
  check_labels(start_positions, start_logits.shape[-1], field="start_positions")
  check_labels(end_positions, end_logits.shape[-1], field="end_positions")
  loss = 0.5 * (step_cross_entropy(start_logits, start_positions, step_axis=1)
                + step_cross_entropy(end_logits, end_positions, step_axis=1))
  return StepTerms(loss, qa_correct(start_logits, end_logits, start_positions, end_positions,
                                    step_axis=1))


def segmentation_terms(step_logits: Array, labels: Array, ignore_label: int = 255,
                       label_smoothing: float = 0.0) -> StepTerms:
  """Batched per-pixel terms: `step_logits [B, T+1, H, W, C]`, labels int `[B, H, W]`."""
  check_labels(labels, step_logits.shape[-1], ignore_label=ignore_label)
  correct, valid = segmentation_correct(step_logits, labels, ignore_label, step_axis=1)
  safe = jnp.where(labels == ignore_label, 0, labels)
  losses = step_cross_entropy(step_logits, safe, label_smoothing, step_axis=1)
  return StepTerms(losses, correct, valid)


def token_terms(step_logits: Array, targets: Array, target_paddings: Array | None = None,
                label_smoothing: float = 0.0) -> StepTerms:
  """Batched seq2seq terms: `step_logits [B, T+1, L, C]`, targets int `[B, L]`,
  target_paddings `[B, L]` (1.0 on padding)."""
  check_labels(targets, step_logits.shape[-1], field="targets")
  valid = None if target_paddings is None else 1.0 - jnp.asarray(target_paddings, jnp.float32)
  return StepTerms(step_cross_entropy(step_logits, targets, label_smoothing, step_axis=1),
                   token_correct(step_logits, targets, step_axis=1), valid)


def ctc_terms(step_logits: Array, logit_paddings: Array, labels: Array, label_paddings: Array,
              threshold: float = 0.5, blank_id: int = 0) -> StepTerms:
  """Batched CTC terms: `step_logits [B, T+1, L, C]`, paddings `[B, L]`, labels `[B, S]`.

  The per-step loss is optax's CTC loss of each step's frame logits.
  """
  if not 0.0 < float(threshold) <= 1.0:
    raise ValueError(f"threshold={threshold!r}: must be in (0, 1]")
  num_steps = step_logits.shape[1]
  flat = step_logits.reshape((-1,) + step_logits.shape[2:])  # [B*(T+1), L, C]
  repeat = lambda a: jnp.repeat(a, num_steps, axis=0)
  losses = optax.ctc_loss(flat.astype(jnp.float32), repeat(logit_paddings), repeat(labels),
                          repeat(label_paddings), blank_id=blank_id)
  correct = ctc_correct(step_logits, logit_paddings, labels, label_paddings, threshold,
                        blank_id, step_axis=1)
  return StepTerms(losses.reshape(step_logits.shape[:2]), correct)


def _episode_weights(terms: StepTerms) -> Array:
  shape = terms.losses.shape[:1] + terms.losses.shape[2:]
  if terms.valid is None:
    return jnp.ones(shape, jnp.float32)
  return jnp.broadcast_to(jnp.asarray(terms.valid, jnp.float32), shape)


def masked_loss(terms: StepTerms, lambdas: Sequence[float]) -> tuple[Array, Array, Array]:
  """Masked form (reference HPO library).

  `L = mean_i CE_0^i + sum_t lambda_t (sum_i m_t^i CE_t^i) / (sum_i m_t^i + 1e-6)`.
  Returns (total, base, replica_losses `[T]`); episodes weighted by `terms.valid`.
  """
  lam = jnp.asarray(validate_lambdas(lambdas, terms.losses.shape[1] - 1), jnp.float32)
  weights = _episode_weights(terms)
  masks = alive_masks(terms.correct, step_axis=1) * jnp.expand_dims(weights, 1)
  losses = terms.losses.astype(jnp.float32)
  base = weighted_mean(losses[:, 0], weights)
  reduce_axes = tuple(a for a in range(losses.ndim) if a != 1)
  replica = (jnp.sum(masks * losses, axis=reduce_axes)[1:]
             / (jnp.sum(masks, axis=reduce_axes)[1:] + MASKED_EPS))
  return base + jnp.dot(lam, replica), base, replica


def reinforce_loss(terms: StepTerms, lambdas: Sequence[float]) -> tuple[Array, Array, Array]:
  """Return-weighted REINFORCE form (reference NAS library).

  `L = mean_i [(CE_0^i + sum_t m_t^i CE_t^i) * G^i]`, `G^i = 1 + sum_t lambda_t m_t^i`.
  Returns (total, base = mean_i CE_0^i, replica_losses `[T]` = mean_i m_t^i CE_t^i G^i).
  """
  lam = validate_lambdas(lambdas, terms.losses.shape[1] - 1)
  weights = _episode_weights(terms)
  masks = alive_masks(terms.correct, step_axis=1)
  returns = episode_returns(terms.correct, lam, step_axis=1)  # [B, *E]
  losses = terms.losses.astype(jnp.float32)
  weighted = masks * losses * jnp.expand_dims(returns, 1)  # [B, T+1, *E]
  per_step = jax.vmap(lambda v: weighted_mean(v, weights), in_axes=1)(weighted)  # [T+1]
  base = weighted_mean(losses[:, 0], weights)
  return jnp.sum(per_step), base, per_step[1:]


def normalize_loss(total: Array, base: Array) -> tuple[Array, Array]:
  """Loss normalisation: `total * stop_gradient(exp(base - total))`.

  The value equals `base * exp(...)`-scaled total whose gradient's scale follows the base
  loss; with plain SGD this is the same as scaling the step's learning rate by the factor.
  Returns (normalised loss, factor).
  """
  factor = jax.lax.stop_gradient(jnp.exp(base - total))
  return total * factor, factor


def spg_loss(terms: StepTerms, lambdas: Sequence[float], form: str = "masked",
             normalize: bool = False) -> tuple[Array, dict[str, Array]]:
  """The SPG objective from per-step terms of any task.

  Args:
    terms: `StepTerms` with losses/correct `[B, T+1, *E]`.
    lambdas: length-T replica weights (validated against T).
    form: "masked" (reference HPO) or "reinforce" (return-weighted, reference NAS).
    normalize: multiply by `stop_gradient(exp(L_base - L_total))` (reference: on for vision
      and QA, off for text/audio classification).
  Returns:
    (scalar loss to minimise, metrics dict: `loss`, `loss_total` (before normalisation),
    `loss_base`, `loss_replicas [T]`, `norm_factor`, `survival [T+1]`, `alive [T+1]`,
    `mean_episode_length`, `mean_return`).
  """
  if form not in LOSS_FORMS:
    raise ValueError(f"form={form!r}: must be one of {LOSS_FORMS}")
  lam = validate_lambdas(lambdas, terms.losses.shape[1] - 1)
  total, base, replicas = (masked_loss if form == "masked" else reinforce_loss)(terms, lam)
  loss, factor = normalize_loss(total, base) if normalize else (total, jnp.ones_like(total))
  weights = _episode_weights(terms)
  metrics = {
      "loss": loss, "loss_total": total, "loss_base": base, "loss_replicas": replicas,
      "norm_factor": factor,
      "mean_return": weighted_mean(episode_returns(terms.correct, lam, step_axis=1), weights),
      **trajectory_stats(terms.correct, terms.valid),
  }
  return loss, metrics


def classification_spg_loss(step_logits: Array, labels: Array, lambdas: Sequence[float],
                            form: str = "masked", label_smoothing: float = 0.0,
                            normalize: bool = False) -> tuple[Array, dict[str, Array]]:
  """`spg_loss` for classification: `step_logits [B, T+1, C]`, labels `[B]` or `[B, C]`."""
  return spg_loss(classification_terms(step_logits, labels, label_smoothing), lambdas, form,
                  normalize)
