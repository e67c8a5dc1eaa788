"""The training loop: `train_and_evaluate(config, workdir) -> TrainResult`.

Per step: next sharded batch -> jitted `train_step` (no host sync). Every
`log_every_steps`: fetch the window's metrics once, check them (a bad batch or, unless
`config.skip_nonfinite`, a non-finite loss/gradient/update raises naming the step and the
first bad term), log means. Every `controller.every_steps` (if enabled): move the dropout
rates. Every `eval_every_steps` and at the end: validation accuracy/loss; the
best-on-validation variables are kept. At the end, the test split is evaluated once with
the best variables (`config.eval_test`), and the best stripped base variables are exported
to `workdir/export/` (`checkpointing.load_exported`).

Never losing work:
* Checkpoints every `checkpoint.every_steps` and at the end, each only after its steps'
  metrics were checked (nothing non-finite is saved). A run started on a workdir resumes
  from its newest readable checkpoint, bitwise-identical on CPU to an uninterrupted run
  (metrics.jsonl included); damaged checkpoints are moved aside with a warning.
* SIGTERM (preemption) while training: the loop finishes its step, saves a checkpoint,
  waits for it to reach disk and raises `Preempted` (experiments/main.py exits 143). A
  SIGKILL loses only the steps since the last checkpoint.
* Bad input fails before anything is written: config, workdir, the first training batch
  (labels outside the classes, non-finite inputs), a checkpoint of another model.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time
from typing import Any, Iterator

import jax
from jax.experimental import multihost_utils
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
# Exit status of experiments/main.py after a SIGTERM stop (128 + SIGTERM, the shell's
# convention for "terminated"): non-zero, so that job systems rerun (resume) the job.
PREEMPTED_EXIT_CODE = 143


@dataclasses.dataclass
class TrainResult:
  """What a run returns.

  best_step / best_val_accuracy: the validation evaluation that selected `best_variables`.
  test_accuracy: test accuracy of `best_variables` (None unless `config.eval_test`).
  final_variables / best_variables: BASE-model variables (replicas stripped) as host numpy
    trees `{"params": ..., "batch_stats": ...}` (batch_stats only for models with some).
  history: every logged record `{"step": s, "<group>/<name>": value, ...}`.
  wall_time_s: wall-clock time of this call; num_steps: steps trained in total.
  skipped_steps: steps whose non-finite update was dropped (`config.skip_nonfinite`).
  """
  best_step: int
  best_val_accuracy: float
  test_accuracy: float | None
  final_variables: dict
  best_variables: dict
  history: list[dict]
  wall_time_s: float
  num_steps: int
  skipped_steps: int = 0


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


# ------------------------------------------------------------------------- bad input
def _check_workdir(workdir: str) -> None:
  """One-line ValueError unless `workdir` is, or can be created as, a writable directory.
  Creates nothing (a run that fails before training leaves no trace)."""
  probe = os.path.abspath(workdir)
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe):
    raise ValueError(f"workdir={workdir!r}: {probe} is not a directory")
  if not os.access(probe, os.W_OK | os.X_OK):
    raise ValueError(f"workdir={workdir!r}: {probe} is not writable")


def _local_rows(x: jax.Array) -> np.ndarray:
  """This process's rows of a batch-sharded array, on the host."""
  return np.concatenate([np.asarray(s.data) for s in x.addressable_shards])


def _check_first_batch(it: data.DataIterator, num_classes: int, dataset: str) -> None:
  """Reads the first training batch on the host (and rewinds): one-line ValueError naming
  the field if its inputs are not finite or its labels are outside [0, num_classes), before
  anything is written. Later batches are checked inside the train step (`_check`)."""
  position = it.get_state()
  batch = next(it)
  it.set_state(position)
  inputs, labels = _local_rows(batch["input"]), _local_rows(batch["label"])
  if not np.all(np.isfinite(inputs)):
    raise ValueError(f"dataset {dataset!r}: batch field 'input' holds NaN or Inf (first "
                     "training batch)")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"dataset {dataset!r}: batch field 'label' holds values in "
                     f"[{labels.min()}, {labels.max()}], outside [0, {num_classes}) (the "
                     "model's classes; first training batch)")


# ------------------------------------------------------------------- metrics and health
_HEALTH = ("finite", "input_finite", "label_in_range", "skipped_steps")


