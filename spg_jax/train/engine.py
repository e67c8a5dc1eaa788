"""The compiled engine of a run: static settings by concern, the model and optimizer they
build, and the jitted functions, cached so that many runs in one process compile once.

* `StaticSpec` = `ModelSpec` (which base model) + the `Task` (a frozen dataclass) + the
  dataset's example `features` + `SPGSpec` (replicas and loss) + `OptimizerSpec` + the mesh
  + `skip_nonfinite`. Everything numeric a run or a controller may change (learning rate,
  momentum, weight decay, dropout rates, seed) is a traced value, never part of the spec.
* `build_engine(spec)` jits init, create_state, train_step, eval_step and the controller
  over the spec's `Mesh` (batch over 'data', everything else replicated); `get_engine(spec)`
  caches one engine per spec (the protocol runs ~20 trainings in one process).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import optax
from jax.sharding import Mesh

from spg_jax import models
from spg_jax import sharding
from spg_jax import spg_model
from spg_jax import tasks as tasks_lib
from spg_jax import validation
from spg_jax import xla_cpu
from spg_jax.train import controller
from spg_jax.train import optim
from spg_jax.train import state as state_lib
from spg_jax.train import step as step_lib



@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Which base model: a registry `name` with constructor `kwargs` (sorted `(name, value)`
  pairs; `num_classes` comes from the task), or a user's own linen `module` (then `name`
  is only a label)."""
  name: str
  kwargs: tuple = ()
  module: nn.Module | None = None


@dataclasses.dataclass(frozen=True)
class SPGSpec:
  """The replicas and the loss. `num_replicas` is 0 (and rates/lambdas empty) without SPG;
  `rates` are the configured per-replica rates (the replicas' defaults; the step always
  passes the traced controller rates). The fields are `config.spg`'s (see
  `spg_jax.config.base_config`)."""
  enabled: bool
  kind: str
  num_replicas: int
  rates: tuple
  lambdas: tuple
  depth: int
  use_relu: bool
  form: str
  normalize: str
  label_smoothing: float
  base_denominator: str = "valid"
  head_batch_stats: str = "base"


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """The optax chain's structure (its numbers are injected hyperparameters).

  `decay_every_steps`, `warmup_steps` and `num_steps` count optimizer updates: the config's
  step counts (micro-batches) divided by `accumulation_steps` (k micro-batches per update
  through `optax.MultiSteps`; 1: none)."""
  name: str
  nesterov: bool
  schedule: str
  decay_every_steps: int
  decay_factor: float
  warmup_steps: int
  num_steps: int
  accumulation_steps: int = 1


@dataclasses.dataclass(frozen=True)
class StaticSpec:
  """The settings a compiled step depends on (hashable). `features`: the dataset's example
  spec as sorted `(name, Feature)` pairs (for `init`'s dummy input)."""
  model: ModelSpec
  task: tasks_lib.Task
  features: tuple
  spg: SPGSpec
  optimizer: OptimizerSpec
  mesh: Mesh
  skip_nonfinite: bool = False
  xla_cpu_conv: str = "default"  # spg_jax.xla_cpu: the CPU kernels of the jitted steps

  @property
  def num_replicas(self) -> int:
    return self.spg.num_replicas

  @property
  def rates(self) -> tuple:
    return self.spg.rates


def _hashable(value: Any) -> Any:
  if isinstance(value, (list, tuple)):
    return tuple(_hashable(v) for v in value)
  if isinstance(value, dict):
    return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
  return value


def _as_dict(value: Any) -> dict:
  return dict(value.to_dict()) if hasattr(value, "to_dict") else dict(value)


def accumulation_steps(config: Any) -> int:
  """`config.optimizer.accumulation_steps` (1 when the field is absent: configs written
  before it existed)."""
  return int(config.optimizer.get("accumulation_steps", 1))


def build_task(config: Any, info: Any) -> tasks_lib.Task:
  """The task of `config.task` on the dataset `info` (`config.model.kwargs.num_classes`,
  when given, overrides the dataset's classes)."""
  kwargs = _as_dict(config.model.kwargs)
  num_classes = int(kwargs.get("num_classes", info.num_classes))
  return tasks_lib.build(config.task, num_classes, getattr(info, "ignore_label", None),
                         default_name=getattr(info, "task", None))


def spec_from_config(config: Any, mesh: Mesh, info: Any, model: nn.Module | None = None
                     ) -> StaticSpec:
  """The static part of a (validated) config.

  Args:
    info: the dataset's `spg_jax.data.DatasetInfo` (features, num_classes, ignore_label).
    model: a user's own base model (a linen module), used instead of `config.model`.
  """
  kwargs = _as_dict(config.model.kwargs)
  kwargs.pop("num_classes", None)  # the task's
  task = build_task(config, info)
  spg = config.spg
  rates, lambdas = validation.validate_hparams(spg.num_replicas, spg.rate, spg.lambdas)
  stepped = config.schedule.name == "step"
  k = accumulation_steps(config)  # the schedule counts updates: config steps // k
  return StaticSpec(
      model=ModelSpec(config.model.name if model is None else type(model).__name__,
                      _hashable(kwargs) if model is None else (), model),
      task=task,
      features=tuple(sorted(dict(info.features).items())),
      spg=SPGSpec(
          enabled=bool(spg.enabled), kind=spg.kind,
          num_replicas=int(spg.num_replicas) if spg.enabled else 0,
          rates=rates if spg.enabled else (), lambdas=lambdas if spg.enabled else (),
          depth=int(spg.depth), use_relu=bool(spg.use_relu), form=spg.form,
          normalize=spg.normalize if spg.enabled else "none",
          label_smoothing=float(spg.label_smoothing),
          base_denominator=spg.base_denominator,
          head_batch_stats=spg.head_batch_stats),
      optimizer=OptimizerSpec(
          name=config.optimizer.name, nesterov=bool(config.optimizer.nesterov),
          schedule=config.schedule.name,
          decay_every_steps=int(config.schedule.decay_every_steps) // k if stepped else 0,
          decay_factor=float(config.schedule.decay_factor) if stepped else 1.0,
          warmup_steps=int(config.schedule.warmup_steps) // k,
          # Only cosine, poly and linear depend on the run length; elsewhere leaving it out
          # lets runs of different lengths share compiled steps.
          num_steps=(int(config.num_steps) // k
                     if config.schedule.name in ("cosine", "poly", "linear") else 0),
          accumulation_steps=k),
      mesh=mesh, skip_nonfinite=bool(config.get("skip_nonfinite", False)),
      xla_cpu_conv=str(config.get("xla_cpu_conv", "default")))


