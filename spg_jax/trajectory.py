"""Trajectories of SPG: alive masks, observed states, rewards, returns, lengths, statistics.

Pure JAX. A *trajectory* has T+1 steps: step 0 is the base model's prediction, steps 1..T the
temporary replicas' predictions. Per sample the step axis is first, `[T+1, *E]`,
where `*E` are optional episode axes (pixels for segmentation, tokens for seq2seq; every
element of `*E` is its own episode). They are batched by default, `[B, T+1, *E]` with
`step_axis=1` (the layout of `SPGModel`, `hpo_step_logits` and the losses); per sample (e.g.
inside `jax.vmap`) pass `step_axis=0`: `jax.vmap(partial(f, step_axis=0))(x) == f(x)`.
A `step_axis` outside the array's axes is a one-line ValueError.

Alive mask: `m_0 = 1`, `m_{t+1} = m_t * correct_t`: the step of the first error still
contributes its loss, the steps after it are padding. Observed state `o_t` in {1, 0, -1}:
1 alive, 0 the step right after the first error (terminal), -1 padding (absorbing, as in the
reference code; the paper's closed form would revive (-1, wrong) to 0).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from spg_jax.validation import validate_lambdas

Array = jax.Array
# The reference implementation's guard against an empty set of alive samples.
MASKED_EPS = 1e-6


def weighted_mean(values: Array, weights: Array) -> Array:
  """`sum(values * weights) / max(sum(weights), 1e-6)` over all axes."""
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), MASKED_EPS)


def check_step_axis(shape: Sequence[int], step_axis: int, field: str = "correct") -> int:
  """`step_axis` if it names an axis of an array of `shape`, else a one-line ValueError."""
  if isinstance(step_axis, bool) or not isinstance(step_axis, (int, np.integer)) \
      or not 0 <= step_axis < len(shape):
    raise ValueError(f"step_axis={step_axis!r}: {field} has shape {tuple(shape)}; use 1 for "
                     f"batched [B, T+1, ...] (default) or 0 per sample [T+1, ...]")
  return int(step_axis)


def alive_masks(correct: Array, step_axis: int = 1) -> Array:
  """Alive mask per step, float32, no gradient.

  Args:
    correct: bool `[B, T+1, *E]` (or any shape with the step axis at `step_axis`), whether
      prediction t is correct.
  Returns:
    float32 same shape: `m_0 = 1`, `m_{t+1} = m_t * correct_t`.
  """
  check_step_axis(jnp.shape(correct), step_axis)
  c = jnp.moveaxis(jnp.asarray(correct).astype(jnp.float32), step_axis, 0)
  survived = jnp.cumprod(c[:-1], axis=0)
  masks = jnp.concatenate([jnp.ones_like(c[:1]), survived], axis=0)
  return jax.lax.stop_gradient(jnp.moveaxis(masks, 0, step_axis))


def observed_states(correct: Array, step_axis: int = 1) -> Array:
  """Ternary observed state `o_t` in {1, 0, -1}, int32, same shape as `correct`.

  `o_t = m_t + m_{t-1} - 1` with `m_{-1} = 1`: alive (1, 1) -> 1, the step after the first
  error (0, 1) -> 0, padding (0, 0) -> -1 (absorbing).
  """
  m = jnp.moveaxis(alive_masks(correct, step_axis), step_axis, 0)
  previous = jnp.concatenate([jnp.ones_like(m[:1]), m[:-1]], axis=0)
  states = (m + previous - 1).astype(jnp.int32)
  return jnp.moveaxis(states, 0, step_axis)


def step_rewards(correct: Array, step_axis: int = 1) -> Array:
  """Reward after step t: `r_t = prod_{k<=t} correct_k` = alive mask after step t, float32."""
  check_step_axis(jnp.shape(correct), step_axis)
  c = jnp.moveaxis(jnp.asarray(correct).astype(jnp.float32), step_axis, 0)
  return jax.lax.stop_gradient(jnp.moveaxis(jnp.cumprod(c, axis=0), 0, step_axis))


def episode_returns(correct: Array, lambdas: Sequence[float], step_axis: int = 1) -> Array:
  """Return of each episode: `G = 1 + sum_{k=1..T} lambda_k r_{k-1} = 1 + sum_k lambda_k m_k`.

  Args:
    correct: bool `[B, T+1, *E]` (step axis at `step_axis`).
    lambdas: length-T replica weights.
  Returns:
    float32 `[*E]` (the step axis removed).
  """
  step_axis = check_step_axis(jnp.shape(correct), step_axis)
  lam = jnp.asarray(validate_lambdas(lambdas, jnp.shape(correct)[step_axis] - 1), jnp.float32)
  m = jnp.moveaxis(alive_masks(correct, step_axis), step_axis, 0)
  return 1.0 + jnp.tensordot(lam, m[1:], axes=(0, 0))


def episode_lengths(correct: Array, step_axis: int = 1) -> Array:
  """Number of steps that contribute to the loss, `sum_t m_t` in 1..T+1, float32 `[B, *E]`."""
  return jnp.sum(alive_masks(correct, step_axis), axis=step_axis)


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
  per_step_mean = jax.vmap(lambda v: weighted_mean(v, weights), in_axes=1)
  return {
      "survival": per_step_mean(step_rewards(correct, step_axis=1)),
      "alive": per_step_mean(alive_masks(correct, step_axis=1)),
      "mean_episode_length": weighted_mean(episode_lengths(correct, step_axis=1), weights),
  }


def cumulative_dropout_rates(rates: Sequence[float]) -> np.ndarray:
  """Dropout seen by replica t at initialisation: `1 - prod_{k<=t}(1 - p_k)`, `[T]`."""
  return 1.0 - np.cumprod(1.0 - np.asarray(rates, np.float64))