def _fetch(window: list[tuple[int, dict]]) -> None:
  """Replaces the window's device metrics by host numpy values (one transfer)."""
  fetched = jax.device_get([m for _, m in window])
  window[:] = [(step, jax.tree.map(np.asarray, m)) for (step, _), m in zip(window, fetched)]


def _check(window: list[tuple[int, dict]], names: list[str], skip_nonfinite: bool,
           num_classes: int, last_saved: int | None) -> None:
  """Raises for the first step of a fetched window with a bad batch (ValueError naming the
  field) or, unless `skip_nonfinite`, a non-finite term (FloatingPointError naming the
  step and the first such term of `steps.health_names`)."""
  for step, m in window:
    if not m["input_finite"]:
      raise ValueError(f"step {step}: batch field 'input' holds NaN or Inf")
    if not m["label_in_range"]:
      raise ValueError(f"step {step}: batch field 'label' holds values outside "
                       f"[0, {num_classes})")
    if not skip_nonfinite and not np.all(m["finite"]):
      kept = (f"the last checkpoint (step {last_saved}) is kept" if last_saved is not None
              else "no checkpoint was written")
      raise FloatingPointError(
          f"step {step}: non-finite {names[int(np.argmin(m['finite']))]} (the first "
          f"non-finite term; loss={float(m['loss'])}); nothing of this step was saved, "
          f"{kept}; config.skip_nonfinite=True skips such steps instead")


def _log(window: list[tuple[int, dict]], writer: metrics_writer.MetricsWriter) -> None:
  """Logs the window's means over its applied (finite) steps, and the running count of
  skipped steps."""
  applied = [m for _, m in window if np.all(m["finite"])]
  means = {k: np.mean([m[k] for m in applied], axis=0) for k in window[0][1]
           if k not in _HEALTH} if applied else {}
  means["skipped_steps"] = window[-1][1]["skipped_steps"]
  writer.write_scalars(window[-1][0], metrics_writer.flatten_scalars("train", means))


def _window_to_json(window: list[tuple[int, dict]]) -> list[dict]:
  """A fetched window as JSON (dtypes kept, so that logged means stay bitwise equal)."""
  return [{"step": step, "metrics": {k: {"dtype": str(v.dtype), "value": v.tolist()}
                                     for k, v in m.items()}} for step, m in window]


def _window_from_json(entries: list[dict]) -> list[tuple[int, dict]]:
  return [(e["step"], {k: np.asarray(v["value"], v["dtype"]) for k, v in e["metrics"].items()})
          for e in entries]


# -------------------------------------------------------------------------- preemption
class Preempted(Exception):
  """SIGTERM stopped the run at a step boundary after a checkpoint of `step` reached disk;
  running the same command again resumes from it (experiments/main.py exits with
  `PREEMPTED_EXIT_CODE`)."""

  def __init__(self, step: int, checkpoint_dir: str):
    super().__init__(f"preempted (SIGTERM) at step {step}; checkpoint saved in "
                     f"{checkpoint_dir}; rerun the same command to resume")
    self.step = step


@contextlib.contextmanager
def _sigterm_flag() -> Iterator[threading.Event]:
  """An event that SIGTERM sets while inside (instead of killing the process); the previous
  handler is restored on exit. Off the main thread, where Python cannot install signal
  handlers, the event is never set and SIGTERM keeps its usual effect."""
  stop = threading.Event()
  if threading.current_thread() is not threading.main_thread():
    yield stop
    return
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
  try:
    yield stop
  finally:
    signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _stop_requested(stop: threading.Event, step: int, log_every: int) -> bool:
  """Whether to stop before `step + 1`. With several processes (each gets its own SIGTERM,
  not at the same step) they agree at log boundaries, so all save the same step."""
  if jax.process_count() == 1:
    return stop.is_set()
  if step % log_every:
    return False
  flags = multihost_utils.process_allgather(np.int32(stop.is_set()))
  return bool(np.any(flags))


