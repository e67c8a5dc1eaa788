"""Stop requests from SIGTERM and SIGINT that are safe to make from a signal handler.

The handler only assigns an attribute (no lock, no allocation of note, nothing that can be
interrupted halfway), so any number of signals, arriving at any moment (during a train
step, an evaluation, a checkpoint save, even inside the handler itself), only record the
request. The loop checks it at step boundaries, saves and raises `Preempted`.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

# Exit statuses of experiments/main.py after a stop (128 + the signal number, the shell's
# convention): non-zero, so that job systems rerun (resume) the job.
EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}
PREEMPTED_EXIT_CODE = EXIT_CODES[signal.SIGTERM]


class StopRequest:
  """`signum`: the first stop signal received (None: none yet). Set by the handler only."""

  def __init__(self):
    self.signum: int | None = None

  def __call__(self, signum: int, frame) -> None:
    del frame
    if self.signum is None:  # keep the first; later ones change nothing
      self.signum = signum

  def is_set(self) -> bool:
    return self.signum is not None


class Preempted(Exception):
  """A stop signal ended the run at a step boundary after a checkpoint of `step` reached
  disk; running the same command again resumes from it (experiments/main.py exits with
  `exit_code`: 143 for SIGTERM, 130 for SIGINT)."""

  def __init__(self, step: int, checkpoint_dir: str, signum: int = signal.SIGTERM):
    name = signal.Signals(signum).name
    super().__init__(f"preempted ({name}) at step {step}; checkpoint saved in "
                     f"{checkpoint_dir}; rerun the same command to resume")
    self.step = step
    self.signum = signum
    self.exit_code = EXIT_CODES.get(signum, PREEMPTED_EXIT_CODE)


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
  """A `StopRequest` that SIGTERM and SIGINT set while inside (instead of killing the
  process); the previous handlers are restored on exit. Off the main thread, where Python
  cannot install signal handlers, it is never set and the signals keep their usual effect."""
  request = StopRequest()
  if threading.current_thread() is not threading.main_thread():
    yield request
    return
  previous = {s: signal.signal(s, request) for s in EXIT_CODES}
  try:
    yield request
  finally:
    for s, handler in previous.items():
      signal.signal(s, signal.SIG_DFL if handler is None else handler)
