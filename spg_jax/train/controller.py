"""Online controller of the replicas' dropout rates (off by default).

SPG's trajectory tells, per replica, how many of the episodes that reached it survive it:
the conditional survival `c_t = survival_t / survival_{t-1}` (`survival` from
`core.spg_loss`, index 0 = the base accuracy). A replica that almost every episode survives
perturbs too little to teach anything; one that almost nobody survives ends every episode.
Every `every_steps` steps the controller moves each rate toward the value at which `c_t`
equals `target_survival`:

    rate_t <- clip(rate_t + step_size * (c_t - target_survival), min_rate, max_rate)

(more dropout when the replica is too easy, less when too hard). The rates are a `[T]`
float32 array passed to `SPGModel.apply(..., replica_rates=rates)` as a traced value, so a
change never recompiles. The state also accumulates the survival statistics of the steps
since the last update; it is part of the train state and therefore of every checkpoint.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

# Guards the division when no episode reached a replica (then c_t counts as 0: too hard).
_EPS = 1e-6


class ControllerState(NamedTuple):
  """rates `[T]` float32; survival_sum `[T+1]` float32 (sum over steps since the last
  update); count int32 `[]` (number of steps summed)."""
  rates: jax.Array
  survival_sum: jax.Array
  count: jax.Array


def init_controller(rates) -> ControllerState:
  """Initial state from the configured rates (length T; T may be 0 when SPG is off)."""
  rates = jnp.asarray(rates, jnp.float32).reshape(-1)
  return ControllerState(rates, jnp.zeros(rates.shape[0] + 1, jnp.float32),
                         jnp.zeros((), jnp.int32))


def accumulate(state: ControllerState, survival: jax.Array) -> ControllerState:
  """Adds one step's `survival [T+1]` to the running sum (inside the train step)."""
  return state._replace(survival_sum=state.survival_sum + survival.astype(jnp.float32),
                        count=state.count + 1)


def conditional_survival(survival: jax.Array) -> jax.Array:
  """`survival [T+1]` -> `c [T]`, `c_t = survival_t / survival_{t-1}` (0 when nothing
  reached replica t)."""
  previous = survival[:-1]
  return jnp.where(previous > _EPS, survival[1:] / jnp.maximum(previous, _EPS), 0.0)


def controller_update(state: ControllerState, survival_stats: jax.Array, *,
                      target_survival: float, step_size: float, min_rate: float,
                      max_rate: float) -> ControllerState:
  """One controller move; pure.

  Args:
    state: current rates (the sums are reset here).
    survival_stats: `[T+1]` mean survival over the window (e.g. `survival_sum / count`).
    target_survival, step_size, min_rate, max_rate: `config.controller` fields.
  Returns:
    The new state with moved, clipped rates and an empty window.
  """
  error = conditional_survival(jnp.asarray(survival_stats, jnp.float32)) - target_survival
  rates = jnp.clip(state.rates + step_size * error, min_rate, max_rate)
  return ControllerState(rates.astype(jnp.float32), jnp.zeros_like(state.survival_sum),
                         jnp.zeros_like(state.count))


def window_mean(state: ControllerState) -> jax.Array:
  """Mean survival `[T+1]` of the steps accumulated since the last update."""
  return state.survival_sum / jnp.maximum(state.count, 1).astype(jnp.float32)
