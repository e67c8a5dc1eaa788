"""The train state: everything a checkpoint holds besides the data position."""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from spg_jax.train import controller
from spg_jax.train import optim


@struct.dataclass
class TrainState:
  """step: int32 `[]`; params / batch_stats: the model's collections (batch_stats `{}` when
  the model has no BatchNorm); opt_state: the optax chain's state (injected hyperparameters
  inside); ctrl: `controller.ControllerState` (rates `[T]`, T = 0 without SPG);
  skipped_steps: int32 `[]`, steps whose update was dropped as non-finite
  (`skip_nonfinite`); `step` counts them too (they consumed a batch).

  No RNG: the dropout key of step s is `fold_in(base_key, s)`, computed inside the step.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ctrl: controller.ControllerState
  skipped_steps: jax.Array

  def variables(self) -> dict:
    """`{"params": ..., "batch_stats": ...}` (batch_stats only when the model has some)."""
    out = {"params": self.params}
    if self.batch_stats:
      out["batch_stats"] = self.batch_stats
    return out


def with_dropout_rates(state: TrainState, rates: Any) -> TrainState:
  """`state` with the replicas' dropout rates `[T]` replaced (e.g. by hand or a policy),
  keeping dtype and sharding so that the jitted step does not retrace."""
  current = state.ctrl.rates
  rates = jnp.asarray(rates, current.dtype).reshape(current.shape)
  if isinstance(current, jax.Array) and not isinstance(current, jax.core.Tracer):
    rates = jax.device_put(rates, current.sharding)
  return state.replace(ctrl=state.ctrl._replace(rates=rates))


def make_create_state(tx: optax.GradientTransformation) -> Callable[..., TrainState]:
  """`create(variables, hparams, rates) -> TrainState` at step 0."""
  def create(variables, hparams, rates):
    params = variables["params"]
    opt_state = optim.set_hparams(tx.init(params), **hparams)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=opt_state,
                      ctrl=controller.init_controller(rates),
                      skipped_steps=jnp.zeros((), jnp.int32))
  return create
