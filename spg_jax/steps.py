"""Train state, the pure train/eval steps, and the compiled engine cached on static settings.

* `TrainState`: step, params, batch_stats, opt_state, controller state (the replicas'
  dropout rates and their survival window), count of skipped non-finite steps. No RNG:
  the dropout key of step s is `fold_in(base_key, s)`, computed inside the step.
* Health: every step reports, inside the jitted step (no host sync), whether its batch is
  sane (`input_finite`, `label_in_range`) and which of its terms are finite (`finite`, in
  `health_names` order: losses, each gradient leaf, the updated params and batch_stats).
  The trainer fetches them with the other metrics and raises naming the step and the first
  bad term; with `skip_nonfinite` a non-finite step keeps the old params/opt state instead.
* `make_train_step` / `make_eval_step` build pure functions
  `train_step(state, batch, key) -> (state, metrics)`, `eval_step(state, batch) -> sums`.
* `Engine` jits them over a `Mesh` (batch over 'data', everything else replicated), and
  `get_engine(spec)` caches one per hashable `StaticSpec`, so that many runs in one process
  (seeds, arms) with the same static settings compile once. Everything numeric a run or a
  controller may change (learning rate, momentum, weight decay, dropout rates, seed) is a
  traced value, never part of the spec.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh

from spg_jax import controller
from spg_jax import core
from spg_jax import models
from spg_jax import optim
from spg_jax import sharding
from spg_jax.replicas import SPGModel, hpo_replicas, nas_replicas

NORMALIZE_MODES = ("none", "loss", "lr")


@struct.dataclass
class TrainState:
  """Everything a checkpoint holds besides the data position.

  step: int32 `[]`; params / batch_stats: the model's collections (batch_stats `{}` when
  the model has no BatchNorm); opt_state: the optax chain's state (injected hyperparameters
  inside); ctrl: `controller.ControllerState` (rates `[T]`, T = 0 without SPG);
  skipped_steps: int32 `[]`, steps whose update was dropped as non-finite
  (`skip_nonfinite`); `step` counts them too (they consumed a batch).
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


@dataclasses.dataclass(frozen=True)
class StaticSpec:
  """The settings a compiled step depends on (hashable; all from the config).

  model_kwargs: sorted `(name, value)` pairs; rates: the configured per-replica rates (the
  replicas' defaults; the step always passes the traced controller rates); skip_nonfinite:
  drop non-finite updates inside the step instead of applying them.
  """
  model_name: str
  model_kwargs: tuple
  num_classes: int
  input_shape: tuple
  spg_enabled: bool
  kind: str
  num_replicas: int
  rates: tuple
  lambdas: tuple
  depth: int
  use_relu: bool
  form: str
  normalize: str
  label_smoothing: float
  optimizer: str
  nesterov: bool
  schedule: str
  decay_every_steps: int
  decay_factor: float
  warmup_steps: int
  num_steps: int
  mesh: Mesh
  skip_nonfinite: bool = False


def _hashable(value: Any) -> Any:
  if isinstance(value, (list, tuple)):
    return tuple(_hashable(v) for v in value)
  if isinstance(value, dict):
    return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
  return value


