"""The training loop: `train_and_evaluate(config, workdir) -> TrainResult`.

Per step: next sharded batch -> jitted `train_step` (no host sync). Every
`log_every_steps`: fetch the window's metrics once, raise on a non-finite loss (naming the
step), log means. Every `controller.every_steps` (if enabled): move the dropout rates.
Every `eval_every_steps` and at the end: validation accuracy/loss; the best-on-validation
variables are kept. Checkpoints every `checkpoint.every_steps` and at the end; a run started
on a workdir with a checkpoint resumes from it (bitwise-identical on CPU to an uninterrupted
run). At the end, the test split is evaluated once with the best variables
(`config.eval_test`), and the best stripped base variables are exported to
`workdir/export/` (`checkpointing.load_exported`).
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import jax
import numpy as np

from spg_jax import checkpointing
from spg_jax import config_validation
from spg_jax import data
from spg_jax import metrics_writer
from spg_jax import sharding
from spg_jax import steps
from spg_jax.replicas import strip_replicas

EXPORT_DIR = "export"
CHECKPOINT_DIR = "checkpoints"


@dataclasses.dataclass
class TrainResult:
  """What a run returns.

  best_step / best_val_accuracy: the validation evaluation that selected `best_variables`.
  test_accuracy: test accuracy of `best_variables` (None unless `config.eval_test`).
  final_variables / best_variables: BASE-model variables (replicas stripped) as host numpy
    trees `{"params": ..., "batch_stats": ...}` (batch_stats only for models with some).
  history: every logged record `{"step": s, "<group>/<name>": value, ...}`.
  wall_time_s: wall-clock time of this call; num_steps: steps trained in total.
  """
  best_step: int
  best_val_accuracy: float
  test_accuracy: float | None
  final_variables: dict
  best_variables: dict
  history: list[dict]
  wall_time_s: float
  num_steps: int


def _host(tree: Any) -> Any:
  return jax.tree.map(np.asarray, jax.device_get(tree))


def _base_variables(variables: dict, spg_enabled: bool) -> dict:
  variables = {k: v for k, v in variables.items() if k == "params" or v}
  return strip_replicas(variables) if spg_enabled else variables


def _with_init_variables(variables: dict, init_variables: dict, spg_enabled: bool) -> dict:
  """The model's fresh `variables` with the base part replaced by `init_variables`."""
  fresh_base = _base_variables(variables, spg_enabled)
  given = {k: v for k, v in init_variables.items() if k == "params" or v}
  if jax.tree.structure(given) != jax.tree.structure(fresh_base) or any(
      np.shape(a) != np.shape(b) for a, b in zip(jax.tree.leaves(given),
                                                 jax.tree.leaves(fresh_base))):
    raise ValueError("init_variables: structure or shapes differ from the base model "
                     f"{sorted(fresh_base)} built from config.model")
  given = jax.tree.map(lambda g, f: np.asarray(g, dtype=f.dtype), given, fresh_base)
  if not spg_enabled:
    return given
  out = {k: dict(v) for k, v in variables.items()}
  for collection, tree in given.items():
    out[collection]["base"] = tree
  return out


def _evaluate(engine: steps.Engine, state: steps.TrainState, config: Any, split: str
              ) -> dict[str, float]:
  """Accuracy and mean cross-entropy of `state` on every example of `split`."""
  it = data.make_iterator(
      config.dataset.name, split, global_batch_size=config.eval_batch_size,
      mesh=engine.spec.mesh, seed=0, data_dir=config.dataset.data_dir, shuffle=False,
      num_epochs=1, drop_remainder=False,
      validation_fraction=config.dataset.validation_fraction)
  totals = None
  for batch in it:
    sums = engine.eval_step(state, batch)
    totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
  totals = jax.device_get(totals)
  count = max(float(totals["count"]), 1.0)
  return {"accuracy": float(totals["correct"]) / count, "loss": float(totals["loss"]) / count}


def _flush(window: list[tuple[int, dict]], writer: metrics_writer.MetricsWriter,
           skip_names: tuple = ()) -> None:
  """Fetches a window of per-step metrics, raises on a non-finite loss, logs the means."""
  if not window:
    return
  fetched = jax.device_get([m for _, m in window])
  for (step, _), metrics in zip(window, fetched):
    if not np.isfinite(metrics["loss"]):
      raise FloatingPointError(f"step {step}: non-finite training loss {metrics['loss']} "
                               f"(loss_base={metrics['loss_base']})")
  means = {k: np.mean([m[k] for m in fetched], axis=0) for k in fetched[0]
           if k not in skip_names}
  writer.write_scalars(window[-1][0], metrics_writer.flatten_scalars("train", means))
  window.clear()


