"""The training loop: `train_and_evaluate(config, workdir) -> TrainResult`, for any task.

Per step: next sharded batch -> jitted `train_step` (no host sync); with
`optimizer.accumulation_steps` = k a step is one micro-batch, the optimizer updating every
k-th, and every step count of the config (num_steps, the intervals) counts micro-batches. Every
`log_every_steps`: fetch the window's metrics once, check them (a batch that breaks its
task's rules or, unless `config.skip_nonfinite`, a non-finite loss/gradient/update raises
naming the step and the first bad term), log means. Every `controller.every_steps` (if
enabled): move the dropout rates. Every `eval_every_steps` and at the end: the validation
metrics; the variables best on the task's selection metric are kept. At the end, the test
split is evaluated once with the best variables (`config.eval_test`), and the best stripped
base variables are exported to `workdir/export/` (`checkpointing.load_exported`).

Never losing work:
* Checkpoints every `checkpoint.every_steps` and at the end, each only after its steps'
  metrics were checked (nothing non-finite is saved). A run started on a workdir resumes
  from its newest readable checkpoint, bitwise-identical on CPU to an uninterrupted run
  (metrics.jsonl included); damaged checkpoints are moved aside with a warning.
* SIGTERM or SIGINT (preemption, Ctrl-C), any number, at any moment of the call: the loop
  stops at its next stop point (before loading data, before compiling, before writing
  anything, between steps, after the last step's save), saves a checkpoint of the last
  finished step unless one is on disk, waits for every save to complete and raises
  `Preempted` (experiments/main.py exits 143 or 130). A signal during start-up leaves
  nothing written; during a step, evaluation or save, that finishes first; during the
  test evaluation or the export (the run is complete then), the run returns and the
  signal goes on to the caller. A SIGKILL loses only the steps since the last
  checkpoint; see `preemption` for the forced exit.
* Bad input fails before anything is written: config, workdir, the first training batch
  (its task's rules: e.g. labels outside the classes, non-finite inputs), a checkpoint of
  another model.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Mapping

import flax.linen as nn
import jax
import numpy as np

from spg_jax import config as config_lib
from spg_jax import data
from spg_jax import sharding
from spg_jax import spg_model
from spg_jax.train import checkpointing
from spg_jax.train import engine as engine_lib
from spg_jax.train import evaluation
from spg_jax.train import health
from spg_jax.train import metrics_writer
from spg_jax.train import preemption
from spg_jax.train.preemption import PREEMPTED_EXIT_CODE, Preempted

__all__ = ["CHECKPOINT_DIR", "EXPORT_DIR", "PREEMPTED_EXIT_CODE", "Preempted", "TrainResult",
           "train_and_evaluate"]

EXPORT_DIR = "export"
CHECKPOINT_DIR = "checkpoints"


@dataclasses.dataclass
class TrainResult:
  """What a run returns.

  selection_metric: the task's metric that picked the checkpoint (e.g. "accuracy", "mIoU").
  best_step / best_val_score: the validation evaluation that selected `best_variables`, and
    its selection metric; best_val_metrics: all its validation metrics.
  test_score / test_metrics: the selection metric / all metrics of `best_variables` on the
    test split (None / {} unless `config.eval_test`).
  final_variables / best_variables: BASE-model variables (replicas stripped) as host numpy
    trees `{"params": ..., "batch_stats": ...}` (batch_stats only for models with some).
  history: every logged record `{"step": s, "<group>/<name>": value, ...}`.
  wall_time_s: wall-clock time of this call; num_steps: steps trained in total.
  skipped_steps: steps whose non-finite update was dropped (`config.skip_nonfinite`).
  """
  selection_metric: str
  best_step: int
  best_val_score: float
  best_val_metrics: dict
  test_score: float | None
  test_metrics: dict
  final_variables: dict
  best_variables: dict
  history: list[dict]
  wall_time_s: float
  num_steps: int
  skipped_steps: int = 0


def _host(tree: Any) -> Any:
  return jax.tree.map(np.asarray, jax.device_get(tree))


def _base_variables(variables: dict, spg_enabled: bool) -> dict:
  variables = spg_model.nonempty_collections(variables)
  return spg_model.strip_replicas(variables) if spg_enabled else variables


# ------------------------------------------------------------------------- data
def preprocess_options(config: Any) -> dict | None:
  """`config.dataset.preprocess` as a plain dict (None values: the dataset's defaults), or
  None for a config without the section."""
  options = config.dataset.get("preprocess")
  return None if options is None else dict(options)


def dataset_info(config: Any, dataset: Any = None) -> Any:
  """The `DatasetInfo` of the run: a user's `dataset`, or `config.dataset.name` with the
  config's preprocessing options (which set, e.g., ImageNet's crop size)."""
  if dataset is not None:
    return data.dataset_info(dataset)
  return data.dataset_info(config.dataset.name, preprocess_options(config))


def _iterator(config: Any, split: str, mesh: Any, dataset: Any, *, train: bool
              ) -> data.DataIterator:
  """Batches of `split`: training (shuffled, repeated, `config.seed`) or one padded pass."""
  kwargs = dict(mesh=mesh, data_dir=config.dataset.data_dir,
                validation_fraction=config.dataset.validation_fraction)
  if dataset is None:
    kwargs["preprocess"] = preprocess_options(config)
  if train:
    kwargs.update(global_batch_size=config.batch_size, seed=config.seed)
  else:
    kwargs.update(global_batch_size=config.eval_batch_size, seed=0, shuffle=False,
                  num_epochs=1, drop_remainder=False)
  return data.make_iterator(config.dataset.name if dataset is None else dataset, split,
                            **kwargs)


def evaluate_split(engine: engine_lib.Engine, state: Any, config: Any, split: str,
                   dataset: Any = None) -> dict[str, float]:
  """The task's metrics of `state` on every example of `split`."""
  return evaluation.evaluate(engine, state, _iterator(config, split, engine.spec.mesh,
                                                      dataset, train=False))


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