def spec_from_config(config: Any, mesh: Mesh, num_classes: int, input_shape: tuple
                     ) -> StaticSpec:
  """The static part of a (validated) config."""
  spg = config.spg
  kwargs = dict(config.model.kwargs.to_dict()) if hasattr(config.model.kwargs, "to_dict") \
      else dict(config.model.kwargs)
  num_classes = int(kwargs.pop("num_classes", num_classes))
  rates, lambdas = core.validate_hparams(spg.num_replicas, spg.rate, spg.lambdas)
  stepped = config.schedule.name == "step"
  return StaticSpec(
      model_name=config.model.name, model_kwargs=_hashable(kwargs), num_classes=num_classes,
      input_shape=tuple(input_shape), spg_enabled=bool(spg.enabled), kind=spg.kind,
      num_replicas=int(spg.num_replicas) if spg.enabled else 0,
      rates=rates if spg.enabled else (), lambdas=lambdas if spg.enabled else (),
      depth=int(spg.depth), use_relu=bool(spg.use_relu), form=spg.form,
      normalize=spg.normalize if spg.enabled else "none",
      label_smoothing=float(spg.label_smoothing), optimizer=config.optimizer.name,
      nesterov=bool(config.optimizer.nesterov), schedule=config.schedule.name,
      decay_every_steps=int(config.schedule.decay_every_steps) if stepped else 0,
      decay_factor=float(config.schedule.decay_factor) if stepped else 1.0,
      warmup_steps=int(config.schedule.warmup_steps),
      # Only the cosine schedule depends on the run length; elsewhere leaving it out lets
      # runs of different lengths share compiled steps.
      num_steps=int(config.num_steps) if config.schedule.name == "cosine" else 0,
      mesh=mesh, skip_nonfinite=bool(config.get("skip_nonfinite", False)))


# ------------------------------------------------------------------------ model and optax
def build_base_model(spec: StaticSpec) -> nn.Module:
  return models.get(spec.model_name, num_classes=spec.num_classes, **dict(spec.model_kwargs))


def build_model(spec: StaticSpec) -> nn.Module:
  """The trained model: `SPGModel(base, replicas...)` with SPG, else the base model."""
  base = build_base_model(spec)
  if not spec.spg_enabled:
    return base
  attach = models.spg_attachment(base, spec.kind)
  if spec.kind == "hpo":
    replicas = hpo_replicas(spec.num_replicas, spec.rates, spec.depth, spec.use_relu)
  else:
    replicas = nas_replicas(spec.num_replicas, attach["block"], spec.depth)
  return SPGModel(base, attach["head"], replicas, head_path=attach["head_path"],
                  feature_key=attach["feature_key"], pre_head=attach["pre_head"])


def build_optimizer(spec: StaticSpec) -> optax.GradientTransformation:
  """The optax chain; numeric hyperparameters start at placeholders the state overwrites."""
  schedule = optim.schedule_factor(spec.schedule, spec.num_steps,
                                   decay_every_steps=spec.decay_every_steps,
                                   decay_factor=spec.decay_factor,
                                   warmup_steps=spec.warmup_steps)
  return optim.make_optimizer(spec.optimizer, schedule, learning_rate=0.0,
                              nesterov=spec.nesterov)


def optimizer_hparams(config: Any) -> dict[str, float]:
  """The injected numeric hyperparameters a run starts with."""
  out = {"learning_rate": float(config.optimizer.learning_rate),
         "weight_decay": float(config.optimizer.weight_decay)}
  if config.optimizer.name == "sgd":
    out["momentum"] = float(config.optimizer.momentum)
  return out


