"""spg_jax.train.preemption: stop requests from SIGTERM / SIGINT at any moment.

* The handler: bursts are one request, the third request forces the exit, it survives
  being re-entered and hundreds of real signals, it restores the previous handlers and
  passes an unhandled signal on, nested contexts share one request, start-up signals
  recorded by experiments/main.py are taken over.
* The loop (in-process, real signals sent to this process): a signal during start-up
  writes nothing and compiles nothing; one during the final checkpoint save stops after
  it (whole on disk, no export) and the rerun ends bitwise equal to an uninterrupted run;
  one during the export lets the finished run return and is passed on.
* Nothing else in the library installs a signal handler.
The real-process checks are in test_reliability.py (SIGKILL / SIGTERM / forced exit) and
test_preemption_stress.py (bursts at random moments).
"""
import os
import pathlib
import re
import signal

import chex
import jax
import numpy as np
import pytest

from experiments import main as experiments_main
from experiments.configs import digits_spg
from spg_jax.data import embedded
from spg_jax.train import checkpointing, loop, preemption
from spg_jax.train import engine as engine_lib

import reliability_worker
from test_train_loop import _quick as quick_config  # shared static settings: shared compiles

ROOT = pathlib.Path(__file__).resolve().parents[1]
STOPS = (signal.SIGTERM, signal.SIGINT)


class FakeClock:
  def __init__(self, *times):
    self.times = list(times)

  def __call__(self):
    return self.times.pop(0)


@pytest.fixture(name="previous")
def _previous_handlers():
  """Recording SIGTERM / SIGINT handlers as "the previous ones" (what a caller had), so
  that a signal passed on never reaches pytest's own; the originals come back after."""
  received = []
  originals = {s: signal.signal(s, lambda signum, frame: received.append(signum))
               for s in STOPS}
  handlers = {s: signal.getsignal(s) for s in STOPS}
  yield received, handlers
  for s, handler in originals.items():
    signal.signal(s, handler)


# ------------------------------------------------------------------------------ handler
def test_bursts_are_one_request_and_the_third_request_forces_the_exit():
  exits = []
  # A burst (3 signals in 2 ms), one 1.5 s later, its copy 0.4 s after it, then the third
  # request 1.2 s later.
  stop = preemption.StopRequest(exit_fn=exits.append,
                                clock=FakeClock(0.0, 0.001, 0.002, 1.5, 1.9, 3.1))
  for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
    stop(signum, None)
  assert (stop.signum, stop.count, stop.requests, exits) == (signal.SIGTERM, 3, 1, [])
  stop(signal.SIGINT, None)
  stop(signal.SIGINT, None)
  assert (stop.count, stop.requests, exits) == (5, 2, [])
  stop(signal.SIGINT, None)
  assert stop.requests == 3 and exits == [130]  # 128 + the signal that forced it
  assert stop.signum == signal.SIGTERM  # the first one still names the stop

  # A signal every 0.5 s never ends the burst: one request.
  steady = preemption.StopRequest(exit_fn=exits.append,
                                  clock=FakeClock(*[0.5 * i for i in range(40)]))
  for _ in range(40):
    steady(signal.SIGTERM, None)
  assert steady.requests == 1 and exits == [130]

  # Nothing to save (evaluate mode): the first request exits.
  at_once = preemption.StopRequest(force_after=1, exit_fn=exits.append,
                                   clock=FakeClock(0.0))
  at_once(signal.SIGTERM, None)
  assert exits == [130, 143]


def test_handler_re_entered_inside_itself_counts_once():
  """Python may run the handler again inside itself (the issue's deadlock: the old handler
  took a lock there). Here a second signal arrives while the first reads the clock."""
  stop = preemption.StopRequest(exit_fn=lambda code: pytest.fail("forced exit"))
  times = iter([0.0, 0.0001])
  def clock():
    now = next(times)
    if now == 0.0:
      stop(signal.SIGTERM, None)  # the nested call, in the middle of the outer one
    return now
  stop._clock = clock  # pylint: disable=protected-access
  stop(signal.SIGINT, None)
  assert stop.count == 2 and stop.requests == 1 and stop.signum == signal.SIGTERM


def test_hundreds_of_real_signals_only_record_one_request(previous, monkeypatch):
  received, handlers = previous
  forced = []
  monkeypatch.setattr(preemption.os, "_exit", forced.append)
  with pytest.raises(RuntimeError, match="leave by an exception"):
    with preemption.stop_requests() as stop:
      assert preemption.installed() is stop
      for i in range(300):
        os.kill(os.getpid(), STOPS[i % 2])
      assert stop.is_set() and stop.requests == 1 and 1 <= stop.count <= 300
      raise RuntimeError("leave by an exception: the request counts as handled")
  assert forced == [] and received == []
  assert {s: signal.getsignal(s) for s in STOPS} == handlers


def test_unhandled_signal_is_passed_on_to_the_previous_handler(previous):
  received, handlers = previous
  with preemption.stop_requests() as stop:
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.signum == signal.SIGINT and received == []
  # It ended normally: the signal stopped nothing, so the caller's handler gets it.
  assert received == [signal.SIGINT]
  assert {s: signal.getsignal(s) for s in STOPS} == handlers


def test_nested_requests_share_the_outer_one(previous):
  received, _ = previous
  with pytest.raises(preemption.Preempted, match=r"^preempted \(SIGTERM\) at step 3; "):
    with preemption.stop_requests() as outer:
      with preemption.stop_requests(pending=[signal.SIGTERM]) as inner:
        assert inner is outer and outer.is_set()
      assert preemption.installed() is outer  # the inner one restored nothing
      raise outer.preempted(3)
  assert received == [] and preemption.installed() is None