def _check_first_batch(it: data.DataIterator, task: Any, dataset: str) -> None:
  """Checks the first training batch on the host (and rewinds) with the task's own rules:
  one-line ValueError naming the field before anything is written. Later batches are
  checked inside the train step (`_check`)."""
  position = it.get_state()
  batch = next(it)
  it.set_state(position)
  host = {k: _local_rows(v) for k, v in batch.items()}
  field = health.first_bad_field(jax.device_get(task.check_batch(host)))
  if field is not None:
    raise ValueError(f"dataset {dataset!r}: batch field {field!r} "
                     f"{task.describe_bad_field(field, host)} (first training batch)")


# ------------------------------------------------------------------- metrics and health
_NOT_LOGGED = (health.HEALTH, health.BATCH_OK, "skipped_steps")


def _fetch(window: list[tuple[int, dict]]) -> None:
  """Replaces the window's device metrics by host numpy values (one transfer)."""
  fetched = jax.device_get([m for _, m in window])
  window[:] = [(step, jax.tree.map(np.asarray, m)) for (step, _), m in zip(window, fetched)]


def _problems(task: Any) -> dict[str, str]:
  return {c.field: c.problem for c in task.batch_checks()}


# Skipped steps are judged only once this many steps ran: one bad batch in the first few
# steps is not a diverging run.
MIN_STEPS_FOR_SKIP_CHECK = 10


def _check(window: list[tuple[int, dict]], task: Any, skip_nonfinite: bool,
           last_saved: int | None, max_skipped_fraction: float = 1.0) -> None:
  """Raises for the first step of a fetched window whose batch broke its task's rules
  (ValueError naming the field) or, unless `skip_nonfinite`, with a non-finite term
  (FloatingPointError naming the step and the first such term, see `health`); with
  `skip_nonfinite`, a FloatingPointError once more than `max_skipped_fraction` of the
  steps so far (at least `MIN_STEPS_FOR_SKIP_CHECK`) were skipped."""
  problems = _problems(task)
  for step, m in window:
    field = health.first_bad_field(m[health.BATCH_OK])
    if field is not None:
      raise ValueError(f"step {step}: batch field {field!r} {problems[field]}")
    bad = None if skip_nonfinite else health.first_problem(m[health.HEALTH])
    if bad is not None:
      kept = (f"the last checkpoint (step {last_saved}) is kept" if last_saved is not None
              else "no checkpoint was written")
      raise FloatingPointError(
          f"step {step}: non-finite {bad} (the first non-finite term; "
          f"loss={float(m['loss'])}); nothing of this step was saved, {kept}; "
          f"config.skip_nonfinite=True skips such steps instead")
  if skip_nonfinite and window:
    step, m = window[-1]
    skipped = int(m["skipped_steps"])
    if step >= MIN_STEPS_FOR_SKIP_CHECK and skipped > max_skipped_fraction * step:
      kept = (f"the last checkpoint (step {last_saved}) is kept" if last_saved is not None
              else "no checkpoint was written")
      raise FloatingPointError(
          f"step {step}: {skipped} of {step} steps skipped as non-finite, more than "
          f"config.max_skipped_fraction={max_skipped_fraction} (the run diverges; try a "
          f"lower learning rate); {kept}")


def _log(window: list[tuple[int, dict]], writer: metrics_writer.MetricsWriter) -> None:
  """Logs the window's means over its applied (finite) steps, and the running count of
  skipped steps."""
  applied = [m for _, m in window if health.is_finite(m[health.HEALTH])]
  means = {k: np.mean([m[k] for m in applied], axis=0) for k in window[0][1]
           if k not in _NOT_LOGGED} if applied else {}
  means["skipped_steps"] = window[-1][1]["skipped_steps"]
  writer.write_scalars(window[-1][0], metrics_writer.flatten_scalars("train", means))