# -------------------------------------------------------------------------------- loop
def train_and_evaluate(config: Any, workdir: str, *, init_variables: dict | None = None
                       ) -> TrainResult:
  """Trains `config` (schema: experiments/configs/common.py) in `workdir`.

  Args:
    config: a ConfigDict; validated first (one-line ValueError naming the bad field).
    workdir: run directory: checkpoints/, export/, tensorboard/, metrics.jsonl. The newest
      readable checkpoint there is resumed from (damaged ones are moved to
      checkpoints_damaged/ with a warning).
    init_variables: optional BASE-model variables `{"params", "batch_stats"}` to start from
      (the retraining protocol); the replicas start fresh. Ignored when resuming.
  Returns:
    A `TrainResult`.
  Raises:
    ValueError: bad config, data (first batch or, later, a step's batch), workdir, or a
      checkpoint of another model/config; nothing is written before the data is checked.
    FloatingPointError: a non-finite loss, gradient or update (unless
      `config.skip_nonfinite`); the last checkpoint is kept, nothing non-finite is saved.
    Preempted: SIGTERM arrived (in the main thread); a checkpoint of the current step is
      on disk.
  """
  start_time = time.time()
  config_validation.validate_config(config)
  _check_workdir(workdir)
  info = data.dataset_info(config.dataset.name)
  mesh = sharding.make_mesh(config.num_devices or None)
  spec = steps.spec_from_config(config, mesh, info.num_classes, info.input_shape)
  # Data first: a missing or bad dataset fails in seconds, before anything compiles.
  train_it = data.make_iterator(
      config.dataset.name, "train", global_batch_size=config.batch_size, mesh=mesh,
      seed=config.seed, data_dir=config.dataset.data_dir,
      validation_fraction=config.dataset.validation_fraction)
  _check_first_batch(train_it, spec.num_classes, config.dataset.name)
  engine = steps.get_engine(spec)
  spg_enabled = spec.spg_enabled
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
  window: list[tuple[int, dict]] = []
  names = steps.health_names(engine.spec, state.params)

  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ValueError(f"workdir={workdir!r}: cannot create it ({e.strerror})") from None
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, CHECKPOINT_DIR),
                                    config.checkpoint.keep)
  try:
    resumed = ckpt.restore_newest_readable(state, state.variables())
  except BaseException:
    ckpt.close()
    raise
  saved_step = None
  if resumed is not None:
    saved_step, state, best, saved = resumed
    best = _host(best)
    train_it.set_state(saved["iterator"])
    best_step, best_val, history = saved["best_step"], saved["best_val_accuracy"], \
        saved["history"]
    window = _window_from_json(saved.get("pending", []))

  step = int(jax.device_get(state.step))
  is_main = jax.process_index() == 0
  writer = metrics_writer.MetricsWriter(workdir, config.num_steps, step, enabled=is_main,
                                        progress_bar=config.progress_bar, history=history)
  ctrl = config.controller
  skip = engine.spec.skip_nonfinite

  def flush(log: bool) -> None:
    """Fetches and checks the pending metrics (before anything may be saved); logs them."""
    if window:
      _fetch(window)
      _check(window, names, skip, engine.spec.num_classes, saved_step)
      if log:
        _log(window, writer)
        window.clear()

  def save() -> None:
    flush(log=False)  # the unlogged window rides along, so history is as if never stopped
    # A copy: orbax serialises asynchronously, and the live history keeps growing.
    ckpt.save(step, state, best, {
        "iterator": train_it.get_state(), "best_step": best_step,
        "best_val_accuracy": best_val, "history": [dict(r) for r in writer.history],
        "pending": _window_to_json(window)})

  try:
    with _sigterm_flag() as stop:
      while step < config.num_steps:
        if _stop_requested(stop, step, config.log_every_steps):
          if saved_step != step:
            save()
          ckpt.wait()
          raise Preempted(step, ckpt.directory)
        state, metrics = engine.train_step(state, next(train_it), dropout_key)
        step += 1
        window.append((step, metrics))
        writer.advance()
        last = step == config.num_steps
        if ctrl.enabled and step % ctrl.every_steps == 0:
          state = state.replace(ctrl=engine.controller_move(
              state.ctrl, ctrl.target_survival, ctrl.step_size, ctrl.min_rate,
              ctrl.max_rate))
          writer.write_scalars(step, metrics_writer.flatten_scalars(
              "controller", {"dropout_rates": state.ctrl.rates}))
        if step % config.log_every_steps == 0 or last:
          flush(log=True)
        if step % config.eval_every_steps == 0 or last:
          flush(log=True)
          val = _evaluate(engine, state, config, "validation")
          writer.write_scalars(step, metrics_writer.flatten_scalars("eval", val))
          if val["accuracy"] > best_val:
            best_step, best_val, best = step, val["accuracy"], _host(state.variables())
        every = config.checkpoint.every_steps
        if (every and step % every == 0) or last:
          save()
          saved_step = step

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
                     wall_time_s=time.time() - start_time, num_steps=step,
                     skipped_steps=int(jax.device_get(state.skipped_steps)))
