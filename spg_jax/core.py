"""SPG core: trajectories, per-task correctness, the two loss forms, loss normalisation.

Pure JAX, no Flax. Conventions (SPG_METHOD.md sections 4-5):

* A *trajectory* has T+1 steps: step 0 is the base model's prediction, steps 1..T the
  temporary replicas' predictions.
* Per-sample functions put the step axis first: `[T+1, *E]`, where `*E` are optional
  episode axes (pixels for segmentation, tokens for seq2seq; every element of `*E` is its own
  episode). They take `step_axis` (default 0) so the same function works on a batch with
  `step_axis=1` (`[B, T+1, *E]`); `jax.vmap(f)(x) == f(x, step_axis=1)`.
* Batched functions (the losses, the statistics) take `[B, T+1, *E]` and reduce over the
  batch and episode axes.

Alive mask: `m_0 = 1`, `m_{t+1} = m_t * correct_t`: the step of the first error still
contributes its loss, the steps after it are padding. Observed state `o_t` in {1, 0, -1}:
1 alive, 0 the step right after the first error (terminal), -1 padding (absorbing, as in the
reference code; the paper's closed form would revive (-1, wrong) to 0).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array
LOSS_FORMS = ("masked", "reinforce")
# The reference implementation's guard against an empty set of alive samples.
MASKED_EPS = 1e-6


# ----------------------------------------------------------------------------- validation
def validate_lambdas(lambdas: Any, num_replicas: int | None = None) -> tuple[float, ...]:
  """Returns lambdas as a tuple of floats; raises a one-line ValueError when malformed.

  Args:
    lambdas: length-T sequence of non-negative finite replica weights.
    num_replicas: if given, the required length T.
  """
  try:
    values = tuple(float(v) for v in np.atleast_1d(np.asarray(lambdas, dtype=np.float64)))
  except (TypeError, ValueError):
    raise ValueError(f"lambdas={lambdas!r}: must be a sequence of non-negative numbers") from None
  if not values:
    raise ValueError(f"lambdas={lambdas!r}: must be a non-empty sequence of non-negative numbers")
  if any(not np.isfinite(v) or v < 0 for v in values):
    raise ValueError(f"lambdas={lambdas!r}: every weight must be finite and >= 0")
  if num_replicas is not None and len(values) != num_replicas:
    raise ValueError(f"lambdas={lambdas!r}: needs exactly one weight per replica "
                     f"(num_replicas={num_replicas}, got {len(values)})")
  return values


def validate_rates(rates: Any, num_replicas: int) -> tuple[float, ...]:
  """Dropout rate(s) -> a length-T tuple; a scalar is shared by all replicas (reference).

  Raises a one-line ValueError if a rate is outside [0, 1) or the count is not 1 or T.
  """
  if isinstance(num_replicas, bool) or not isinstance(num_replicas, (int, np.integer)) \
      or num_replicas < 1:
    raise ValueError(f"num_replicas={num_replicas!r}: must be an integer >= 1")
  try:
    values = tuple(float(v) for v in np.atleast_1d(np.asarray(rates, dtype=np.float64)))
  except (TypeError, ValueError):
    raise ValueError(f"rate={rates!r}: must be a number or a sequence of numbers in [0, 1)") \
        from None
  if len(values) == 1:
    values = values * num_replicas
  if len(values) != num_replicas:
    raise ValueError(f"rate={rates!r}: give one shared rate or one per replica "
                     f"(num_replicas={num_replicas}, got {len(values)})")
  if any(not (0.0 <= v < 1.0) for v in values):
    raise ValueError(f"rate={rates!r}: every dropout rate must be in [0, 1)")
  return values


def validate_hparams(num_replicas: int, rates: Any, lambdas: Any) -> tuple[tuple, tuple]:
  """Checks replica count, rates and lambdas together; returns (rates, lambdas) tuples."""
  rates_t = validate_rates(rates, num_replicas)
  lambdas_t = validate_lambdas(lambdas, num_replicas)
  return rates_t, lambdas_t


def check_labels(labels: Any, num_classes: int, *, field: str = "labels",
                 ignore_label: int | None = None) -> None:
  """Host-side range check of integer labels; a no-op on tracers (inside jit).

  Raises ValueError naming `field` if a label is outside [0, num_classes) (the
  `ignore_label` value is allowed).
  """
  if isinstance(labels, jax.core.Tracer):
    return
  values = np.asarray(labels)
  if not np.issubdtype(values.dtype, np.integer) or values.size == 0:
    return
  if ignore_label is not None:
    values = values[values != ignore_label]
  if values.size and (values.min() < 0 or values.max() >= num_classes):
    raise ValueError(f"{field}: values must be in [0, {num_classes}) "
                     f"(got min {values.min()}, max {values.max()})")


def _num_replicas_from(step_values: Array, step_axis: int) -> int:
  return step_values.shape[step_axis] - 1


# ---------------------------------------------------------------------------- trajectories
def alive_masks(correct: Array, step_axis: int = 0) -> Array:
  """Alive mask per step, float32, no gradient.

  Args:
    correct: bool `[T+1, *E]` (or any shape with the step axis at `step_axis`), whether
      prediction t is correct.
  Returns:
    float32 same shape: `m_0 = 1`, `m_{t+1} = m_t * correct_t`.
  """
  c = jnp.moveaxis(jnp.asarray(correct).astype(jnp.float32), step_axis, 0)
  survived = jnp.cumprod(c[:-1], axis=0)
  masks = jnp.concatenate([jnp.ones_like(c[:1]), survived], axis=0)
  return jax.lax.stop_gradient(jnp.moveaxis(masks, 0, step_axis))


def observed_states(correct: Array, step_axis: int = 0) -> Array:
  """Ternary observed state `o_t` in {1, 0, -1}, int32, same shape as `correct`.

  `o_t = m_t + m_{t-1} - 1` with `m_{-1} = 1`: alive (1, 1) -> 1, the step after the first
  error (0, 1) -> 0, padding (0, 0) -> -1 (absorbing).
  """
  m = jnp.moveaxis(alive_masks(correct, step_axis), step_axis, 0)
  previous = jnp.concatenate([jnp.ones_like(m[:1]), m[:-1]], axis=0)
  states = (m + previous - 1).astype(jnp.int32)
  return jnp.moveaxis(states, 0, step_axis)


def step_rewards(correct: Array, step_axis: int = 0) -> Array:
  """Reward after step t: `r_t = prod_{k<=t} correct_k` = alive mask after step t, float32."""
  c = jnp.moveaxis(jnp.asarray(correct).astype(jnp.float32), step_axis, 0)
  return jax.lax.stop_gradient(jnp.moveaxis(jnp.cumprod(c, axis=0), 0, step_axis))


def episode_returns(correct: Array, lambdas: Sequence[float], step_axis: int = 0) -> Array:
  """Return of each episode: `G = 1 + sum_{k=1..T} lambda_k r_{k-1} = 1 + sum_k lambda_k m_k`.

  Args:
    correct: bool `[T+1, *E]` (step axis at `step_axis`).
    lambdas: length-T replica weights.
  Returns:
    float32 `[*E]` (the step axis removed).
  """
  lam = jnp.asarray(validate_lambdas(lambdas, _num_replicas_from(jnp.asarray(correct),
                                                                  step_axis)), jnp.float32)
  m = jnp.moveaxis(alive_masks(correct, step_axis), step_axis, 0)
  return 1.0 + jnp.tensordot(lam, m[1:], axes=(0, 0))


def episode_lengths(correct: Array, step_axis: int = 0) -> Array:
  """Number of steps that contribute to the loss, `sum_t m_t` in 1..T+1, float32 `[*E]`."""
  return jnp.sum(alive_masks(correct, step_axis), axis=step_axis)


# ----------------------------------------------------------------------------- correctness
def _labels_at_steps(labels: Array, step_axis: int) -> Array:
  return jnp.expand_dims(labels, step_axis)


def _hard_labels(labels: Array, num_classes: int) -> Array:
  """Integer labels from integer or soft/label-smoothed `[..., C]` targets (argmax)."""
  labels = jnp.asarray(labels)
  if jnp.issubdtype(labels.dtype, jnp.floating) and labels.ndim >= 1 \
      and labels.shape[-1] == num_classes:
    return jnp.argmax(labels, axis=-1)
  return labels.astype(jnp.int32)


def classification_correct(step_logits: Array, labels: Array, step_axis: int = 0) -> Array:
  """Top-1 correctness per step.

  Args:
    step_logits: `[T+1, *E, C]` (step axis at `step_axis`).
    labels: int `[*E]`, or soft targets `[*E, C]` (argmax is the label).
  Returns:
    bool `[T+1, *E]`.
  """
  hard = _hard_labels(labels, step_logits.shape[-1])
  return jnp.argmax(step_logits, axis=-1) == _labels_at_steps(hard, step_axis)


def qa_correct(start_logits: Array, end_logits: Array, start_positions: Array,
               end_positions: Array, step_axis: int = 0) -> Array:
  """Extractive QA: correct when both the start and the end top-1 positions are right.

  Args:
    start_logits, end_logits: `[T+1, L]` (step axis at `step_axis`), L = sequence length.
    start_positions, end_positions: int `[]` per sample.
  Returns:
    bool `[T+1]`.
  """
  return (classification_correct(start_logits, start_positions, step_axis)
          & classification_correct(end_logits, end_positions, step_axis))


def segmentation_correct(step_logits: Array, labels: Array, ignore_label: int = 255,
                         step_axis: int = 0) -> tuple[Array, Array]:
  """Per-pixel correctness; every pixel is its own episode.

  Args:
    step_logits: `[T+1, H, W, C]` (step axis at `step_axis`).
    labels: int `[H, W]`; pixels equal to `ignore_label` are not episodes.
  Returns:
    (correct bool `[T+1, H, W]`, valid float32 `[H, W]`).
  """
  valid = (labels != ignore_label)
  safe = jnp.where(valid, labels, 0)
  return classification_correct(step_logits, safe, step_axis), valid.astype(jnp.float32)


def token_correct(step_logits: Array, targets: Array, step_axis: int = 0) -> Array:
  """Seq2seq: per-token correctness, every token its own episode.

  Args: step_logits `[T+1, L, C]`; targets int `[L]`. Returns bool `[T+1, L]`.
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
                step_axis: int = 0) -> Array:
  """CTC speech recognition: a step is correct when at least `threshold` of the target
  tokens match the greedy decoding position by position.

  Args:
    step_logits: `[T+1, L, C]` (step axis at `step_axis`); logit_paddings `[L]`;
    labels: int `[S]`; label_paddings: `[S]`, 1.0 on padding.
  Returns:
    bool `[T+1]`.
  """
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


