r"""Preemption stress test: bursts of stop signals at random moments to real training and
protocol processes (`python -m experiments.main ...:quick`); every trial must stop cleanly
and, rerun, end bitwise equal to an uninterrupted run.

  python -m experiments.benchmarks.preemption_stress --trials=20 --seed=0
  python -m experiments.benchmarks.preemption_stress --seed=0 --only=7             # replay 7
  python -m experiments.benchmarks.preemption_stress --seed=0 --only=7 --delay_s=3.2

Per kind ("train": 60 steps of the MNIST-1D CNN with SPG, a checkpoint every 5 steps, the 2
newest kept; "protocol": the quick MNIST-1D retraining protocol, 2 seeds x 4 runs) it first
runs the command twice without signals (the reference; the second run, from JAX's
persistent compilation cache like every later process, must equal the first, and its wall
time scales the moments). Trial k then draws, from `(seed, k)` alone: its kind (they
alternate), a moment in [0, 1) x that wall time after the process starts, a burst of 2
or 5 signals within 10 ms (offsets drawn in 8 ms, sent at real-time priority where
permitted), and the signals (all SIGTERM, all SIGINT, or mixed). Checked:
  * exit status 143 (SIGTERM) or 130 (SIGINT) with one `stopped: preempted` line; mixed
    bursts may give either; 0 if the run finished first (or the signal came after its
    work was done); within `--bound_s` of the first signal, else a watchdog kills the
    process and the trial fails. A process killed by the signal before Python ran
    experiments/main.py's first line (shell status 143/130 too) must have written nothing.
  * no forced exit, no traceback, nothing half-written (no orbax temporary folder, no
    `.tmp` file) in the workdir;
  * the same command, rerun without signals, exits 0, moves nothing aside as damaged, and
    ends bitwise equal to the reference: every run's final checkpoint state, exported
    model and metrics.jsonl, and for the protocol the results tables of results.md.
The moments, bursts and outcomes are printed per trial (and written to RESULTS.md's
`preemption_stress` section), so a failure can be replayed with `--only` and `--delay_s`.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable, Sequence

import jax
import numpy as np

from experiments.benchmarks import common

SECTION = "preemption_stress"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KINDS = ("train", "protocol")


def commands(train_steps: int = 60) -> dict[str, list[str]]:
  """The command line of each kind (without --workdir): MNIST-1D with SPG for
  `train_steps` steps, a checkpoint every 5 (the 2 newest kept: old ones are deleted) and
  validation every 10; the quick retraining protocol."""
  return {
      "train": ["--config=experiments/configs/mnist1d_spg.py:quick",
                f"--config.num_steps={train_steps}", "--config.checkpoint.every_steps=5",
                "--config.eval_every_steps=10", "--config.log_every_steps=5",
                "--config.progress_bar=False"],
      "protocol": ["--config=experiments/configs/mnist1d_protocol.py:quick"],
  }


BURSTS = (2, 5)
BURST_WINDOW_S = 0.008  # drawn offsets; the sends themselves take up to ~2 ms more
SIGNAL_MODES = ("TERM", "INT", "mixed")
EXPECTED = {"TERM": {143}, "INT": {130}, "mixed": {143, 130}}
HALF_WRITTEN = re.compile(r"\.orbax-checkpoint-tmp|\.tmp(\.\w+)?$")  # e.g. done.0.tmp.json


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--trials", type=int, default=20)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--kinds", default=",".join(KINDS), help="train and/or protocol")
  p.add_argument("--only", type=int, default=None, help="run only this trial (replay)")
  p.add_argument("--delay_s", type=float, default=None,
                 help="with --only: the moment to replay, instead of the drawn one")
  p.add_argument("--bound_s", type=float, default=60.0,
                 help="first signal to exit, at most (watchdog)")
  p.add_argument("--workdir", default="", help="default: a temporary directory")
  p.add_argument("--results", default=common.RESULTS_PATH, help="'' : do not write")
  p.add_argument("--train_steps", type=int, default=60, help="steps of the train kind")
  p.add_argument("--no_repeat", action="store_true",
                 help="skip the second uninterrupted run (and its equality check); the "
                 "moments then scale with the first one's time (tests)")
  return p.parse_args(argv)


# ------------------------------------------------------------------------------ trials
@dataclasses.dataclass
class Trial:
  """One trial: what was drawn (index, kind, fraction of the reference wall time, signals
  with their offsets in the burst) and what happened."""
  index: int
  kind: str
  fraction: float
  signals: tuple[str, ...]
  offsets_s: tuple[float, ...]
  mode: str
  delay_s: float = 0.0
  exit_code: int | None = None
  stop_s: float | None = None  # first signal -> exit
  spread_s: float | None = None  # first -> last signal actually sent
  realtime: bool | None = None  # sent at real-time priority
  outcome: str = ""
  resume_code: int | None = None
  problems: list[str] = dataclasses.field(default_factory=list)

  @property
  def ok(self) -> bool:
    return not self.problems


def draw_trial(seed: int, index: int, kinds: Sequence[str]) -> Trial:
  """Trial `index`'s draw, from `(seed, index)` only (so it can be replayed alone)."""
  rng = np.random.default_rng([seed, index])
  kind = kinds[index % len(kinds)]
  n = int(rng.choice(BURSTS))
  mode = str(rng.choice(SIGNAL_MODES))
  if mode == "mixed":  # both kinds present, in a random order
    names = ["TERM", "INT"] + [str(rng.choice(["TERM", "INT"])) for _ in range(n - 2)]
    names = [names[i] for i in rng.permutation(n)]
  else:
    names = [mode] * n
  offsets = np.sort(np.concatenate([[0.0], rng.uniform(0, BURST_WINDOW_S, n - 1)]))
  return Trial(index, kind, float(rng.uniform(0.0, 1.0)), tuple(names),
               tuple(float(o) for o in offsets), mode)