def _encode(tree: Any) -> Any:
  if isinstance(tree, Mapping):
    return {k: _encode(v) for k, v in tree.items()}
  value = np.asarray(tree)
  return {_ARRAY: value.tolist(), "dtype": str(value.dtype)}


def _decode(tree: Any) -> Any:
  if _ARRAY in tree:
    return np.asarray(tree[_ARRAY], tree["dtype"])
  return {k: _decode(v) for k, v in tree.items()}


_ARRAY = "__array__"


def _window_to_json(window: list[tuple[int, dict]]) -> list[dict]:
  """A fetched window as JSON (dtypes kept, so that logged means stay bitwise equal)."""
  return [{"step": step, "metrics": _encode(m)} for step, m in window]


def _window_from_json(entries: list[dict]) -> list[tuple[int, dict]]:
  return [(e["step"], _decode(e["metrics"])) for e in entries]


def _stop_requested(stop: preemption.StopRequest, step: int, log_every: int) -> bool:
  """Whether to stop before `step + 1`. With several processes (each gets its own signal,
  not at the same step) they agree at log boundaries, so all save the same step."""
  if jax.process_count() == 1:
    return stop.is_set()
  if step % log_every:
    return False
  return preemption.requested(stop)


# -------------------------------------------------------------------------------- loop
def train_and_evaluate(config: Any, workdir: str, *, init_variables: dict | None = None,
                       model: nn.Module | None = None, dataset: Any = None) -> TrainResult:
  """Trains `config` (schema: `spg_jax.config.base_config`) in `workdir`.

  Args:
    config: a ConfigDict; validated first (one-line ValueError naming the bad field).
    workdir: run directory: checkpoints/, export/, tensorboard/, metrics.jsonl. The newest
      readable checkpoint there is resumed from (damaged ones are moved to
      checkpoints_damaged/ with a warning).
    init_variables: optional BASE-model variables `{"params", "batch_stats"}` to start from
      (the retraining protocol); the replicas start fresh. Ignored when resuming.
    model: your own base model (a linen module `(x, *, train) -> (outputs, aux)`; with SPG
      it needs `spg_attachments(kind)`, e.g. from `spg_jax.models.ClassifierHeadMixin`),
      used instead of `config.model`.
    dataset: your own data (`spg_jax.data.ArrayDataset`), used instead of
      `config.dataset.name`.
  Returns:
    A `TrainResult`.
  Raises:
    ValueError: bad config, data (first batch or, later, a step's batch), workdir, or a
      checkpoint of another model/config; nothing is written before the data is checked.
    FloatingPointError: a non-finite loss, gradient or update (unless
      `config.skip_nonfinite`); the last checkpoint is kept, nothing non-finite is saved.
    Preempted: SIGTERM or SIGINT arrived (in the main thread): a checkpoint of the last
      finished step is on disk (nothing is written when it came before training started).
  """
  with preemption.stop_requests() as stop:
    return _train_and_evaluate(stop, config, workdir, init_variables, model, dataset)


