"""experiments/benchmarks/preemption_stress.py: a real trial (bursts of stop signals to
`python -m experiments.main` training processes, resumed and compared bitwise), its draws
(seeded, replayable) and its checks (each can fail: a hung process, a wrong status, a
death by signal after writing, something half-written)."""
import os
import re
import signal
import sys

import pytest

from experiments.benchmarks import preemption_stress as stress


def test_a_trial_stops_cleanly_and_resumes_bitwise(tmp_path):
  # One real trial (the benchmark runs many; the draws are tested below without processes).
  results = tmp_path / "RESULTS.md"
  text, ok = stress.main(["--trials=1", "--seed=0", "--kinds=train", "--no_repeat",
                          "--train_steps=12",
                          f"--workdir={tmp_path / 'work'}", f"--results={results}"])
  assert ok, text
  section = results.read_text()
  assert "<!-- BEGIN preemption_stress -->" in section and "**1 of 1 trials passed**" in section
  rows = [l for l in section.splitlines() if re.match(r"\| 0 \| train \|", l)]
  assert len(rows) == 1 and rows[0].endswith("| ok |")


def test_draws_are_seeded_bursts_within_10_ms_of_every_kind():
  draws = [stress.draw_trial(seed, i, stress.KINDS) for seed in range(5) for i in range(8)]
  again = [stress.draw_trial(seed, i, stress.KINDS) for seed in range(5) for i in range(8)]
  assert draws == again  # a trial is replayed from (seed, index) alone
  assert {d.kind for d in draws} == set(stress.KINDS)
  assert {len(d.signals) for d in draws} == set(stress.BURSTS)
  assert {d.mode for d in draws} == set(stress.SIGNAL_MODES)
  for d in draws:
    assert d.offsets_s[0] == 0.0 and max(d.offsets_s) < stress.BURST_WINDOW_S
    assert list(d.offsets_s) == sorted(d.offsets_s) and 0.0 <= d.fraction < 1.0
    assert set(d.signals) == ({"TERM", "INT"} if d.mode == "mixed" else {d.mode})


def _trial(mode="TERM", code=143):
  trial = stress.Trial(0, "train", 0.5, ("TERM",), (0.0,), mode)
  trial.exit_code = code
  return trial


@pytest.mark.parametrize("mode, code, stderr, files, problem", [
    ("TERM", 143, "stopped: preempted (SIGTERM) at step 4; checkpoint saved", (), None),
    ("INT", 143, "stopped: preempted (SIGTERM) at step 4", (), "exit status 143, expected"),
    ("TERM", 143, "", (), "without a `stopped: preempted` line"),
    ("mixed", 130, "stopped: preempted (SIGINT) x\nstopped: forced exit", (), "forced exit"),
    ("TERM", -signal.SIGTERM, "", (), None),
    ("TERM", -signal.SIGTERM, "", ("metrics.jsonl",), "killed by the signal"),
    ("TERM", 143, "stopped: preempted (SIGTERM) at step 4",
     ("checkpoints/4.orbax-checkpoint-tmp",), "half-written"),
    ("INT", 1, "Traceback (most recent call last)", (), "traceback"),
])
def test_checks_of_a_stopped_process(tmp_path, mode, code, stderr, files, problem):
  workdir = tmp_path / "run"
  for name in files:
    (workdir / name).mkdir(parents=True)
  trial = _trial(mode, code)
  stress._check_stopped(trial, stderr, str(workdir), finished_first=False)  # pylint: disable=protected-access
  if problem is None:
    assert trial.ok, trial.problems
  else:
    assert not trial.ok and any(problem in p for p in trial.problems), trial.problems


def test_watchdog_kills_and_fails_a_hung_process(tmp_path, monkeypatch):
  deaf = ("import signal, time\n"
          "for s in (signal.SIGTERM, signal.SIGINT): signal.signal(s, signal.SIG_IGN)\n"
          "time.sleep(120)\n")
  monkeypatch.setattr(stress, "_command", lambda args, workdir: [sys.executable, "-c", deaf])
  trial = stress.draw_trial(0, 0, ("train",))
  ref = stress.Reference([], str(tmp_path / "none"), 0.5, 0.5, False)
  stress.run_trial(trial, str(tmp_path / "run"), dict(os.environ), ref, bound_s=1.0)
  assert trial.exit_code == -signal.SIGKILL and trial.stop_s < 10
  assert not trial.ok and trial.problems[0].startswith("hung: no exit 1 s after")
