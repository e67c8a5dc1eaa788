"""SPG losses: per-step cross-entropy, `StepTerms`, the masked and REINFORCE forms, loss
normalisation, and `spg_loss`, the objective of any task.

Pure JAX. Batched inputs are `[B, T+1, *E]` (see `spg_jax.trajectory`); a task turns its
model outputs into `StepTerms` (per-step losses, correctness, episode weights) and
`spg_loss` does the rest.

Where the authors' code does something else than its own stated intent, both are here
(docs/FAITHFULNESS.md has the whole list):
* normalisation (`normalize`): "none" is what the authors' runs did in effect (their factor
  is always 1), "loss" the factor `stop_gradient(exp(L_base - L_total))` they intended.
* the base term's denominator (`base_denominator`): "valid" averages the base cross-entropy
  over real episodes, "all" over every element (ignored pixels / padded tokens count 0 in
  the sum but 1 in the denominator), as the authors' segmentation and seq2seq code does.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from spg_jax.correctness import (
    check_step_layout, classification_correct, ctc_correct, hard_labels, qa_correct,
    segmentation_correct, token_correct)
from spg_jax.trajectory import (
    MASKED_EPS, alive_masks, episode_returns, trajectory_stats, weighted_mean)
from spg_jax.validation import check_labels, validate_lambdas

Array = jax.Array
# "unmasked": the masked form's lambdas and normalisation with every step's loss counted for
# every sample (deep supervision over the replicas, no trajectory masks): the ablation that
# isolates what the per-sample episodes add.
LOSS_FORMS = ("masked", "reinforce", "unmasked")
# "none": no normalisation (what the authors' runs did in effect); "loss": multiply the loss
# by stop_gradient(exp(L_base - L_total)) (what they intended); "lr": the same factor on the
# step size (the trainer writes it into the optimizer; equal to "loss" for plain SGD).
NORMALIZE_MODES = ("none", "loss", "lr")
# "valid": the base term averages over real episodes; "all": over every element of
# `[B, *E]`, ignored ones included (the authors' segmentation / seq2seq code).
BASE_DENOMINATORS = ("valid", "all")


def step_cross_entropy(step_logits: Array, labels: Array, label_smoothing: float = 0.0,
                       step_axis: int = 0) -> Array:
  """Cross-entropy of every step's prediction, with torch's label-smoothing convention.

  Args:
    step_logits: `[T+1, *E, C]` (step axis at `step_axis`).
    labels: int `[*E]` or soft targets `[*E, C]` (used as given, then smoothed: a mixup /
      cutmix mixture is kept; the authors' code takes its argmax first and loses it).
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
  check_step_layout(step_logits, hard_labels(labels, num_classes), step_axis)
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


def qa_window_positions(positions: Array, length: int) -> tuple[Array, Array]:
  """Answer positions as Hugging Face reads them: clamped to [0, L], and L (an answer
  outside the window, e.g. cut off by the document stride) ignored.

  Args:
    positions: int `[B]` token indices; length: L, the window's length.
  Returns:
    (safe positions int32 `[B]` in [0, L) (ignored ones set to 0), in_window bool `[B]`).
  """
  clamped = jnp.clip(jnp.asarray(positions).astype(jnp.int32), 0, length)
  inside = clamped < length
  return jnp.where(inside, clamped, 0), inside


def qa_terms(start_logits: Array, end_logits: Array, start_positions: Array,
             end_positions: Array, label_smoothing: float = 0.0) -> StepTerms:
  """Batched extractive-QA terms; loss = (CE_start + CE_end) / 2 as in Hugging Face.

  start_logits, end_logits: `[B, T+1, L]`; positions: int `[B]`. Positions outside the
  window (>= L after clamping to [0, L], as Hugging Face and the authors' code) make the
  example an ignored episode (`valid` 0), never an error.
  """
  length = start_logits.shape[-1]
  start, start_in = qa_window_positions(start_positions, length)
  end, end_in = qa_window_positions(end_positions, length)
  loss = 0.5 * (step_cross_entropy(start_logits, start, label_smoothing, step_axis=1)
                + step_cross_entropy(end_logits, end, label_smoothing, step_axis=1))
  return StepTerms(loss, qa_correct(start_logits, end_logits, start, end, step_axis=1),
                   (start_in & end_in).astype(jnp.float32))


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


def ctc_feasible(logit_paddings: Array, labels: Array, label_paddings: Array) -> Array:
  """Whether a CTC alignment exists: the real frames are at least the real target tokens
  plus one blank between every pair of equal neighbours.

  Args: logit_paddings `[B, L]`, labels int `[B, S]`, label_paddings `[B, S]` (1.0 on
  padding, at the end). Returns bool `[B]`.
  """
  real = jnp.asarray(label_paddings) < 0.5
  repeats = jnp.sum((labels[:, 1:] == labels[:, :-1]) & real[:, 1:] & real[:, :-1], axis=-1)
  frames = jnp.sum(jnp.asarray(logit_paddings) < 0.5, axis=-1)
  return jnp.sum(real, axis=-1) + repeats <= frames


def ctc_terms(step_logits: Array, logit_paddings: Array, labels: Array, label_paddings: Array,
              threshold: float = 0.5, blank_id: int = 0, zero_infinity: bool = False
              ) -> StepTerms:
  """Batched CTC terms: `step_logits [B, T+1, L, C]`, paddings `[B, L]`, labels `[B, S]`.

  The per-step loss is optax's CTC loss of each step's frame logits. A sequence without
  any alignment (more target tokens, plus blanks between repeats, than frames) has an
  infinite loss, as in torch: optax would give a large finite number (about 1e5) instead,
  so such rows are set explicitly: +inf with `zero_infinity=False` (torch's default; the
  trainer then stops at that step naming the term, or skips it with `skip_nonfinite`),
  0 with no gradient with `zero_infinity=True` (torch's `zero_infinity`).
  """
  if not 0.0 < float(threshold) <= 1.0:
    raise ValueError(f"threshold={threshold!r}: must be in (0, 1]")
  num_steps = step_logits.shape[1]
  feasible = ctc_feasible(logit_paddings, labels, label_paddings)  # [B]
  # Impossible rows get an empty target (always feasible), so their value and gradient in
  # optax stay finite and are then replaced: no NaN leaks through the `where`.
  safe_label_paddings = jnp.where(feasible[:, None], label_paddings,
                                  jnp.ones_like(label_paddings))
  flat = step_logits.reshape((-1,) + step_logits.shape[2:])  # [B*(T+1), L, C]
  repeat = lambda a: jnp.repeat(a, num_steps, axis=0)
  losses = optax.ctc_loss(flat.astype(jnp.float32), repeat(logit_paddings), repeat(labels),
                          repeat(safe_label_paddings), blank_id=blank_id)
  losses = losses.reshape(step_logits.shape[:2])
  fill = 0.0 if zero_infinity else jnp.inf
  losses = jnp.where(feasible[:, None], losses, fill)
  correct = ctc_correct(step_logits, logit_paddings, labels, label_paddings, threshold,
                        blank_id, step_axis=1)
  return StepTerms(losses, correct)


def _episode_weights(terms: StepTerms) -> Array:
  shape = terms.losses.shape[:1] + terms.losses.shape[2:]
  if terms.valid is None:
    return jnp.ones(shape, jnp.float32)
  return jnp.broadcast_to(jnp.asarray(terms.valid, jnp.float32), shape)


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
  if value not in allowed:
    raise ValueError(f"{name}={value!r}: must be one of {list(allowed)}")
  return value


def base_term(terms: StepTerms, weights: Array, base_denominator: str = "valid") -> Array:
  """The base step's mean loss: over real episodes ("valid"), or summed over real ones and
  divided by every element of `[B, *E]` ("all", the authors' segmentation and seq2seq
  code, where ignored pixels / padded tokens add 0 but count)."""
  losses = terms.losses[:, 0].astype(jnp.float32)
  if _check_choice("base_denominator", base_denominator, BASE_DENOMINATORS) == "all":
    return jnp.sum(losses * weights) / max(weights.size, 1)
  return weighted_mean(losses, weights)


def masked_loss(terms: StepTerms, lambdas: Sequence[float], base_denominator: str = "valid"
                ) -> tuple[Array, Array, Array]:
  """Masked form (reference HPO library).

  `L = mean_i CE_0^i + sum_t lambda_t (sum_i m_t^i CE_t^i) / (sum_i m_t^i + 1e-6)`.
  Returns (total, base, replica_losses `[T]`); episodes weighted by `terms.valid`, the base
  mean's denominator as `base_term(..., base_denominator)`.
  """
  lam = jnp.asarray(validate_lambdas(lambdas, terms.losses.shape[1] - 1), jnp.float32)
  weights = _episode_weights(terms)
  masks = alive_masks(terms.correct, step_axis=1) * jnp.expand_dims(weights, 1)
  losses = terms.losses.astype(jnp.float32)
  base = base_term(terms, weights, base_denominator)
  reduce_axes = tuple(a for a in range(losses.ndim) if a != 1)
  replica = (jnp.sum(masks * losses, axis=reduce_axes)[1:]
             / (jnp.sum(masks, axis=reduce_axes)[1:] + MASKED_EPS))
  return base + jnp.dot(lam, replica), base, replica


def unmasked_loss(terms: StepTerms, lambdas: Sequence[float], base_denominator: str = "valid"
                  ) -> tuple[Array, Array, Array]:
  """Unmasked form (ablation): the masked form with every mask set to 1.

  `L = mean_i CE_0^i + sum_t lambda_t mean_i CE_t^i`: every replica step's cross-entropy
  counts for every (real) episode, whether or not an earlier step was already wrong, so
  gradients do not stop after a sample's first error. Returns (total, base, replica_losses
  `[T]`); episodes weighted by `terms.valid`, the base as `base_term(..., base_denominator)`.
  """
  lam = jnp.asarray(validate_lambdas(lambdas, terms.losses.shape[1] - 1), jnp.float32)
  weights = _episode_weights(terms)
  losses = terms.losses.astype(jnp.float32)
  base = base_term(terms, weights, base_denominator)
  replica = jax.vmap(lambda v: weighted_mean(v, weights), in_axes=1)(losses[:, 1:])  # [T]
  return base + jnp.dot(lam, replica), base, replica


def reinforce_loss(terms: StepTerms, lambdas: Sequence[float], base_denominator: str = "valid"
                   ) -> tuple[Array, Array, Array]:
  """Return-weighted REINFORCE form (reference NAS library).

  `L = mean_i [(CE_0^i + sum_t m_t^i CE_t^i) * G^i]`, `G^i = 1 + sum_t lambda_t m_t^i`.
  Returns (total, base = mean_i CE_0^i, replica_losses `[T]` = mean_i m_t^i CE_t^i G^i).
  `base_denominator="all"` divides step 0's sum (and the reported base) by every element;
  the replica steps keep the real episodes' count.
  """
  lam = validate_lambdas(lambdas, terms.losses.shape[1] - 1)
  _check_choice("base_denominator", base_denominator, BASE_DENOMINATORS)
  weights = _episode_weights(terms)
  masks = alive_masks(terms.correct, step_axis=1)
  returns = episode_returns(terms.correct, lam, step_axis=1)  # [B, *E]
  losses = terms.losses.astype(jnp.float32)
  weighted = masks * losses * jnp.expand_dims(returns, 1)  # [B, T+1, *E]
  per_step = jax.vmap(lambda v: weighted_mean(v, weights), in_axes=1)(weighted)  # [T+1]
  base = base_term(terms, weights, base_denominator)
  if base_denominator == "all":
    per_step = per_step.at[0].set(jnp.sum(weighted[:, 0] * weights) / max(weights.size, 1))
  return jnp.sum(per_step), base, per_step[1:]


def normalize_loss(total: Array, base: Array) -> tuple[Array, Array]:
  """Loss normalisation as the authors intended: `total * stop_gradient(exp(base - total))`.

  The gradient's scale then follows the base loss; with plain SGD this is the same as
  scaling the step's learning rate by the factor. (The authors' code computes the factor
  from a tensor that the replica losses are later added to in place, so in their runs it
  is always 1: `normalize="none"` reproduces those runs.) Returns (normalised loss, factor).
  """
  factor = jax.lax.stop_gradient(jnp.exp(base - total))
  return total * factor, factor


def normalize_mode(normalize: bool | str) -> str:
  """"none" / "loss" / "lr" from a mode or a bool (True: "loss", False: "none")."""
  if isinstance(normalize, bool):
    return "loss" if normalize else "none"
  return _check_choice("normalize", normalize, NORMALIZE_MODES)


def spg_loss(terms: StepTerms, lambdas: Sequence[float], form: str = "masked",
             normalize: bool | str = "none", base_denominator: str = "valid"
             ) -> tuple[Array, dict[str, Array]]:
  """The SPG objective from per-step terms of any task.

  Args:
    terms: `StepTerms` with losses/correct `[B, T+1, *E]`.
    lambdas: length-T replica weights (validated against T).
    form: "masked" (reference HPO), "reinforce" (return-weighted, reference NAS) or
      "unmasked" (the masked form without masks: an ablation, see `unmasked_loss`).
    normalize: "none" (default; what the authors' runs did in effect), "loss" (multiply by
      `stop_gradient(exp(L_base - L_total))`, what they intended), or "lr" (the loss is
      left as is and the factor is returned as `norm_factor` for the caller's step size).
      A bool is accepted: True is "loss", False "none".
    base_denominator: "valid" (default) or "all" (see `base_term`).
  Returns:
    (scalar loss to minimise, metrics dict: `loss`, `loss_total` (before normalisation),
    `loss_base`, `loss_replicas [T]`, `norm_factor`, `survival [T+1]`, `alive [T+1]`,
    `mean_episode_length`, `mean_return`).
  """
  _check_choice("form", form, LOSS_FORMS)
  mode = normalize_mode(normalize)
  lam = validate_lambdas(lambdas, terms.losses.shape[1] - 1)
  form_loss = {"masked": masked_loss, "reinforce": reinforce_loss,
               "unmasked": unmasked_loss}[form]
  total, base, replicas = form_loss(terms, lam, base_denominator)
  if mode == "none":
    loss, factor = total, jnp.ones_like(total)
  else:
    loss, factor = normalize_loss(total, base)
    loss = loss if mode == "loss" else total
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
                            normalize: bool | str = "none") -> tuple[Array, dict[str, Array]]:
  """`spg_loss` for classification: `step_logits [B, T+1, C]`, labels `[B]` or `[B, C]`."""
  return spg_loss(classification_terms(step_logits, labels, label_smoothing), lambdas, form,
                  normalize)