def _env(cache_dir: str) -> dict:
  """The children's environment: this one plus a persistent compilation cache shared by
  every process (the same executables, so the same bits, and fast restarts)."""
  return dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache_dir,
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")


def _command(args: Sequence[str], workdir: str) -> list[str]:
  return [sys.executable, "-m", "experiments.main", *args, f"--workdir={workdir}"]


def _run_to_end(args: Sequence[str], workdir: str, env: dict, timeout_s: float
                ) -> tuple[int, float, str]:
  """Runs the command without signals: (exit status, wall seconds, stderr); a watchdog
  kills it after `timeout_s` (status None)."""
  start = time.perf_counter()
  try:
    proc = subprocess.run(_command(args, workdir), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout_s, check=False)
    return proc.returncode, time.perf_counter() - start, proc.stderr
  except subprocess.TimeoutExpired as e:
    return None, time.perf_counter() - start, str(e.stderr or "")


def _realtime(on: bool) -> bool:
  """Switches this process to the real-time FIFO scheduler (or back): on a loaded machine
  the scheduler otherwise parks the sender for tens of ms inside a 10 ms burst. False if
  not permitted (the burst is then sent as fast as the machine allows, its spread
  recorded)."""
  try:
    if on:
      os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    else:
      os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return True
  except (AttributeError, OSError):
    return False


def _send_burst(proc: subprocess.Popen, trial: Trial) -> float:
  """Sends the trial's signals at their offsets (busy-waiting, at real-time priority for
  these < 10 ms: sleeps are too coarse); returns the first signal's time. Stops early if
  the process is gone."""
  realtime = trial.realtime = _realtime(True)
  try:
    first = time.perf_counter()
    last = first
    for name, offset in zip(trial.signals, trial.offsets_s):
      while time.perf_counter() - first < offset:
        pass
      try:
        os.kill(proc.pid, getattr(signal, f"SIG{name}"))
      except ProcessLookupError:
        break
      last = time.perf_counter()
  finally:
    if realtime:
      _realtime(False)
  trial.spread_s = last - first
  return first


def _where(stderr: str, workdir: str) -> str:
  """Where the process said it stopped, shortened (the `stopped:` line)."""
  lines = [l for l in stderr.splitlines() if l.startswith("stopped: ")]
  if not lines:
    return ""
  text = lines[-1].replace(workdir + os.sep, "").replace(workdir, "the workdir")
  match = re.search(r"preempted \((\w+)\) (.*?); (checkpoint saved|the finished|rerun)", text)
  if not match:
    return text[:80]
  where = match.group(2)
  run = re.search(r"runs/[^/ ;]+/seed_\d+", text)
  if run and run.group(0) not in where:
    where += f" ({run.group(0)})"
  return where


def _half_written(workdir: str) -> list[str]:
  found = []
  for root, dirs, files in os.walk(workdir):
    for name in dirs + files:
      if HALF_WRITTEN.search(name):
        found.append(os.path.relpath(os.path.join(root, name), workdir))
  return sorted(found)


