"""The retraining protocol the paper evaluates, done with a control arm, a validation split
and seeds: `run_protocol(config, workdir) -> ProtocolResult`.

Per seed k (the paper's protocol, and how this project does better):
  1. base: train the base model from scratch with SPG disabled (`protocol.base` overrides),
     or load the exported checkpoint `protocol.init_checkpoint` (the same for every seed);
     the "base" row is that checkpoint as it was.
  2. arms: from the base's best-on-validation variables, train every arm of
     `protocol.arms` with the SAME step budget (`protocol.retrain` overrides shared by all
     arms, then the arm's own): typically "control" (continued training, no SPG),
     "spg_hpo" and "spg_nas".
  3. each arm's checkpoint is picked on the VALIDATION split (carved from the training
     data); 4. the TEST split is evaluated once with it.
  5. repeat over `protocol.seeds`; the arms of one seed share that seed (same data order,
     same base), so differences between arms are paired by seed.
  6. `results.md` (mean ± std, n, paired difference against `protocol.reference` with a t
     interval, per-seed raw numbers, command, config, date, hardware, versions) and
     `results.png`; every base and arm model (replicas stripped) is exported to
     `workdir/exports/<arm>/seed_<k>` (`checkpointing.load_exported` reads it back).

Each run lives in `workdir/runs/<arm>/seed_<k>`. Resuming: after a run's exports are on
disk, `done.json` there records its results (written whole, by renaming a temporary file);
a rerun on the same workdir takes finished runs from it (nothing recompiled or retrained,
unless the run's config changed since), continues a stopped run from its checkpoint (the
trainer resumes it) and starts the rest, so the results equal an uninterrupted run's. A
stop signal (SIGTERM, SIGINT) is honoured inside the runs (`train.loop`) and between them
(`Preempted`, after the finished runs' records are written). Compiled steps are cached by
static settings (`steps.get_engine`), so all seeds, and arms with the same structure,
compile once.

The `protocol` config section (see experiments/configs/mnist1d_protocol.py):
  seeds: training seeds; init_checkpoint: exported base model to start from (None: train
  it; a protocol without a `base` section, like the paper recipes, must be given one);
  base / retrain / arms.<name>: nested overrides of the run config (same field names
  as the config itself); reference: the arm every other is compared with; confidence: of
  the intervals.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import logging
import os
import shlex
import sys
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax

from spg_jax import config as config_lib
from spg_jax import protocol_arms
from spg_jax import report
from spg_jax.train import checkpoint_eval
from spg_jax.train import checkpointing
from spg_jax.train import engine as engine_lib
from spg_jax.train import loop
from spg_jax.train import preemption

BASE_ARM = "base"
RUNS_DIR = "runs"
EXPORTS_DIR = "exports"
RESULTS_MD = "results.md"
RESULTS_PNG = "results.png"
DONE_FILE = "done.json"  # in a run's directory: its RunRecord, once its exports are on disk
# Fields every arm must share so that the comparison has the same budget.
BUDGET_FIELDS = ("num_steps", "batch_size", "optimizer.accumulation_steps")
_VERSIONED = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "scipy",
              "ml-collections", "grain", "matplotlib")


@dataclasses.dataclass
class RunRecord:
  """One trained (or loaded) model of the protocol; scores are the task's selection metric
  (accuracy, mIoU, ...).

  val_curve: `(steps [K], validation score [K])`, step 0 = the starting point.
  survival: per replica t (SPG arms only): `(steps [K], fraction of training episodes still
    correct after replica t [K])`.
  """
  arm: str
  seed: int
  test_score: float
  best_step: int
  best_val_score: float
  num_steps: int
  wall_time_s: float
  export_dir: str
  val_curve: tuple[list[float], list[float]]
  survival: list[tuple[list[float], list[float]]]


@dataclasses.dataclass
class ProtocolResult:
  """What `run_protocol` returns; `str(result)` is the results table.

  metric: the task's selection metric that every score is (e.g. accuracy, mIoU).
  scores: arm -> per-seed test scores (ordered like `seeds`), "base" first.
  runs: arm -> per-seed `RunRecord`s.
  """
  seeds: list[int]
  arms: list[str]
  reference: str
  confidence: float
  metric: report.Metric
  scores: dict[str, list[float]]
  runs: dict[str, list[RunRecord]]
  results_md: str
  results_png: str
  wall_time_s: float
  # Every arm is compared with each of these (paired by seed); `reference` first.
  references: tuple = ()

  def all_references(self) -> tuple[str, ...]:
    return (self.reference,) + tuple(r for r in self.references if r != self.reference)

  def table(self) -> str:
    return report.results_table_markdown(self.scores, self.reference, self.confidence,
                                         self.metric)

  def other_tables(self) -> str:
    """The table against each further reference (e.g. the dropout arm), or ""."""
    return "".join("\n" + report.results_table_markdown(self.scores, ref, self.confidence,
                                                        self.metric)
                   for ref in self.all_references()[1:])

  def verdicts(self) -> str:
    """One plain line per comparison with every reference."""
    return report.verdict_lines(self.scores, self.all_references(), self.confidence,
                                self.metric)

  def __str__(self) -> str:
    return (self.table() + self.other_tables() + "\nVerdicts (paired by seed):\n"
            + self.verdicts()
            + f"\nprotocol wall time {self.wall_time_s:.1f} s; details in {self.results_md}")


# ----------------------------------------------------------------------------- configs
def apply_overrides(config: Any, overrides: Mapping[str, Any], path: str = "config") -> None:
  """Writes nested `overrides` into `config` in place (an unlocked ConfigDict).

  A key must already exist in `config` (a typo fails loudly, naming the field), except
  below a `kwargs` entry (model constructor arguments are free-form).
  """
  for key, value in overrides.items():
    field = f"{path}.{key}"
    free_form = path.endswith(".kwargs")
    if key not in config and not free_form:
      raise ValueError(f"{field}: no such field in the config (override of a protocol stage)")
    if hasattr(value, "items") and key in config and hasattr(config[key], "items"):
      apply_overrides(config[key], value, field)
    else:
      config[key] = copy.deepcopy(value)


def _stage_config(config: Any, *overrides: Mapping[str, Any], seed: int) -> Any:
  """A run config: `config` without its protocol section, `overrides` applied in order."""
  out = copy.deepcopy(config)
  with out.unlocked():
    del out["protocol"]
    for o in overrides:
      apply_overrides(out, o)
    out.seed = int(seed)
    out.eval_test = True  # the protocol reports test accuracy of every run
  return out


def base_stage_config(config: Any, seed: int) -> Any:
  """The run config that trains the base model from scratch: SPG and controller off."""
  out = _stage_config(config, config.protocol.get("base") or {}, seed=seed)
  out.spg.enabled = False
  out.controller.enabled = False
  return out


def _budget_value(config: Any, field: str) -> Any:
  if field == "optimizer.accumulation_steps":  # absent in configs written before it: 1
    return engine_lib.accumulation_steps(config)
  return config[field]


def arm_stage_configs(config: Any, seed: int) -> dict[str, Any]:
  """Arm name -> run config (`protocol.retrain`, then the arm's overrides), reference first.

  Raises a ValueError if the arms differ in a budget field (`BUDGET_FIELDS`).
  """
  protocol = config.protocol
  names = list(protocol.arms)
  if protocol.reference not in names:
    raise ValueError(f"config.protocol.reference={protocol.reference!r}: not among the "
                     f"arms {names}")
  if BASE_ARM in names:
    raise ValueError(f"config.protocol.arms.{BASE_ARM}: reserved for the starting "
                     f"checkpoint; give the arm another name")
  names = [protocol.reference] + [n for n in names if n != protocol.reference]
  arms = {n: _stage_config(config, protocol.retrain, protocol.arms[n], seed=seed)
          for n in names}
  for field in BUDGET_FIELDS:
    values = {n: _budget_value(c, field) for n, c in arms.items()}
    if len(set(values.values())) > 1:
      raise ValueError(f"config.protocol.arms: every arm needs the same {field} (same "
                       f"budget), got {values}")
  return arms


def validate_protocol(config: Any, *, model: Any = None, dataset: Any = None) -> None:
  """Checks the protocol section and every stage's run config before anything compiles
  (`model` / `dataset`: the user's own, as for `train_and_evaluate`)."""
  if "protocol" not in config:
    raise ValueError("config.protocol: missing (run_protocol needs a protocol section)")
  protocol = config.protocol
  seeds = list(protocol.seeds)
  if not seeds or len(set(seeds)) != len(seeds) or any(
      isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
    raise ValueError(f"config.protocol.seeds={tuple(seeds)!r}: must be distinct integers "
                     f">= 0, at least one")
  if not 0.0 < protocol.confidence < 1.0:
    raise ValueError(f"config.protocol.confidence={protocol.confidence!r}: must be in (0, 1)")
  if not list(protocol.arms):
    raise ValueError("config.protocol.arms: needs at least one arm")
  for ref in protocol_arms.references(protocol)[1:]:
    if ref not in protocol.arms:
      raise ValueError(f"config.protocol.references: {ref!r} is not among the arms "
                       f"{list(protocol.arms)}")
  checkpoint = protocol.init_checkpoint
  if checkpoint is None and not protocol.get("base"):
    raise ValueError("config.protocol.init_checkpoint=None: this protocol has no base stage "
                     "(protocol.base), so it needs the exported checkpoint to retrain "
                     "(experiments/convert.py writes one)")
  if checkpoint is not None and not os.path.isdir(checkpoint):
    raise ValueError(f"config.protocol.init_checkpoint={checkpoint!r}: no such directory "
                     f"(an export written by checkpointing.export_variables)")
  stages = {BASE_ARM: base_stage_config(config, seeds[0]),
            **arm_stage_configs(config, seeds[0])}
  for name, stage in stages.items():
    try:
      config_lib.validate_config(stage, custom_model=model is not None,
                                 custom_dataset=dataset)
    except ValueError as e:
      raise ValueError(f"protocol stage {name!r}: {e}") from None


# ----------------------------------------------------------------------------- evaluation
def evaluate_variables(config: Any, variables: dict, split: str, *, model: Any = None,
                       dataset: Any = None) -> float:
  """The selection metric of base-model `variables` on every example of `split` (SPG is
  not involved). Used for a given `init_checkpoint`, which no training run has evaluated."""
  metrics = checkpoint_eval.evaluate_checkpoint(
      config, variables, splits=(split,), model=model, dataset=dataset,
      field="config.protocol.init_checkpoint")[split]
  return metrics[protocol_metric(config, dataset).name]


history_curve = loop.metric_curve


def survival_curves(history: Sequence[Mapping[str, float]], num_replicas: int
                    ) -> list[tuple[list[float], list[float]]]:
  """Per replica t = 1..T: the logged training survival after replica t over steps."""
  return [history_curve(history, f"train/survival_{t}") for t in range(1, num_replicas + 1)]


# ----------------------------------------------------------------------------- runs
def _run_dir(workdir: str, directory: str, arm: str, seed: int) -> str:
  return os.path.join(workdir, directory, arm, f"seed_{seed}")


def _tmp_path(path: str) -> str:
  """Where `path` is written before it is renamed into place: one name per process (each
  process of a multi-host run writes the same files into the shared workdir)."""
  stem, ext = os.path.splitext(path)
  return f"{stem}.{jax.process_index()}.tmp{ext}"


def _write_text(path: str, text: str) -> None:
  """Writes `path` whole or not at all (a temporary file renamed over it)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = _tmp_path(path)
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def _fingerprint(stage: Any, **extra: Any) -> dict:
  """What a finished run was trained with, as plain JSON: its run config (without the
  progress bar, which changes nothing) and `extra` (e.g. the starting checkpoint)."""
  config = json.loads(stage.to_json_best_effort(sort_keys=True))
  config.pop("progress_bar", None)
  return {"config": config, **extra}


def _first_difference(a: Any, b: Any, path: str = "config") -> str | None:
  """The first field where two JSON trees differ, e.g. "config.optimizer.learning_rate"."""
  if isinstance(a, dict) and isinstance(b, dict):
    for key in sorted(set(a) | set(b)):
      found = _first_difference(a.get(key), b.get(key), f"{path}.{key}")
      if found:
        return found
    return None
  return None if a == b else path


def _record_to_json(record: RunRecord, fingerprint: dict) -> dict:
  out = dataclasses.asdict(record)
  del out["export_dir"]  # found again from the workdir (it may have moved)
  return {"record": out, "trained_with": fingerprint}


def _done_record(workdir: str, arm: str, seed: int, fingerprint: dict
                 ) -> RunRecord | None:
  """The finished run `arm`/`seed` from its `done.json`, or None: not finished, its export
  is missing, or it was trained with another config (logged; the trainer then resumes the
  run from its checkpoint, as without the record)."""
  path = os.path.join(_run_dir(workdir, RUNS_DIR, arm, seed), DONE_FILE)
  export_dir = _run_dir(workdir, EXPORTS_DIR, arm, seed)
  if not os.path.exists(path) or not os.path.isdir(export_dir):
    return None
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  changed = _first_difference(saved["trained_with"], json.loads(json.dumps(fingerprint)),
                              "run")
  if changed:
    logging.getLogger(__name__).warning(
        "%s: the run finished with another value of %s; not reusing it", path, changed)
    return None
  r = saved["record"]
  return RunRecord(
      arm=r["arm"], seed=r["seed"], test_score=r["test_score"], best_step=r["best_step"],
      best_val_score=r["best_val_score"], num_steps=r["num_steps"],
      wall_time_s=r["wall_time_s"], export_dir=export_dir,
      val_curve=tuple(r["val_curve"]), survival=[tuple(c) for c in r["survival"]])


def _mark_done(workdir: str, record: RunRecord, fingerprint: dict) -> None:
  _write_text(os.path.join(_run_dir(workdir, RUNS_DIR, record.arm, record.seed), DONE_FILE),
              json.dumps(_record_to_json(record, fingerprint), indent=1))


def _stop_point(stop: preemption.StopRequest, workdir: str, arm: str, seed: int) -> None:
  """Raises `Preempted` if a stop was requested, before run `arm`/`seed` starts."""
  if preemption.requested(stop):
    raise stop.preempted(detail=f"before run {_run_dir(workdir, RUNS_DIR, arm, seed)}; "
                         f"the finished runs are kept")


def _base_fingerprint(config: Any, seed: int) -> dict:
  return _fingerprint(base_stage_config(config, seed),
                      init_checkpoint=config.protocol.init_checkpoint)


def _arm_fingerprint(config: Any, stage: Any, seed: int) -> dict:
  return _fingerprint(stage, base=_base_fingerprint(config, seed))  # it retrains that base


def _base_run(config: Any, workdir: str, seed: int, user: dict) -> tuple[RunRecord, dict]:
  """Trains (or loads) the base of `seed`; returns its record and its variables."""
  stage = base_stage_config(config, seed)
  export_dir = _run_dir(workdir, EXPORTS_DIR, BASE_ARM, seed)
  start = time.time()
  checkpoint = config.protocol.init_checkpoint
  if checkpoint is not None:
    variables = checkpointing.load_exported(checkpoint)
    val = evaluate_variables(stage, variables, "validation", **user)
    test = evaluate_variables(stage, variables, "test", **user)
    record = RunRecord(BASE_ARM, seed, test, 0, val, 0, 0.0, export_dir, ([0.0], [val]), [])
  else:
    result = loop.train_and_evaluate(stage, _run_dir(workdir, RUNS_DIR, BASE_ARM, seed),
                                     **user)
    variables = result.best_variables
    record = RunRecord(BASE_ARM, seed, float(result.test_score), result.best_step,
                       result.best_val_score, result.num_steps, 0.0, export_dir,
                       history_curve(result.history, f"eval/{result.selection_metric}"), [])
  checkpointing.export_variables(export_dir, variables)
  record.wall_time_s = time.time() - start
  _mark_done(workdir, record, _base_fingerprint(config, seed))
  return record, variables


def _arm_run(config: Any, arm: str, stage: Any, workdir: str, seed: int, base: RunRecord,
             base_variables: dict, user: dict) -> RunRecord:
  """Retrains `base_variables` with the arm's config; exports the best-on-validation model."""
  result = loop.train_and_evaluate(stage, _run_dir(workdir, RUNS_DIR, arm, seed),
                                   init_variables=base_variables, **user)
  export_dir = _run_dir(workdir, EXPORTS_DIR, arm, seed)
  checkpointing.export_variables(export_dir, result.best_variables)
  steps_, values = history_curve(result.history, f"eval/{result.selection_metric}")
  # The arm starts exactly at the base's selected variables: that is its step-0 score.
  val_curve = ([0.0] + steps_, [base.best_val_score] + values)
  num_replicas = stage.spg.num_replicas if stage.spg.enabled else 0
  record = RunRecord(arm, seed, float(result.test_score), result.best_step,
                     result.best_val_score, result.num_steps, result.wall_time_s,
                     export_dir, val_curve, survival_curves(result.history, num_replicas))
  _mark_done(workdir, record, _arm_fingerprint(config, stage, seed))
  return record


def _seed_runs(config: Any, workdir: str, seed: int, user: dict,
               stop: preemption.StopRequest) -> Iterator[RunRecord]:
  """The base and arm runs of `seed`, in order: finished ones from their records, the others
  trained (a stop signal is honoured before each)."""
  base = _done_record(workdir, BASE_ARM, seed, _base_fingerprint(config, seed))
  base_variables = None
  if base is None:
    _stop_point(stop, workdir, BASE_ARM, seed)
    base, base_variables = _base_run(config, workdir, seed, user)
  yield base
  for arm, stage in arm_stage_configs(config, seed).items():
    record = _done_record(workdir, arm, seed, _arm_fingerprint(config, stage, seed))
    if record is None:
      _stop_point(stop, workdir, arm, seed)
      if base_variables is None:  # the base finished earlier: its export is what it gave
        base_variables = checkpointing.load_exported(base.export_dir)
      record = _arm_run(config, arm, stage, workdir, seed, base, base_variables, user)
    yield record


def protocol_metric(config: Any, dataset: Any = None) -> report.Metric:
  """How the protocol's scores are named and shown: the task's selection metric."""
  info = loop.dataset_info(config, dataset)
  task = engine_lib.build_task(config, info)
  name = task.selection_metric
  return report.Metric(name, percent=name not in ("mse", "loss"),
                       higher_is_better=task.selection_mode == "max")


def run_protocol(config: Any, workdir: str, *, log: Callable[[str], None] = print,
                 command: str | None = None, model: Any = None, dataset: Any = None
                 ) -> ProtocolResult:
  """Runs the protocol of `config` in `workdir` (see the module docstring).

  Args:
    config: a run config (`spg_jax.config.base_config`) with a `protocol` section.
    workdir: output directory: results.md, results.png, runs/, exports/.
    log: receives one progress line per run (the caller prints `str(result)`, the table,
      as experiments/main.py does).
    command: the command line recorded in results.md (default: this process's argv).
    model / dataset: your own base model and data, as for `train_and_evaluate`.
  Returns:
    A `ProtocolResult`; `str()` of it is the table and the verdicts.
  """
  with preemption.stop_requests() as stop:
    return _run_protocol(config, workdir, log, command, model, dataset, stop)


def _run_protocol(config: Any, workdir: str, log: Callable[[str], None], command: str | None,
                  model: Any, dataset: Any, stop: preemption.StopRequest) -> ProtocolResult:
  """`run_protocol` with the stop request of its signal handler."""
  start = time.time()
  validate_protocol(config, model=model, dataset=dataset)
  user = {"model": model, "dataset": dataset}
  protocol = config.protocol
  metric = protocol_metric(config, dataset)
  seeds = [int(s) for s in protocol.seeds]
  runs: dict[str, list[RunRecord]] = {}
  for seed in seeds:
    for record in _seed_runs(config, workdir, seed, user, stop):
      runs.setdefault(record.arm, []).append(record)
      log(_run_line(record, metric))
  arms = list(runs)
  scores = {arm: [r.test_score for r in runs[arm]] for arm in arms}
  result = ProtocolResult(
      seeds=seeds, arms=arms, reference=protocol.reference,
      confidence=float(protocol.confidence), metric=metric, scores=scores, runs=runs,
      results_md=os.path.join(workdir, RESULTS_MD),
      results_png=os.path.join(workdir, RESULTS_PNG), wall_time_s=0.0,
      references=protocol_arms.references(protocol))
  png_tmp = _tmp_path(result.results_png)  # renamed when whole
  report.plot_results(
      png_tmp, scores,
      val_curves={arm: [r.val_curve for r in runs[arm]] for arm in arms if arm != BASE_ARM},
      survival={arm: _transpose_survival(runs[arm]) for arm in arms
                if runs[arm][0].survival},
      title=f"{config.model.name} on {config.dataset.name}: retraining protocol, "
            f"{len(seeds)} seeds", metric=metric, confidence=float(protocol.confidence))
  os.replace(png_tmp, result.results_png)
  result.wall_time_s = time.time() - start
  _write_text(result.results_md, results_markdown(
      config, result, command if command is not None else _default_command(), dataset))
  return result


def _default_command() -> str:
  """This process's command line, as `python -m experiments.main ...` when run that way."""
  argv = list(sys.argv)
  if argv and argv[0].endswith(os.path.join("experiments", "main.py")):
    return shlex.join(["python", "-m", "experiments.main"] + argv[1:])
  return shlex.join(["python"] + argv)


def _transpose_survival(records: Sequence[RunRecord]) -> list[list[tuple]]:
  """Per-seed lists of per-replica curves -> per-replica lists of per-seed curves."""
  return [list(curves) for curves in zip(*(r.survival for r in records))]


def _run_line(r: RunRecord, metric: report.Metric) -> str:
  return (f"[seed {r.seed}] {r.arm:>10}: test {metric.name} "
          f"{report.format_score(r.test_score, metric)}{metric.unit.strip()}  (best step "
          f"{r.best_step}/{r.num_steps}, val {report.format_score(r.best_val_score, metric)}"
          f"{metric.unit.strip()})  {r.wall_time_s:6.1f} s")


# ----------------------------------------------------------------------------- results.md
def _selection_table(result: ProtocolResult) -> str:
  """Per seed and arm: selected step, its validation score, and the run time."""
  m = result.metric
  lines = [f"| seed | arm | selected step / steps | val {m.name}{m.unit} | test "
           f"{m.name}{m.unit} | time s |", "|---|---|---|---|---|---|"]
  for i, seed in enumerate(result.seeds):
    for arm in result.arms:
      r = result.runs[arm][i]
      lines.append(f"| {seed} | {arm} | {r.best_step} / {r.num_steps} | "
                   f"{report.format_score(r.best_val_score, m)} | "
                   f"{report.format_score(r.test_score, m)} | {r.wall_time_s:.1f} |")
  return "\n".join(lines) + "\n"


# Dataset kinds whose validation split is their own (audio: spoken_digits' generated split,
# speech_commands', LibriSpeech's dev-clean; a user's ArrayDataset), not carved from the
# training data by `dataset.validation_fraction` (embedded, TFDS and text datasets).
OWN_VALIDATION_KINDS = ("audio", "arrays")


def validation_description(config: Any, dataset: Any = None) -> str:
  """Where the validation split comes from, in words (for results.md): the dataset's own
  split, or `dataset.validation_fraction` of the training data."""
  try:
    kind = loop.dataset_info(config, dataset).kind
  except ValueError:  # a name outside the catalog (the user's own data without the object)
    kind = None
  if kind in OWN_VALIDATION_KINDS:
    return "the dataset's own split; `dataset.validation_fraction` does not apply"
  if kind is None:
    return "the dataset's validation split"
  return (f"{100 * config.dataset.validation_fraction:g}% of the training data, the same "
          f"examples for every seed")


def _batch_words(c: Any) -> str:
  """`batch B`, with gradient accumulation `batch B x k accumulated (one update per k
  steps)`."""
  k = engine_lib.accumulation_steps(c)
  if k == 1:
    return f"batch {c.batch_size}"
  return (f"batch {c.batch_size} x {k} accumulated (steps are micro-batches, one optimizer "
          f"update per {k})")


def _protocol_description(config: Any, result: ProtocolResult, dataset: Any = None) -> str:
  """What was run, in words built from the config (`dataset`: the user's own, if any)."""
  p = config.protocol
  first = result.seeds[0]
  arms = arm_stage_configs(config, first)
  ref = arms[p.reference]
  if p.init_checkpoint is not None:
    base = f"loaded from the exported checkpoint `{p.init_checkpoint}` (the same for every seed)"
  else:
    b = base_stage_config(config, first)
    base = (f"trained from scratch without SPG for {b.num_steps} steps ({_batch_words(b)}, "
            f"{b.optimizer.name} lr {b.optimizer.learning_rate}, {b.schedule.name} schedule) "
            f"for every seed, keeping its best-on-validation checkpoint")
  task = config.task.name or "the dataset's own task"
  lines = [
      f"- Data: `{config.dataset.name}`; model: `{config.model.name}`; task: `{task}`, scored "
      f"by its selection metric `{result.metric.name}`. Model selection on the "
      f"validation split ({validation_description(config, dataset)}); the test split is "
      f"evaluated once per run, with the selected checkpoint.",
      f"- Base (row `{BASE_ARM}`: the checkpoint as it was): {base}.",
      f"- Every arm retrains that checkpoint for the same budget: {ref.num_steps} steps of "
      f"{_batch_words(ref)}, validation every {ref.eval_every_steps} steps; the seed also "
      f"fixes the data order, which all arms of a seed share (differences are paired by seed).",
  ]
  for name, c in arms.items():
    head_dropout = dict(c.model.kwargs).get("head_dropout", 0.0)
    if c.spg.enabled:
      rate = f", dropout rate {c.spg.rate}" if c.spg.kind == "hpo" else ""
      spg = (f"SPG-{c.spg.kind.upper()} T={c.spg.num_replicas}{rate}, depth {c.spg.depth}, "
             f"lambdas {tuple(c.spg.lambdas)}, {c.spg.form} loss, normalize "
             f"{c.spg.normalize}")
    elif head_dropout:
      spg = f"no SPG, plain dropout {head_dropout:g} on the head's input (continued training)"
    else:
      spg = "no SPG (continued training)"
    lines.append(f"  - `{name}`: {spg}; {c.optimizer.name} lr {c.optimizer.learning_rate}, "
                 f"{c.schedule.name} schedule.")
  return "\n".join(lines) + "\n"


def results_markdown(config: Any, result: ProtocolResult, command: str,
                     dataset: Any = None) -> str:
  """The text of results.md; every number in it comes from `result` or `config`
  (`dataset`: the user's own data, as for `run_protocol`)."""
  env = report.environment(_VERSIONED)
  level = f"{100 * result.confidence:g}%"
  date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  m = result.metric
  vs_base = report.results_table_markdown(result.scores, BASE_ARM, result.confidence, m)
  units = "in percentage points (pp)" if m.percent else "in absolute units"
  better = "" if m.higher_is_better is None else (
      f" ({'higher' if m.higher_is_better else 'lower'} is better)")
  return "\n".join([
      f"# SPG retraining protocol: `{config.model.name}` on `{config.dataset.name}`",
      "",
      f"Test {m.name}{better} over {len(result.seeds)} seeds (seeds {result.seeds}). "
      f"Differences are paired by seed, {units}, with a {level} t interval; an interval "
      f"that contains 0 means **{report.NO_DIFFERENCE}**. Each interval is for one "
      f"comparison (no correction for comparing several arms).",
      "",
      "## Result",
      "",
      result.table(),
      report.summary_sentence(result.scores, result.reference, result.confidence, m),
      *([f"Against the other reference arm(s) {list(result.all_references()[1:])}:",
         result.other_tables()] if result.all_references()[1:] else []),
      "Verdicts, every arm against each reference (paired by seed):",
      "",
      result.verdicts(),
      f"Against the starting checkpoint (`{BASE_ARM}`):",
      "",
      vs_base,
      report.summary_sentence(result.scores, BASE_ARM, result.confidence, m),
      f"## Per-seed test {m.name}{' (%)' if m.percent else ''}",
      "",
      report.per_seed_table_markdown(result.seeds, result.scores, metric=m),
      "## Checkpoint selection (validation split) per run",
      "",
      _selection_table(result),
      "## Protocol",
      "",
      _protocol_description(config, result, dataset),
      "## Run",
      "",
      f"- Command: `{command}`",
      f"- Date: {date}; protocol wall time {result.wall_time_s:.1f} s (compilation included).",
      f"- Hardware: {env['hardware']}; JAX devices: {env['devices']}; Python {env['python']}; "
      f"1-minute load average at the end {env['load']}.",
      f"- Libraries: {env['libraries']}.",
      f"- Figure: `{RESULTS_PNG}`; exported models: `{EXPORTS_DIR}/<arm>/seed_<k>`.",
      "",
      "## Config",
      "",
      "```yaml",
      str(config).rstrip(),
      "```",
      "",
  ])
