"""`python -m experiments.main` for tests/test_reliability.py, with two test-only hooks.

  python tests/reliability_worker.py --config=... --workdir=... [--config.x=y ...]

Hooks (here, never in the library):
* env `SPG_TEST_SIGNAL_AT="<step>:<KILL|TERM|FORCE>"`: the process sends itself that
  signal just before it computes step <step>+1 (it wraps the engine's jitted train step),
  so a test can kill a real training process at an exact step. After SIGTERM the trainer
  finishes the step it is in, so it stops after step <step>+1. FORCE: SIGTERMs at
  once (it exits at the third), each counted as a separate request (the installed `StopRequest`'s `repeat_s` set
  to 0, instead of waiting a second between them): the forced exit, while the save of
  step <step> may still be in flight.
* `spg_jax.data.embedded.digits_arrays` returns 480 seeded random 8x8 images with labels in
  [0, 10) instead of sklearn's digits: importing sklearn takes seconds per process, and the
  test restarts the process five times.
Everything else is the real entry point: flag parsing, `experiments.main.main`, its exit
status, orbax checkpoints in the workdir.
"""
import dataclasses
import functools
import os
import signal
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIGNAL_ENV = "SPG_TEST_SIGNAL_AT"
NUM_EXAMPLES = 480


def synthetic_digits() -> tuple[np.ndarray, np.ndarray]:
  """Stand-in for sklearn's digits: images `[480, 8, 8, 1]` in [0, 1], labels `[480]`."""
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(NUM_EXAMPLES, 8, 8, 1)).astype(np.float32)
  return images, rng.integers(0, 10, size=NUM_EXAMPLES).astype(np.int32)


def signal_at_step(get_engine, at_step: int, signum: int, repeats: int = 1):
  """Wraps `engine_lib.get_engine` so that the engine's train step sends `signum` to this
  process `repeats` times (each a separate stop request) when called with
  `state.step == at_step` (then goes on, if still alive)."""
  @functools.wraps(get_engine)
  def wrapped_get_engine(spec):
    engine = get_engine(spec)

    def train_step(state, batch, key):
      if int(state.step) == at_step:
        if repeats > 1:
          from spg_jax.train import preemption  # pylint: disable=g-import-not-at-top
          preemption.installed().repeat_s = 0.0
        for _ in range(repeats):
          os.kill(os.getpid(), signum)
      return engine.train_step(state, batch, key)

    return dataclasses.replace(engine, train_step=train_step)
  return wrapped_get_engine


def install_hooks() -> None:
  from spg_jax.train import engine as engine_lib  # pylint: disable=g-import-not-at-top
  from spg_jax.data import embedded  # pylint: disable=g-import-not-at-top
  embedded.digits_arrays = synthetic_digits
  if os.environ.get(SIGNAL_ENV):
    step, name = os.environ[SIGNAL_ENV].split(":")
    signum, repeats = {"KILL": (signal.SIGKILL, 1), "TERM": (signal.SIGTERM, 1),
                       "FORCE": (signal.SIGTERM, 10)}[name]  # it exits at the 3rd
    engine_lib.get_engine = signal_at_step(engine_lib.get_engine, int(step), signum, repeats)


def main() -> None:
  sys.path.insert(0, REPO)
  from absl import app  # pylint: disable=g-import-not-at-top
  from experiments import main as experiments_main  # pylint: disable=g-import-not-at-top
  install_hooks()
  app.run(experiments_main.main)


if __name__ == "__main__":
  main()
