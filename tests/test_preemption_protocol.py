"""The retraining protocol resumes where a stop signal left it (the quick MNIST-1D protocol,
in-process, real signals sent to this process):

1. a SIGTERM inside a run (spg_hpo, seed 0, before its step 3) stops it after that step
   with a checkpoint; the runs finished before it have `done.json` records;
2. the rerun does not retrain them, continues spg_hpo from its checkpoint, and a SIGINT
   between two runs (after base of seed 1) stops it before the next run starts;
3. the last rerun trains only the remaining runs, and everything (scores, table, curves,
   every export and metrics.jsonl) equals an uninterrupted run's, bitwise;
4. a rerun of the finished workdir trains and compiles nothing; a changed run config is
   not taken from a stale record.
"""
import importlib
import json
import os
import signal

import chex
import jax
import numpy as np
import pytest

from spg_jax import protocol
from spg_jax.train import checkpointing, loop
from spg_jax.train import engine as engine_lib

import reliability_worker

ARMS = ("base", "control", "spg_hpo", "spg_nas")


def _config():
  return importlib.import_module("experiments.configs.mnist1d_protocol").get_config("quick")


class Runs:
  """Wraps `loop.train_and_evaluate`: records which run directories train, and sends
  `signum` to this process before step `at_step + 1` of the run whose directory ends with
  `target`."""

  def __init__(self, monkeypatch, target=None, at_step=2, signum=signal.SIGTERM):
    self.trained = []
    real_train, real_get_engine = loop.train_and_evaluate, engine_lib.get_engine

    def train(config, workdir, **kwargs):
      name = os.path.relpath(workdir, os.path.dirname(os.path.dirname(workdir)))
      self.trained.append(name)
      if target is None or name != target:
        return real_train(config, workdir, **kwargs)
      with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_lib, "get_engine", reliability_worker.signal_at_step(
            real_get_engine, at_step, signum))
        return real_train(config, workdir, **kwargs)
    monkeypatch.setattr(loop, "train_and_evaluate", train)


def _signal_after(line_start, signum):
  """A progress-line callback that sends `signum` after the run line starting so."""
  def log(line):
    if line.startswith(line_start):
      os.kill(os.getpid(), signum)
  return log


def _assert_trees_equal(a, b):
  chex.assert_trees_all_equal(jax.tree.map(np.asarray, a), jax.tree.map(np.asarray, b))


def _read(path):
  with open(path, encoding="utf-8") as f:
    return f.read()


@pytest.fixture(name="previous")
def _previous_handlers():
  """Recording handlers as the caller's, so a passed-on signal never reaches pytest's."""
  received = []
  originals = {s: signal.signal(s, lambda signum, frame: received.append(signum))
               for s in (signal.SIGTERM, signal.SIGINT)}
  yield received
  for s, handler in originals.items():
    signal.signal(s, handler)


def test_stopped_protocol_resumes_without_retraining_and_equals_uninterrupted(
    tmp_path, monkeypatch, previous):
  ref_dir, cut_dir = str(tmp_path / "ref"), str(tmp_path / "cut")
  reference = protocol.run_protocol(_config(), ref_dir, log=lambda _: None, command="t")

  # 1. SIGTERM inside spg_hpo of seed 0.
  runs = Runs(monkeypatch, target="spg_hpo/seed_0")
  with pytest.raises(loop.Preempted, match=r"preempted \(SIGTERM\) at step 3; checkpoint "
                     r"saved in .*runs/spg_hpo/seed_0/checkpoints") as info:
    protocol.run_protocol(_config(), cut_dir, log=lambda _: None, command="t")
  assert info.value.exit_code == 143
  assert runs.trained == ["base/seed_0", "control/seed_0", "spg_hpo/seed_0"]
  done = [f"{arm}/seed_0" for arm in ARMS
          if os.path.exists(os.path.join(cut_dir, "runs", arm, "seed_0", protocol.DONE_FILE))]
  assert done == ["base/seed_0", "control/seed_0"]
  assert sorted(os.listdir(os.path.join(cut_dir, "runs", "spg_hpo", "seed_0",
                                        "checkpoints"))) == ["3"]

  # 2. The finished runs are taken from their records; SIGINT between two runs.
  monkeypatch.undo()
  runs = Runs(monkeypatch)
  lines = []
  log = _signal_after("[seed 1]       base", signal.SIGINT)
  with pytest.raises(loop.Preempted, match=r"^preempted \(SIGINT\) before run "
                     r".*runs/control/seed_1; the finished runs are kept") as info:
    protocol.run_protocol(_config(), cut_dir, log=lambda l: (lines.append(l), log(l)),
                          command="t")
  assert info.value.exit_code == 130 and info.value.checkpoint_dir is None
  assert runs.trained == ["spg_hpo/seed_0", "spg_nas/seed_0", "base/seed_1"]
  assert len(lines) == 5  # base/control of seed 0 reported from their records
  assert not os.path.exists(os.path.join(cut_dir, "runs", "control", "seed_1"))

  # 3. The remaining runs, and the same results as without any stop.
  runs.trained.clear()
  result = protocol.run_protocol(_config(), cut_dir, log=lambda _: None, command="t")
  assert runs.trained == ["control/seed_1", "spg_hpo/seed_1", "spg_nas/seed_1"]
  assert previous == []  # every signal stopped something: none passed on
  assert result.scores == reference.scores and result.table() == reference.table()
  for arm in ARMS:
    for got, want in zip(result.runs[arm], reference.runs[arm]):
      assert (got.test_score, got.best_step, got.best_val_score, got.num_steps) == \
          (want.test_score, want.best_step, want.best_val_score, want.num_steps)
      assert got.val_curve == want.val_curve and got.survival == want.survival
      _assert_trees_equal(checkpointing.load_exported(got.export_dir),
                          checkpointing.load_exported(want.export_dir))
      run = os.path.join("runs", arm, f"seed_{got.seed}")
      assert _read(os.path.join(cut_dir, run, "metrics.jsonl")) == \
          _read(os.path.join(ref_dir, run, "metrics.jsonl"))

  # 4. Finished: nothing trains or compiles; a changed arm config is not reused.
  runs.trained.clear()
  monkeypatch.setattr(engine_lib, "get_engine", lambda spec: pytest.fail("compiled"))
  again = protocol.run_protocol(_config(), cut_dir, log=lambda _: None, command="t")
  assert runs.trained == [] and again.table() == reference.table()
  record = json.loads(_read(os.path.join(cut_dir, "runs", "spg_nas", "seed_1",
                                         protocol.DONE_FILE)))
  assert record["record"]["test_score"] == reference.scores["spg_nas"][1]
  changed = _config()
  changed.protocol.arms.spg_nas.spg.rate = 0.3
  assert protocol._done_record(  # pylint: disable=protected-access
      cut_dir, "spg_nas", 1, protocol._arm_fingerprint(  # pylint: disable=protected-access
          changed, protocol.arm_stage_configs(changed, 1)["spg_nas"], 1)) is None