def _train_and_evaluate(stop: preemption.StopRequest, config: Any, workdir: str,
                        init_variables: dict | None, model: nn.Module | None,
                        dataset: Any) -> TrainResult:
  """`train_and_evaluate` with the stop request of its signal handler."""
  start_time = time.time()
  config_lib.validate_config(config, custom_model=model is not None,
                             custom_dataset=dataset)
  _check_workdir(workdir)
  not_started = f"before training started in {workdir}; nothing was written there"
  if preemption.requested(stop):  # a signal during start-up: stop before loading data
    raise stop.preempted(detail=not_started)
  info = dataset_info(config, dataset)
  mesh = sharding.make_mesh(config.num_devices or None)
  spec = engine_lib.spec_from_config(config, mesh, info, model)
  spec.task.check_features(info.features, info.name)
  # Data first: a missing or bad dataset fails in seconds, before anything compiles.
  train_it = _iterator(config, "train", mesh, dataset, train=True)
  num_train = train_it.get_state()["config"]["num_examples"]
  if config.batch_size > num_train:  # batches would silently repeat examples of one epoch
    raise ValueError(f"config.batch_size={config.batch_size}: larger than the training split "
                     f"of {info.name} ({num_train} examples); use at most {num_train}")
  _check_first_batch(train_it, spec.task, info.name)
  if preemption.requested(stop):  # before compiling: a signal while the data loaded
    raise stop.preempted(detail=not_started)
  engine = engine_lib.get_engine(spec)
  task = engine.task
  init_key, dropout_key = jax.random.split(jax.random.key(config.seed))

  variables = engine.init(init_key)
  if init_variables is not None:
    try:
      variables = spg_model.with_base(_host(variables), init_variables,
                                      has_replicas=spec.spg.enabled)
    except ValueError as e:
      raise ValueError(f"init_variables: {e} (the base model built from config.model)") \
          from None
    variables = jax.device_put(variables, sharding.replicated(mesh))
  state = engine.create_state(variables, engine_lib.optimizer_hparams(config),
                              np.asarray(spec.rates, np.float32))
  best = _host(state.variables())
  best_step, best_val, best_metrics = 0, None, {}
  history: list[dict] = []
  window: list[tuple[int, dict]] = []
  if preemption.requested(stop):  # during the compilation of init: still nothing written
    raise stop.preempted(detail=not_started)

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
    best_step, best_val, history = saved["best_step"], saved["best_val_score"], \
        saved["history"]
    best_metrics = saved.get("best_val_metrics", {})
    window = _window_from_json(saved.get("pending", []))

  step = int(jax.device_get(state.step))
  is_main = jax.process_index() == 0
  writer = metrics_writer.MetricsWriter(
      workdir, config.num_steps, step, enabled=is_main, progress_bar=config.progress_bar,
      history=history, shown=("train/loss", f"eval/{task.selection_metric}"))
  ctrl = config.controller
  skip = spec.skip_nonfinite
  max_skipped = float(config.get("max_skipped_fraction", 1.0))

  def flush(log: bool) -> None:
    """Fetches and checks the pending metrics (before anything may be saved); logs them."""
    if window:
      _fetch(window)
      _check(window, task, skip, saved_step, max_skipped)
      if log:
        _log(window, writer)
        window.clear()

  def save() -> None:
    flush(log=False)  # the unlogged window rides along, so history is as if never stopped
    # A copy: orbax serialises asynchronously, and the live history keeps growing.
    ckpt.save(step, state, best, {
        "iterator": train_it.get_state(), "best_step": best_step,
        "best_val_score": best_val, "best_val_metrics": dict(best_metrics),
        "history": [dict(r) for r in writer.history],
        "pending": _window_to_json(window)})

  def stop_here() -> Preempted:
    """Saves the last finished step unless it is on disk (or none was trained), waits for
    every save to complete, and gives the exception to raise."""
    if step > 0 and saved_step != step:
      save()
    ckpt.wait()
    if step == 0 and saved_step is None:
      return stop.preempted(0, detail="before the first step; nothing to save")
    return stop.preempted(step, ckpt.directory)

  try:
    while step < config.num_steps:
      if _stop_requested(stop, step, config.log_every_steps):
        raise stop_here()
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
        val = evaluate_split(engine, state, config, "validation", dataset)
        writer.write_scalars(step, metrics_writer.flatten_scalars("eval", val))
        score = val[task.selection_metric]
        if task.better(score, best_val):
          best_step, best_val, best_metrics = step, score, val
          best = _host(state.variables())
      every = config.checkpoint.every_steps
      if (every and step % every == 0) or last:
        save()
        saved_step = step

    # Trained, the last step saved: a rerun redoes the test evaluation and the export from
    # it, so stopping here loses nothing. A signal from now on lets them finish (the run
    # is complete then; the caller's next stop point, if any, sees it).
    if preemption.requested(stop):
      raise stop_here()
    test = {}
    if config.eval_test:
      best_state = state.replace(**jax.device_put(
          {"params": best["params"], "batch_stats": best.get("batch_stats", {})},
          sharding.replicated(mesh)))
      test = evaluate_split(engine, best_state, config, "test", dataset)
      writer.write_scalars(best_step, metrics_writer.flatten_scalars("test", test))
    best_base = _base_variables(best, spec.spg.enabled)
    checkpointing.export_variables(os.path.join(workdir, EXPORT_DIR), best_base)
    final_base = _base_variables(_host(state.variables()), spec.spg.enabled)
  finally:
    ckpt.close()
    writer.close()
  return TrainResult(
      selection_metric=task.selection_metric, best_step=best_step,
      best_val_score=float("nan") if best_val is None else float(best_val),
      best_val_metrics=dict(best_metrics),
      test_score=test.get(task.selection_metric) if test else None, test_metrics=test,
      final_variables=final_base, best_variables=best_base, history=list(writer.history),
      wall_time_s=time.time() - start_time, num_steps=step,
      skipped_steps=int(jax.device_get(state.skipped_steps)))


def metric_curve(history: list[Mapping[str, float]], key: str
                 ) -> tuple[list[float], list[float]]:
  """`(steps, values)` of every history record that has `key`, in step order."""
  points = sorted((r["step"], r[key]) for r in history if key in r)
  return [float(s) for s, _ in points], [float(v) for _, v in points]