def test_startup_recorder_hands_its_signals_over(previous):
  received, _ = previous
  startup = experiments_main.record_stop_signals()
  os.kill(os.getpid(), signal.SIGINT)
  assert startup == [signal.SIGINT] and received == []
  with pytest.raises(preemption.Preempted) as info:
    with preemption.stop_requests(pending=startup) as stop:
      assert (stop.signum, stop.requests) == (signal.SIGINT, 1)
      raise stop.preempted(detail="during start-up; nothing was written")
  assert info.value.exit_code == 130 and str(info.value) == (
      "preempted (SIGINT) during start-up; nothing was written; rerun the same command to "
      "resume")


def test_run_and_exit_stops_before_anything_on_a_startup_signal(tmp_path, capsys, previous,
                                                                 monkeypatch):
  monkeypatch.setattr(experiments_main, "run", lambda *a: pytest.fail("it ran"))
  with pytest.raises(SystemExit) as info:
    experiments_main.run_and_exit(quick_config(digits_spg), str(tmp_path / "run"),
                                  startup_signals=[signal.SIGTERM])
  assert info.value.code == 143 and not (tmp_path / "run").exists()
  assert capsys.readouterr().err == ("stopped: preempted (SIGTERM) during start-up; nothing "
                                     "was written; rerun the same command to resume\n")


def test_only_preemption_installs_signal_handlers():
  pattern = re.compile(r"signal\.(signal|set_wakeup_fd|siginterrupt)\(")
  hits = [str(p.relative_to(ROOT)) for p in (ROOT / "spg_jax").rglob("*.py")
          if pattern.search(p.read_text())]
  assert hits == ["spg_jax/train/preemption.py"]


# ---------------------------------------------------------------------------------- loop
@pytest.fixture(scope="module", autouse=True, name="synthetic_digits")
def _synthetic_digits():
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(embedded, "digits_arrays", reliability_worker.synthetic_digits)
    yield


def _config():
  return quick_config(digits_spg, num_steps=4)  # one checkpoint: at the end


@pytest.fixture(scope="module")
def reference(tmp_path_factory, synthetic_digits):
  del synthetic_digits
  workdir = tmp_path_factory.mktemp("reference")
  return workdir, loop.train_and_evaluate(_config(), str(workdir))


def _assert_trees_equal(a, b):
  chex.assert_trees_all_equal(jax.tree.map(np.asarray, a), jax.tree.map(np.asarray, b))


def test_signal_during_startup_writes_and_compiles_nothing(tmp_path, monkeypatch, previous):
  received, handlers = previous
  check = loop._check_first_batch  # pylint: disable=protected-access
  def check_then_signal(*args):
    check(*args)
    os.kill(os.getpid(), signal.SIGTERM)
  monkeypatch.setattr(loop, "_check_first_batch", check_then_signal)
  monkeypatch.setattr(engine_lib, "get_engine", lambda spec: pytest.fail("compiled"))
  with pytest.raises(loop.Preempted, match=r"^preempted \(SIGTERM\) before training "
                     r"started in .*/run; nothing was written there;") as info:
    loop.train_and_evaluate(_config(), str(tmp_path / "run"))
  assert info.value.exit_code == 143 and not (tmp_path / "run").exists()
  assert received == [] and {s: signal.getsignal(s) for s in STOPS} == handlers


def test_signal_during_the_final_save_stops_after_it_and_resumes_bitwise(
    tmp_path, monkeypatch, previous, reference):
  received, handlers = previous
  save = checkpointing.Checkpointer.save
  def save_with_signals(self, step, *args):
    save(self, step, *args)  # the asynchronous write is under way: two signals at once
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
  monkeypatch.setattr(checkpointing.Checkpointer, "save", save_with_signals)
  with pytest.raises(loop.Preempted, match=r"^preempted \(SIGTERM\) at step 4; checkpoint "
                     r"saved in .*checkpoints; rerun") as info:
    loop.train_and_evaluate(_config(), str(tmp_path))
  assert info.value.step == 4 and received == []
  assert {s: signal.getsignal(s) for s in STOPS} == handlers
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4"]  # whole: it was waited for
  assert not (tmp_path / "export").exists()  # stopped before the test split and the export
  monkeypatch.undo()
  resumed = loop.train_and_evaluate(_config(), str(tmp_path))
  _assert_trees_equal(resumed.final_variables, reference[1].final_variables)
  assert resumed.history == reference[1].history
  assert resumed.test_metrics == reference[1].test_metrics
  _assert_trees_equal(checkpointing.load_exported(tmp_path / "export"),
                      checkpointing.load_exported(reference[0] / "export"))
  assert (tmp_path / "metrics.jsonl").read_text() == \
      (reference[0] / "metrics.jsonl").read_text()


def test_signal_during_the_export_lets_the_run_finish_and_passes_it_on(
    tmp_path, monkeypatch, previous, reference):
  received, _ = previous
  export = checkpointing.export_variables
  def export_with_signal(path, variables):
    os.kill(os.getpid(), signal.SIGINT)
    export(path, variables)
  monkeypatch.setattr(checkpointing, "export_variables", export_with_signal)
  result = loop.train_and_evaluate(_config(), str(tmp_path))
  assert received == [signal.SIGINT]  # after the call: the caller's handler has it
  _assert_trees_equal(result.best_variables, reference[1].best_variables)
  _assert_trees_equal(checkpointing.load_exported(tmp_path / "export"),
                      checkpointing.load_exported(reference[0] / "export"))