# --------------------------------------------------------------------------- per-step losses
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


# ---------------------------------------------------------------------------------- losses
def _weighted_mean(values: Array, weights: Array) -> Array:
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), MASKED_EPS)


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
  base = _weighted_mean(losses[:, 0], weights)
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
  per_step = jax.vmap(lambda v: _weighted_mean(v, weights), in_axes=1)(weighted)  # [T+1]
  base = _weighted_mean(losses[:, 0], weights)
  return jnp.sum(per_step), base, per_step[1:]


def normalize_loss(total: Array, base: Array) -> tuple[Array, Array]:
  """Loss normalisation: `total * stop_gradient(exp(base - total))`.

  The value equals `base * exp(...)`-scaled total whose gradient's scale follows the base
  loss; with plain SGD this is the same as scaling the step's learning rate by the factor.
  Returns (normalised loss, factor).
  """
  factor = jax.lax.stop_gradient(jnp.exp(base - total))
  return total * factor, factor


def trajectory_stats(correct: Array, valid: Array | None = None) -> dict[str, Array]:
  """Logging statistics of a batch of trajectories.

  Args:
    correct: bool `[B, T+1, *E]`; valid: `[B, *E]` episode weights or None.
  Returns:
    `survival`: `[T+1]`, fraction of episodes still correct after step t (index 0 is the
      base accuracy); `alive`: `[T+1]`, fraction alive at step t (= survival shifted, 1 at
      t=0); `mean_episode_length`: mean number of contributing steps, in [1, T+1].
  """
  shape = correct.shape[:1] + correct.shape[2:]
  weights = jnp.ones(shape, jnp.float32) if valid is None else \
      jnp.broadcast_to(jnp.asarray(valid, jnp.float32), shape)
  per_step_mean = jax.vmap(lambda v: _weighted_mean(v, weights), in_axes=1)
  return {
      "survival": per_step_mean(step_rewards(correct, step_axis=1)),
      "alive": per_step_mean(alive_masks(correct, step_axis=1)),
      "mean_episode_length": _weighted_mean(episode_lengths(correct, step_axis=1), weights),
  }


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
      "mean_return": _weighted_mean(episode_returns(terms.correct, lam, step_axis=1), weights),
      **trajectory_stats(terms.correct, terms.valid),
  }
  return loss, metrics


def classification_spg_loss(step_logits: Array, labels: Array, lambdas: Sequence[float],
                            form: str = "masked", label_smoothing: float = 0.0,
                            normalize: bool = False) -> tuple[Array, dict[str, Array]]:
  """`spg_loss` for classification: `step_logits [B, T+1, C]`, labels `[B]` or `[B, C]`."""
  return spg_loss(classification_terms(step_logits, labels, label_smoothing), lambdas, form,
                  normalize)


def cumulative_dropout_rates(rates: Sequence[float]) -> np.ndarray:
  """Dropout seen by replica t at initialisation: `1 - prod_{k<=t}(1 - p_k)`, `[T]`."""
  return 1.0 - np.cumprod(1.0 - np.asarray(rates, np.float64))