# ------------------------------------------------------------------------ model and optax
def build_base_model(spec: StaticSpec) -> nn.Module:
  """The base model: the user's module, or the registry's with the task's classes."""
  if spec.model.module is not None:
    return spec.model.module
  return models.get(spec.model.name, num_classes=spec.task.num_classes,
                    **dict(spec.model.kwargs))


def attachments(base: nn.Module, spec: StaticSpec) -> dict[str, spg_model.Attachment | None]:
  """The heads the loss reads: the model's SPG attachments. Without SPG a model that has no
  `spg_attachments` method still trains on its main output (`{"out": None}`)."""
  kind = spec.spg.kind
  if not spec.spg.enabled and not hasattr(base, "spg_attachments"):
    return {spg_model.MAIN_HEAD: None}
  return dict(models.spg_attachments(base, kind))


def build_model(spec: StaticSpec) -> tuple[nn.Module, nn.Module, dict]:
  """(trained model, base model, attachments): `SPGModel(base, replicas...)` with SPG,
  else the base model itself."""
  base = build_base_model(spec)
  heads = attachments(base, spec)
  if not spec.spg.enabled:
    return base, base, heads
  model = spg_model.build_spg_model(base, heads, spec.spg.kind, spec.spg.num_replicas,
                                    spec.spg.rates, spec.spg.depth, spec.spg.use_relu,
                                    spec.spg.head_batch_stats)
  return model, base, heads


def build_optimizer(spec: StaticSpec) -> optax.GradientTransformation:
  """The optax chain; numeric hyperparameters start at placeholders the state overwrites."""
  o = spec.optimizer
  schedule = optim.schedule_factor(o.schedule, o.num_steps,
                                   decay_every_steps=o.decay_every_steps,
                                   decay_factor=o.decay_factor, warmup_steps=o.warmup_steps)
  return optim.make_optimizer(o.name, schedule, learning_rate=0.0, nesterov=o.nesterov,
                              accumulation_steps=o.accumulation_steps)


def optimizer_hparams(config: Any) -> dict[str, float]:
  """The injected numeric hyperparameters a run starts with."""
  out = {"learning_rate": float(config.optimizer.learning_rate),
         "weight_decay": float(config.optimizer.weight_decay)}
  if config.optimizer.name == "sgd":
    out["momentum"] = float(config.optimizer.momentum)
  return out


def _controller_move(ctrl, target_survival, step_size, min_rate, max_rate):
  return controller.controller_update(ctrl, controller.window_mean(ctrl),
                                      target_survival=target_survival, step_size=step_size,
                                      min_rate=min_rate, max_rate=max_rate)


@dataclasses.dataclass(frozen=True)
class Engine:
  """The model, optimizer and jitted functions of one `StaticSpec`.

  init(key) -> variables; create_state(variables, hparams, rates) -> TrainState;
  train_step(state, batch, key) -> (state, metrics) (donates `state`);
  eval_step(state, batch) -> the task's eval values; controller_move(ctrl, target, step,
  lo, hi) -> ctrl. Outputs are replicated over the mesh; batches come sharded over 'data'.
  """
  spec: StaticSpec
  model: nn.Module
  base_model: nn.Module
  attachments: Mapping[str, Any]
  tx: optax.GradientTransformation
  init: Callable
  create_state: Callable
  train_step: Callable
  eval_step: Callable
  controller_move: Callable

  @property
  def task(self) -> tasks_lib.Task:
    return self.spec.task


def build_engine(spec: StaticSpec) -> Engine:
  """Builds (without caching) the engine of `spec`; compilation happens on first call."""
  model, base, heads = build_model(spec)
  tx = build_optimizer(spec)
  rep = sharding.replicated(spec.mesh)
  # The mesh's platform decides (a CPU mesh in a process that also has a GPU gets them).
  options = xla_cpu.compiler_options(spec.mesh.devices.flat[0].platform, spec.xla_cpu_conv)
  return Engine(
      spec=spec, model=model, base_model=base, attachments=heads, tx=tx,
      init=jax.jit(step_lib.make_init(model, spec), out_shardings=rep),
      create_state=jax.jit(state_lib.make_create_state(tx), out_shardings=rep),
      train_step=jax.jit(step_lib.make_train_step(model, heads, tx, spec),
                         out_shardings=(rep, rep), donate_argnums=0,
                         compiler_options=options),
      eval_step=jax.jit(step_lib.make_eval_step(model, spec), out_shardings=rep,
                        compiler_options=options),
      controller_move=jax.jit(_controller_move, out_shardings=rep))


@functools.lru_cache(maxsize=16)
def get_engine(spec: StaticSpec) -> Engine:
  """`build_engine(spec)`, cached: later runs with the same static settings reuse the
  compiled steps."""
  return build_engine(spec)