def train_and_evaluate(config: Any, workdir: str, *, init_variables: dict | None = None
                       ) -> TrainResult:
  """Trains `config` (schema: experiments/configs/common.py) in `workdir`.

  Args:
    config: a ConfigDict; validated first (one-line ValueError naming the bad field).
    workdir: run directory: checkpoints/, export/, tensorboard/, metrics.jsonl. A
      checkpoint there is resumed from.
    init_variables: optional BASE-model variables `{"params", "batch_stats"}` to start from
      (the retraining protocol); the replicas start fresh. Ignored when resuming.
  Returns:
    A `TrainResult`.
  """
  start_time = time.time()
  config_validation.validate_config(config)
  info = data.dataset_info(config.dataset.name)
  mesh = sharding.make_mesh(config.num_devices or None)
  engine = steps.get_engine(steps.spec_from_config(config, mesh, info.num_classes,
                                                   info.input_shape))
  spg_enabled = engine.spec.spg_enabled
  init_key, dropout_key = jax.random.split(jax.random.key(config.seed))

  variables = engine.init(init_key)
  if init_variables is not None:
    variables = jax.device_put(_with_init_variables(_host(variables), init_variables,
                                                    spg_enabled), sharding.replicated(mesh))
  state = engine.create_state(variables, steps.optimizer_hparams(config),
                              np.asarray(engine.spec.rates, np.float32))
  best = _host(state.variables())
  best_step, best_val = 0, -1.0
  history: list[dict] = []

  train_it = data.make_iterator(
      config.dataset.name, "train", global_batch_size=config.batch_size, mesh=mesh,
      seed=config.seed, data_dir=config.dataset.data_dir,
      validation_fraction=config.dataset.validation_fraction)
  os.makedirs(workdir, exist_ok=True)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, CHECKPOINT_DIR),
                                    config.checkpoint.keep)
  latest = ckpt.latest_step()
  if latest is not None:
    state, best, saved = ckpt.restore(latest, state, state.variables())
    best = _host(best)
    train_it.set_state(saved["iterator"])
    best_step, best_val, history = saved["best_step"], saved["best_val_accuracy"], \
        saved["history"]

  step = int(jax.device_get(state.step))
  is_main = jax.process_index() == 0
  writer = metrics_writer.MetricsWriter(workdir, config.num_steps, step, enabled=is_main,
                                        progress_bar=config.progress_bar)
  writer.history.extend(history)
  ctrl = config.controller
  window: list[tuple[int, dict]] = []
  try:
    while step < config.num_steps:
      state, metrics = engine.train_step(state, next(train_it), dropout_key)
      step += 1
      window.append((step, metrics))
      writer.advance()
      last = step == config.num_steps
      if ctrl.enabled and step % ctrl.every_steps == 0:
        state = state.replace(ctrl=engine.controller_move(
            state.ctrl, ctrl.target_survival, ctrl.step_size, ctrl.min_rate, ctrl.max_rate))
        writer.write_scalars(step, metrics_writer.flatten_scalars(
            "controller", {"dropout_rates": state.ctrl.rates}))
      if step % config.log_every_steps == 0 or last:
        _flush(window, writer)
      if step % config.eval_every_steps == 0 or last:
        _flush(window, writer)
        val = _evaluate(engine, state, config, "validation")
        writer.write_scalars(step, metrics_writer.flatten_scalars("eval", val))
        if val["accuracy"] > best_val:
          best_step, best_val, best = step, val["accuracy"], _host(state.variables())
      every = config.checkpoint.every_steps
      if (every and step % every == 0) or last:
        _flush(window, writer)
        ckpt.save(step, state, best, {
            "iterator": train_it.get_state(), "best_step": best_step,
            "best_val_accuracy": best_val, "history": writer.history})

    test_accuracy = None
    if config.eval_test:
      best_state = state.replace(**jax.device_put(
          {"params": best["params"], "batch_stats": best.get("batch_stats", {})},
          sharding.replicated(mesh)))
      test = _evaluate(engine, best_state, config, "test")
      test_accuracy = test["accuracy"]
      writer.write_scalars(best_step, metrics_writer.flatten_scalars("test", test))
    best_base = _base_variables(best, spg_enabled)
    checkpointing.export_variables(os.path.join(workdir, EXPORT_DIR), best_base)
    final_base = _base_variables(_host(state.variables()), spg_enabled)
  finally:
    ckpt.close()
    writer.close()
  return TrainResult(best_step=best_step, best_val_accuracy=best_val,
                     test_accuracy=test_accuracy, final_variables=final_base,
                     best_variables=best_base, history=list(writer.history),
                     wall_time_s=time.time() - start_time, num_steps=step)