# ---------------------------------------------------------------------------------- loss
def trajectory_loss(step_logits: jax.Array, labels: jax.Array, spec: StaticSpec
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The SPG loss of `step_logits [B, T+1, C]`; T = 0 (no SPG) is plain cross-entropy.

  Returns (loss to differentiate, metrics: loss, loss_base, loss_replicas `[T]`,
  norm_factor, survival `[T+1]` (survival[0] = train accuracy), mean_episode_length).
  """
  if spec.num_replicas == 0:
    terms = core.classification_terms(step_logits, labels, spec.label_smoothing)
    loss = jnp.mean(terms.losses[:, 0].astype(jnp.float32))
    stats = core.trajectory_stats(terms.correct)
    return loss, {"loss": loss, "loss_base": loss, "loss_replicas": jnp.zeros((0,)),
                  "norm_factor": jnp.ones(()), "survival": stats["survival"],
                  "mean_episode_length": stats["mean_episode_length"]}
  loss, metrics = core.classification_spg_loss(
      step_logits, labels, spec.lambdas, spec.form, spec.label_smoothing,
      normalize=spec.normalize == "loss")
  if spec.normalize == "lr":  # same factor, applied to the step size instead of the loss
    metrics["norm_factor"] = jax.lax.stop_gradient(
        jnp.exp(metrics["loss_base"] - metrics["loss_total"]))
  keep = ("loss", "loss_base", "loss_replicas", "norm_factor", "survival",
          "mean_episode_length")
  return loss, {k: metrics[k] for k in keep}


# --------------------------------------------------------------------------------- steps
def make_init(model: nn.Module, spec: StaticSpec) -> Callable[[jax.Array], dict]:
  """`init(key) -> variables` of the trained model (replicas included)."""
  def init(key):
    params_key, dropout_key = jax.random.split(key)
    dummy = jnp.zeros((2,) + spec.input_shape, jnp.float32)
    # train=True: SPGModel creates its replicas' params only in train mode.
    return model.init({"params": params_key, "dropout": dropout_key}, dummy, train=True)
  return init


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


# -------------------------------------------------------------------------------- health
def _all_finite(x: jax.Array) -> jax.Array:
  return jnp.all(jnp.isfinite(x))


def path_name(path: tuple) -> str:
  """A pytree key path as `"base/head/kernel"`."""
  return jax.tree_util.keystr(path, simple=True, separator="/")


def health_names(spec: StaticSpec, params: Any) -> list[str]:
  """Names of the entries of a train step's `finite` metric, in order: `loss_base`,
  `loss_replicas[t]`, `loss`, `grad <leaf path>` for every params leaf, `updated
  params/batch_stats`.
  `params` gives the tree structure only (arrays or shapes)."""
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  return (["loss_base"] + [f"loss_replicas[{t}]" for t in range(spec.num_replicas)] +
          ["loss"] + [f"grad {path_name(path)}" for path, _ in leaves] +
          ["updated params/batch_stats"])


def _finite_terms(metrics: dict, grads: Any, updated: Any) -> jax.Array:
  """bool `[len(health_names)]`: which terms of this step are finite (order as there);
  `updated`: the new params and batch_stats."""
  terms = [jnp.isfinite(metrics["loss_base"])[None], jnp.isfinite(metrics["loss_replicas"]),
           jnp.isfinite(metrics["loss"])[None],
           jnp.stack([_all_finite(g) for g in jax.tree.leaves(grads)]),
           jnp.all(jnp.stack([_all_finite(x) for x in jax.tree.leaves(updated)]))[None]]
  return jnp.concatenate([t.reshape(-1) for t in terms])


def _batch_health(batch: dict, num_classes: int) -> dict[str, jax.Array]:
  """`input_finite` and `label_in_range` ([0, num_classes)) of a training batch."""
  labels = batch["label"]
  return {"input_finite": _all_finite(batch["input"]),
          "label_in_range": jnp.all((labels >= 0) & (labels < num_classes))}


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, spec: StaticSpec
                    ) -> Callable[..., tuple[TrainState, dict]]:
  """The pure train step.

  `train_step(state, batch, key) -> (state, metrics)`: batch `{"input": [B, ...],
  "label": [B]}`; `key` is the run's base dropout key (typed), the step uses
  `fold_in(key, state.step)`. Metrics (scalars unless noted): loss, loss_base,
  loss_replicas `[T]`, norm_factor, survival `[T+1]`, mean_episode_length, accuracy,
  learning_rate (effective, of this step), dropout_rates `[T]`.
  """
  def train_step(state: TrainState, batch: dict, key: jax.Array):
    step_key = jax.random.fold_in(key, state.step)
    extra = {"replica_rates": state.ctrl.rates} if spec.spg_enabled else {}

    def loss_fn(params):
      variables = {"params": params}
      if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
      (logits, _), updates = model.apply(variables, batch["input"], train=True,
                                         rngs={"dropout": step_key},
                                         mutable=["batch_stats"], **extra)
      step_logits = logits if spec.spg_enabled else logits[:, None]
      loss, metrics = trajectory_loss(step_logits, batch["label"], spec)
      return loss, (metrics, updates.get("batch_stats", {}))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, (metrics, batch_stats)), grads = grad_fn(state.params)
    opt_state = state.opt_state
    if spec.normalize == "lr":
      opt_state = optim.set_hparams(opt_state, lr_scale=metrics["norm_factor"])
    updates, opt_state = tx.update(grads, opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["accuracy"] = metrics["survival"][0]
    metrics["learning_rate"] = optim.learning_rate(opt_state)
    metrics["dropout_rates"] = state.ctrl.rates
    metrics["finite"] = _finite_terms(metrics, grads, (params, batch_stats))
    metrics.update(_batch_health(batch, spec.num_classes))
    updated = (params, batch_stats, opt_state,
               controller.accumulate(state.ctrl, metrics["survival"]))
    skipped = state.skipped_steps
    if spec.skip_nonfinite:
      ok = jnp.all(metrics["finite"])
      old = (state.params, state.batch_stats, state.opt_state, state.ctrl)
      updated = jax.tree.map(lambda new, prev: jnp.where(ok, new, prev), updated, old)
      skipped = skipped + jnp.where(ok, 0, 1).astype(skipped.dtype)
    metrics["skipped_steps"] = skipped
    params, batch_stats, opt_state, ctrl = updated
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state, ctrl=ctrl, skipped_steps=skipped)
    return new_state, metrics

  return train_step


def make_eval_step(model: nn.Module, spec: StaticSpec) -> Callable[..., dict]:
  """`eval_step(state, batch) -> sums`: `correct`, `loss` (plain cross-entropy) and `count`
  summed over the real examples of the batch (`batch["mask"]`, when present, marks them),
  so a whole split is evaluated by adding the sums of its batches."""
  def eval_step(state: TrainState, batch: dict):
    logits, _ = model.apply(state.variables(), batch["input"], train=False)
    if spec.spg_enabled:
      logits = logits[:, 0]
    labels = batch["label"]
    mask = batch.get("mask", jnp.ones(labels.shape, bool)).astype(jnp.float32)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                             labels)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return {"correct": jnp.sum(correct * mask), "loss": jnp.sum(losses * mask),
            "count": jnp.sum(mask)}
  return eval_step


def _controller_move(ctrl, target_survival, step_size, min_rate, max_rate):
  return controller.controller_update(ctrl, controller.window_mean(ctrl),
                                      target_survival=target_survival, step_size=step_size,
                                      min_rate=min_rate, max_rate=max_rate)


@dataclasses.dataclass(frozen=True)
class Engine:
  """The model, optimizer and jitted functions of one `StaticSpec`.

  init(key) -> variables; create_state(variables, hparams, rates) -> TrainState;
  train_step(state, batch, key) -> (state, metrics) (donates `state`);
  eval_step(state, batch) -> sums; controller_move(ctrl, target, step, lo, hi) -> ctrl.
  Outputs are replicated over the mesh; batches come sharded over 'data'.
  """
  spec: StaticSpec
  model: nn.Module
  base_model: nn.Module
  tx: optax.GradientTransformation
  init: Callable
  create_state: Callable
  train_step: Callable
  eval_step: Callable
  controller_move: Callable


def build_engine(spec: StaticSpec) -> Engine:
  """Builds (without caching) the engine of `spec`; compilation happens on first call."""
  model, tx = build_model(spec), build_optimizer(spec)
  rep = sharding.replicated(spec.mesh)
  return Engine(
      spec=spec, model=model, base_model=build_base_model(spec), tx=tx,
      init=jax.jit(make_init(model, spec), out_shardings=rep),
      create_state=jax.jit(make_create_state(tx), out_shardings=rep),
      train_step=jax.jit(make_train_step(model, tx, spec), out_shardings=(rep, rep),
                         donate_argnums=0),
      eval_step=jax.jit(make_eval_step(model, spec), out_shardings=rep),
      controller_move=jax.jit(_controller_move, out_shardings=rep))


@functools.lru_cache(maxsize=16)
def get_engine(spec: StaticSpec) -> Engine:
  """`build_engine(spec)`, cached: later runs with the same static settings reuse the
  compiled steps (the protocol runs ~20 trainings in one process)."""
  return build_engine(spec)
