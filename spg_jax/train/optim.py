"""Optimizers and learning-rate schedules, every tunable value injected into the opt state.

`make_optimizer(...)` returns an optax chain whose numeric hyperparameters are traced values
in `opt_state` (found with `optax.tree_utils.tree_get/tree_set`), so a controller or a new
run with other values changes them without recompiling:

  * `learning_rate`: the peak (base) learning rate, a constant the caller may overwrite;
  * `schedule_factor`: the schedule's multiplier in [0, 1], recomputed by optax every step
    from the step count (a controller never writes it);
  * `momentum` (SGD), `weight_decay`;
  * `lr_scale`: a per-step multiplier of the whole update (the "lr" form of SPG's loss
    normalisation writes it every step; 1.0 otherwise).

The effective learning rate of a step is `learning_rate * schedule_factor * lr_scale`.
Only the schedule's *shape* (name, decay period, decay factor, warm-up, total steps) is
static: it is part of the compiled step.

Gradient accumulation (`accumulation_steps=k > 1`): the chain is wrapped in
`optax.MultiSteps`, so every `update` call is one micro-batch; the mean of k micro-batch
gradients reaches the chain on every k-th call (the others return zero updates). The
chain's state is then `opt_state.inner_opt_state`; `get_hparam`, `set_hparams` and
`learning_rate` find the hyperparameters there, and the schedule counts optimizer
updates (the inner chain's count), not micro-batches. `set_lr_scale` writes the "lr"
normalisation factor so that an update uses the geometric mean of its micro-batches'
factors (the one-big-batch factor when they have the same size).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "step", "cosine", "poly", "linear")
WARMUP_METHODS = ("linear", "constant")
LR_SCALE = "lr_scale"


def schedule_factor(name: str, num_steps: int, *, decay_every_steps: int = 0,
                    decay_factor: float = 0.5, warmup_steps: int = 0,
                    warmup_method: str = "linear", warmup_factor: float | None = None,
                    power: float = 0.9) -> optax.Schedule:
  """A multiplier schedule `count -> factor` with peak 1.

  Args:
    name: "constant"; "step" (x`decay_factor` every `decay_every_steps` steps, counted after
      warm-up; the reference uses x0.5 every 10 epochs); "cosine" (to 0 at `num_steps`);
      "poly" (`(1 - t / T) ** power` over the T steps after warm-up: torchvision's
      segmentation recipe, `PolynomialLR(power=0.9)`); "linear" (`1 - t / T` over the T
      steps after warm-up, to 0 at `num_steps`: Hugging Face's
      `get_linear_schedule_with_warmup`, the default of its Trainer).
    num_steps: total training steps.
    warmup_steps: warm-up steps before the main schedule (0: none).
    warmup_method: "linear" (from `warmup_factor` up to 1; torch's `LinearLR`) or
      "constant" (`warmup_factor` throughout; torch's `ConstantLR`, which torchvision's
      segmentation script can set to 0 so the first epochs only update BatchNorm statistics).
    warmup_factor: the warm-up's start (linear) or value (constant); None: 1/warmup_steps
      for linear (so the first step already moves), 1/3 for constant (torch's default).
    power: exponent of "poly".
  """
  if name not in SCHEDULES:
    raise ValueError(f"schedule.name={name!r}: must be one of {SCHEDULES}")
  if warmup_method not in WARMUP_METHODS:
    raise ValueError(f"schedule.warmup_method={warmup_method!r}: must be one of "
                     f"{WARMUP_METHODS}")
  main_steps = max(num_steps - warmup_steps, 1)
  if name == "constant":
    main = optax.constant_schedule(1.0)
  elif name == "step":
    main = optax.exponential_decay(1.0, transition_steps=max(decay_every_steps, 1),
                                   decay_rate=decay_factor, staircase=True)
  elif name == "poly":
    main = optax.polynomial_schedule(1.0, 0.0, power, transition_steps=main_steps)
  elif name == "linear":
    main = optax.linear_schedule(1.0, 0.0, transition_steps=main_steps)
  else:
    main = optax.cosine_decay_schedule(1.0, decay_steps=main_steps)
  if warmup_steps <= 0:
    return main
  if warmup_method == "constant":
    warmup = optax.constant_schedule(1.0 / 3.0 if warmup_factor is None
                                    else float(warmup_factor))
  else:
    start = 1.0 / warmup_steps if warmup_factor is None else float(warmup_factor)
    warmup = optax.linear_schedule(start, 1.0, transition_steps=warmup_steps - 1)
  return optax.join_schedules([warmup, main], boundaries=[warmup_steps])


def _sgd(learning_rate, schedule_factor, momentum, weight_decay, nesterov):  # pylint: disable=redefined-outer-name
  """torchvision-style SGD: weight decay added to the gradient before momentum."""
  return optax.chain(
      optax.add_decayed_weights(weight_decay),
      optax.sgd(learning_rate * schedule_factor, momentum=momentum, nesterov=nesterov))


def _adamw(learning_rate, schedule_factor, weight_decay):  # pylint: disable=redefined-outer-name
  return optax.adamw(learning_rate * schedule_factor, weight_decay=weight_decay)


def check_accumulation_steps(value: Any) -> int:
  """`value` if it is a valid `optimizer.accumulation_steps` (an int >= 1), else ValueError."""
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"optimizer.accumulation_steps={value!r}: must be an integer >= 1 "
                     f"(1: no gradient accumulation)")
  return value


def make_optimizer(name: str, schedule: Callable[[Any], Any], *, learning_rate: float,
                   momentum: float = 0.9, weight_decay: float = 0.0,
                   nesterov: bool = False, accumulation_steps: int = 1
                   ) -> optax.GradientTransformation:
  """The optimizer chain `[inject_hyperparams(sgd|adamw), inject_hyperparams(scale)]`,
  wrapped in `optax.MultiSteps(chain, accumulation_steps)` when that is > 1.

  Args:
    name: "sgd" (with momentum; the reference default) or "adamw".
    schedule: from `schedule_factor`; with accumulation it is evaluated at the count of
      optimizer updates (one per `accumulation_steps` calls), so build it in updates.
    learning_rate, momentum, weight_decay: initial values of the injected hyperparameters.
    nesterov: Nesterov momentum (SGD only; static).
    accumulation_steps: k micro-batches per optimizer update (1: none, the plain chain;
      static). Gradients are averaged, so k micro-batches of size b give the update of one
      batch of k*b under a mean-reduced loss.
  """
  check_accumulation_steps(accumulation_steps)
  if name == "sgd":
    inner = optax.inject_hyperparams(_sgd, static_args=("nesterov",))(
        learning_rate=learning_rate, schedule_factor=schedule, momentum=momentum,
        weight_decay=weight_decay, nesterov=nesterov)
  elif name == "adamw":
    inner = optax.inject_hyperparams(_adamw)(
        learning_rate=learning_rate, schedule_factor=schedule, weight_decay=weight_decay)
  else:
    raise ValueError(f"optimizer.name={name!r}: must be one of {OPTIMIZERS}")
  scale = optax.inject_hyperparams(optax.scale)(step_size=1.0)
  chain = optax.chain(inner, scale)
  if accumulation_steps == 1:
    return chain
  return optax.MultiSteps(chain, accumulation_steps).gradient_transformation()


def _is_value(path, value) -> bool:
  # A schedule's own state (`hyperparams_states`) shares the hyperparameter's name.
  del path
  return not isinstance(value, tuple)


def get_hparam(opt_state: Any, name: str) -> jnp.ndarray:
  """The current value of injected hyperparameter `name` (`lr_scale` included)."""
  return optax.tree_utils.tree_get(opt_state, "step_size" if name == LR_SCALE else name,
                                   filtering=_is_value)


def set_hparams(opt_state: Any, **values: Any) -> Any:
  """`opt_state` with injected hyperparameters replaced (same dtype and sharding, so nothing
  recompiles); works inside and outside jit.

  `lr_scale=` sets the scale of the whole update.
  """
  renamed = {("step_size" if k == LR_SCALE else k): v for k, v in values.items()}
  current = {k: optax.tree_utils.tree_get(opt_state, k, filtering=_is_value)
             for k in renamed}
  missing = sorted(k for k, v in current.items() if v is None)
  if missing:
    raise ValueError(f"optimizer state has no injected hyperparameter(s) {missing}")
  cast = {k: _like(v, current[k]) for k, v in renamed.items()}
  return optax.tree_utils.tree_set(opt_state, **cast)


def _like(value: Any, current: Any) -> Any:
  """`value` with `current`'s dtype and, outside jit, its sharding: a jitted step's trace
  depends on both, so a value written from the host must match to avoid retracing."""
  value = jnp.asarray(value, dtype=jnp.asarray(current).dtype)
  if isinstance(current, jax.Array) and not isinstance(current, jax.core.Tracer):
    value = jax.device_put(value, current.sharding)
  return value


def learning_rate(opt_state: Any) -> jnp.ndarray:
  """Effective learning rate of the last update: `learning_rate * schedule_factor * lr_scale`."""
  return (get_hparam(opt_state, "learning_rate") * get_hparam(opt_state, "schedule_factor")
          * get_hparam(opt_state, LR_SCALE))


def set_lr_scale(opt_state: Any, factor: jnp.ndarray) -> Any:
  """`opt_state` with `lr_scale` set for this step's `factor` (SPG's "lr" normalisation).

  Without accumulation: `lr_scale = factor`. With `optax.MultiSteps`, the update applied
  at the end of a cycle of k micro-batches must use one factor for the whole cycle: the
  running geometric mean `exp(mean_i log factor_i)` over the cycle's micro-batches so far
  is written (the inner chain's state is only read at the cycle's last micro-batch). As
  `factor_i = exp(L_base_i - L_total_i)` and the losses are means, that equals the factor
  of the concatenated batch when the micro-batches have the same size.
  """
  if not isinstance(opt_state, optax.MultiStepsState):
    return set_hparams(opt_state, lr_scale=factor)
  seen = opt_state.mini_step.astype(jnp.float32)  # micro-batches of this cycle before this one
  previous = jnp.log(get_hparam(opt_state, LR_SCALE).astype(jnp.float32))
  log_factor = jnp.log(jnp.asarray(factor, jnp.float32))
  # The first micro-batch of a cycle ignores the previous cycle's value (even a non-finite one).
  mean_log = jnp.where(seen > 0, (seen * previous + log_factor) / (seen + 1.0), log_factor)
  return set_hparams(opt_state, lr_scale=jnp.exp(mean_log))