def run_trial(trial: Trial, workdir: str, env: dict, ref: "Reference", bound_s: float,
              delay_s: float | None = None) -> Trial:
  """Runs one trial in `workdir` (must not exist) against the uninterrupted run `ref` and
  checks it (`trial.problems`)."""
  trial.delay_s = delay_s if delay_s is not None else trial.fraction * ref.warm_s
  start = time.perf_counter()
  proc = subprocess.Popen(_command(ref.args, workdir), cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  while time.perf_counter() - start < trial.delay_s and proc.poll() is None:
    time.sleep(min(0.005, max(0.0, trial.delay_s - (time.perf_counter() - start))))
  finished_first = proc.poll() is not None
  first = None if finished_first else _send_burst(proc, trial)
  try:
    stdout, stderr = proc.communicate(timeout=bound_s)
  except subprocess.TimeoutExpired:
    proc.kill()
    stdout, stderr = proc.communicate()
    trial.problems.append(f"hung: no exit {bound_s:.0f} s after the first signal "
                          f"(watchdog killed it)")
  del stdout
  trial.exit_code = proc.returncode
  if first is not None:
    trial.stop_s = time.perf_counter() - first
  _check_stopped(trial, stderr, workdir, finished_first)
  if trial.problems:
    return trial
  code, _, resume_err = _run_to_end(ref.args, workdir, env, timeout_s=20 * ref.warm_s + 120)
  trial.resume_code = code
  if code != 0:
    trial.problems.append(f"resume exited {code}: {resume_err.strip()[-300:]}")
    return trial
  if os.path.exists(os.path.join(workdir, "checkpoints_damaged")) or re.search(
      r"moved to .*_damaged", resume_err):
    trial.problems.append("the resumed run found a damaged checkpoint")
  trial.problems += compare(trial.kind, ref.workdir, workdir)
  return trial


def _check_stopped(trial: Trial, stderr: str, workdir: str, finished_first: bool) -> None:
  """The stopped process's exit status, message and workdir."""
  code = trial.exit_code
  if trial.problems:
    return
  if "Traceback" in stderr or "forced exit" in stderr:
    trial.problems.append("traceback or forced exit: " + stderr.strip()[-300:])
  if finished_first:
    trial.outcome = "finished before the signal"
    if code != 0:
      trial.problems.append(f"finished before the signal but exited {code}")
    return
  if code == 0:
    trial.outcome = ("signal after the work was done" if "arrived after the work was done"
                     in stderr else "finished")
  elif code in (-signal.SIGTERM, -signal.SIGINT):
    # Python had not yet run experiments/main.py's first line: the signal's default action.
    trial.outcome = "killed before Python started main.py"
    if os.path.exists(workdir):
      trial.problems.append(f"killed by the signal (status {code}) after writing "
                            f"{os.listdir(workdir)}")
  elif code in EXPECTED[trial.mode]:
    trial.outcome = _where(stderr, workdir) or "?"
    if "stopped: preempted" not in stderr:
      trial.problems.append(f"exit {code} without a `stopped: preempted` line")
  else:
    trial.problems.append(f"exit status {code}, expected {sorted(EXPECTED[trial.mode])}: "
                          + stderr.strip()[-300:])
  if os.path.exists(workdir):
    leftovers = _half_written(workdir)
    if leftovers:
      trial.problems.append(f"half-written after a clean stop: {leftovers}")


# ------------------------------------------------------------------------- comparisons
def _tree_difference(a, b) -> str | None:
  """None if two trees of arrays are bitwise equal, else the first difference."""
  if jax.tree.structure(a) != jax.tree.structure(b):
    return "tree structures differ"
  for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
      return f"array {jax.tree_util.keystr(path)} differs"
  return None


def _read(path: str) -> str | None:
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return f.read()


def _compare_run(ref: str, cut: str, export_ref: str, export_cut: str) -> list[str]:
  """A run directory against the reference's: final state, export, metrics.jsonl."""
  from spg_jax.train import checkpointing  # pylint: disable=g-import-not-at-top
  problems = []
  name = os.path.basename(os.path.dirname(ref)) + "/" + os.path.basename(ref)
  try:
    ref_step, ref_state = checkpointing.load_state(os.path.join(ref, "checkpoints"))
    cut_step, cut_state = checkpointing.load_state(os.path.join(cut, "checkpoints"))
    if ref_step != cut_step:
      problems.append(f"{name}: final step {cut_step}, reference {ref_step}")
    elif (d := _tree_difference(ref_state, cut_state)):
      problems.append(f"{name}: final state: {d}")
    d = _tree_difference(checkpointing.load_exported(export_ref),
                         checkpointing.load_exported(export_cut))
    if d:
      problems.append(f"{name}: export: {d}")
  except Exception as e:  # pylint: disable=broad-except  (a missing/unreadable part fails)
    problems.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
  if _read(os.path.join(ref, "metrics.jsonl")) != _read(os.path.join(cut, "metrics.jsonl")):
    problems.append(f"{name}: metrics.jsonl differs")
  return problems


def _results_tables(text: str | None) -> str | None:
  """results.md from "## Result" to the selection table (every number there comes from
  the scores; later sections hold run times)."""
  if text is None:
    return None
  start, end = text.find("## Result"), text.find("## Checkpoint selection")
  return text[start:end]


def compare(kind: str, ref: str, cut: str) -> list[str]:
  """Every difference between the finished workdir `cut` and the reference `ref`."""
  if kind == "train":
    return _compare_run(ref, cut, os.path.join(ref, "export"), os.path.join(cut, "export"))
  problems = []
  runs = os.path.join(ref, "runs")
  for arm in sorted(os.listdir(runs)):
    for seed in sorted(os.listdir(os.path.join(runs, arm))):
      problems += _compare_run(os.path.join(runs, arm, seed),
                               os.path.join(cut, "runs", arm, seed),
                               os.path.join(ref, "exports", arm, seed),
                               os.path.join(cut, "exports", arm, seed))
  if _results_tables(_read(os.path.join(ref, "results.md"))) != _results_tables(
      _read(os.path.join(cut, "results.md"))):
    problems.append("results.md: the tables differ")
  return problems


# ------------------------------------------------------------------------------- driver
@dataclasses.dataclass
class Reference:
  """An uninterrupted run: its command's arguments, workdir, wall times (compiling, and
  from the cache), and whether a second run was made and found equal."""
  args: list[str]
  workdir: str
  cold_s: float
  warm_s: float
  repeated: bool


def references(kinds: Sequence[str], workdir: str, env: dict, log: Callable[[str], None],
               repeat: bool = True, train_steps: int = 60) -> dict[str, Reference]:
  """Per kind: the uninterrupted run, and (`repeat`) a second one that must equal it
  (raises if not: a bitwise comparison would then mean nothing); its wall time scales the
  moments."""
  out = {}
  for kind in kinds:
    args = commands(train_steps)[kind]
    ref, again = os.path.join(workdir, f"reference_{kind}"), os.path.join(workdir,
                                                                          f"again_{kind}")
    code, cold, err = _run_to_end(args, ref, env, timeout_s=900)
    if code != 0:
      raise RuntimeError(f"reference {kind} run exited {code}: {err[-2000:]}")
    warm = cold
    if repeat:
      code, warm, err = _run_to_end(args, again, env, timeout_s=900)
      problems = [f"exit {code}"] if code != 0 else compare(kind, ref, again)
      if problems:
        raise RuntimeError(f"two uninterrupted {kind} runs differ: {problems}")
    log(f"reference {kind}: {cold:.1f} s (compiling)"
        + (f", {warm:.1f} s (cached); equal" if repeat else ""))
    out[kind] = Reference(args, ref, cold, warm, repeat)
  return out


def run_stress(trials: int, seed: int, workdir: str, *, kinds: Sequence[str] = KINDS,
               only: int | None = None, delay_s: float | None = None,
               bound_s: float = 60.0, repeat: bool = True, train_steps: int = 60,
               log: Callable[[str], None] = print
               ) -> tuple[list[Trial], dict[str, Reference]]:
  """Runs the references and the trials (all of `range(trials)`, or `only`)."""
  for kind in kinds:
    if kind not in KINDS:
      raise ValueError(f"kinds: {kind!r} is not one of {list(KINDS)}")
  env = _env(os.path.join(workdir, "jax_cache"))
  indices = [only] if only is not None else list(range(trials))
  needed = sorted({kinds[i % len(kinds)] for i in indices}, key=list(kinds).index)
  refs = references(needed, workdir, env, log, repeat, train_steps)
  done = []
  for i in indices:
    trial = draw_trial(seed, i, kinds)
    run_trial(trial, os.path.join(workdir, f"trial_{i}"), env, refs[trial.kind], bound_s,
              delay_s)
    log(_trial_line(trial))
    done.append(trial)
  return done, refs


def _trial_line(t: Trial) -> str:
  status = "ok" if t.ok else "FAIL: " + "; ".join(t.problems)
  stop = "" if t.stop_s is None else f", exit {t.stop_s:.2f} s after"
  return (f"trial {t.index}: {t.kind} at {t.delay_s:.3f} s, {'+'.join(t.signals)} within "
          f"{1000 * (t.spread_s or 0):.1f} ms -> {t.exit_code} ({t.outcome}{stop}); "
          f"resume {t.resume_code}: {status}")


def report_lines(trials: Sequence[Trial], refs: dict[str, Reference], wall_s: float,
                 seed: int, bound_s: float) -> list[str]:
  rows = [[t.index, t.kind, f"{t.delay_s:.3f}", "+".join(t.signals),
           f"{1000 * (t.spread_s or 0):.1f}", t.exit_code,
           "" if t.stop_s is None else f"{t.stop_s:.2f}", t.outcome, t.resume_code,
           "ok" if t.ok else "FAIL: " + "; ".join(t.problems)] for t in trials]
  stops = [t.stop_s for t in trials if t.stop_s is not None]
  spreads = [1000 * t.spread_s for t in trials if t.spread_s is not None and t.stop_s]
  codes = {}
  for t in trials:
    codes[t.exit_code] = codes.get(t.exit_code, 0) + 1
  passed = sum(t.ok for t in trials)
  repeated = all(r.repeated for r in refs.values())
  ref_text = "; ".join(f"{k}: {r.cold_s:.1f} s compiling"
                       + (f", {r.warm_s:.1f} s cached" if repeated else "")
                       for k, r in refs.items())
  return [
      "## Preemption stress test (real processes, bursts of SIGTERM / SIGINT)",
      "",
      f"**{passed} of {len(trials)} trials passed** (seed {seed}); wall time {wall_s:.0f} s "
      f"in all. Exit statuses: " + ", ".join(f"{c}: {n}" for c, n in sorted(
          codes.items(), key=lambda kv: str(kv[0]))) + ". First signal to exit: max "
      + (f"{max(stops):.2f} s, median {np.median(stops):.2f} s" if stops else "n/a")
      + f" (watchdog bound {bound_s:.0f} s). Burst spread (first to last signal sent): "
      + (f"max {max(spreads):.1f} ms" if spreads else "n/a")
      + "; sent at real-time priority (SCHED_FIFO): "
      + ("yes" if all(t.realtime for t in trials if t.realtime is not None) else "no")
      + ".",
      "",
      "Each trial starts `python -m experiments.main` ("
      + "; ".join(f"kind `{k}`: `{' '.join(r.args)}`" for k, r in refs.items())
      + "), sends a burst of signals (within 10 ms) at "
      "the drawn moment (seconds after the start), checks the exit status (143 SIGTERM, "
      "130 SIGINT, either for mixed bursts; 0 when it finished first), the time to exit and "
      "that nothing is half-written, reruns the command to completion and compares it "
      "bitwise with an uninterrupted run (final checkpoint state, export and "
      "metrics.jsonl of every run, results.md's tables). Uninterrupted runs: "
      f"{ref_text}" + ("; the two uninterrupted runs of each kind were equal" if repeated
                        else "") + ". 'where' is the "
      "process's own `stopped:` line. Replay a trial with `--seed=S --only=K "
      "--delay_s=D`.",
      "",
      common.markdown_table(
          ["trial", "kind", "moment s", "signals", "burst ms", "exit", "stop s", "where",
           "resume", "result"], rows),
  ]


def main(argv=None) -> tuple[str, bool]:
  args = parse_args(argv)
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.ERROR)  # orbax warns on every read-only checkpoint it opens
  kinds = [k for k in args.kinds.split(",") if k]
  start = time.perf_counter()
  with tempfile.TemporaryDirectory(prefix="spg_preemption_") as tmp:
    workdir = args.workdir or tmp
    os.makedirs(workdir, exist_ok=True)
    trials, refs = run_stress(args.trials, args.seed, workdir, kinds=kinds, only=args.only,
                              delay_s=args.delay_s, bound_s=args.bound_s,
                              repeat=not args.no_repeat, train_steps=args.train_steps)
  lines = report_lines(trials, refs, time.perf_counter() - start, args.seed, args.bound_s)
  ok = all(t.ok for t in trials)
  if args.results and args.only is None:
    text = common.publish(SECTION, lines, args.results)
  else:
    text = "\n".join(lines)
    print(text)
  return text, ok


if __name__ == "__main__":
  sys.exit(0 if main()[1] else 1)
