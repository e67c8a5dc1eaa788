"""Stop requests from SIGTERM and SIGINT that are safe to make from a signal handler.

The handler only reads the clock and assigns a few attributes (no lock, no I/O, nothing
that can wait), so any number of signals, arriving at any moment (start-up, compilation, a
train step, an evaluation, a checkpoint save or restore, an export, even inside the
handler itself), only record the request. The loop and the protocol check it at their
stop points (step boundaries, before and after training, between runs), save what is
unfinished, wait for it to reach disk and raise `Preempted`.

Repeats: signals less than `REPEAT_S` apart are one request (launchers, `make`, job
systems and double key presses deliver copies at once). The `FORCE_AFTER`-th request (e.g.
Ctrl-C pressed three times, a second apart) exits at once with `os._exit(128 + signal)`,
without saving: only complete checkpoints remain (orbax writes each into a temporary
folder and renames it when whole; a resumed run moves an unfinished one aside), and the
steps since the last one are lost. The exit happens when the main thread next runs Python
code (a running XLA compilation or device call finishes first); SIGKILL is the only
instant stop.

Handlers are installed by `stop_requests()` only while a run is inside it, and the
previous ones are restored afterwards. A signal that arrived inside but stopped nothing
(it came after the last stop point) is then passed on to the previous handler, so it is
never swallowed.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Iterable, Iterator

# Exit statuses of experiments/main.py after a stop (128 + the signal number, the shell's
# convention): non-zero, so that job systems rerun (resume) the job.
EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}
PREEMPTED_EXIT_CODE = EXIT_CODES[signal.SIGTERM]
# Signals closer together than this are one request (copies from launchers, make, ...).
REPEAT_S = 1.0
# The request that exits at once without saving.
FORCE_AFTER = 3


def _name(signum: int) -> str:
  return signal.Signals(signum).name


class StopRequest:
  """What the stop signals asked for; set by the handler (`__call__`) only.

  signum: the first stop signal received (None: none yet); count: signals received;
  requests: distinct requests (signals at least `repeat_s` seconds after the previous
  one). The `force_after`-th request calls `exit_fn(128 + signal)` at once (None:
  `os._exit`).
  """

  def __init__(self, *, repeat_s: float = REPEAT_S, force_after: int = FORCE_AFTER,
               exit_fn=None, clock=time.monotonic):
    self.signum: int | None = None
    self.count = 0
    self.requests = 0
    self._last: float | None = None
    self.repeat_s = repeat_s
    self.force_after = force_after
    self._exit = exit_fn
    self._clock = clock

  def __call__(self, signum: int, frame) -> None:
    """The signal handler. Safe to re-enter (Python may run it again inside itself): the
    previous time is swapped in one step, without a call in between."""
    del frame
    now = self._clock()
    last, self._last = self._last, now
    self.count += 1
    if last is None or now - last >= self.repeat_s:
      self.requests += 1
    if self.signum is None:  # keep the first; later ones only count
      self.signum = signum
    if self.requests >= self.force_after:
      self._force(signum)

  def _force(self, signum: int) -> None:
    code = EXIT_CODES.get(signum, PREEMPTED_EXIT_CODE)
    message = (f"stopped: forced exit on stop request {self.requests} ({_name(signum)}): "
               f"nothing more saved, only complete checkpoints remain; rerun the same "
               f"command to resume\n")
    try:
      os.write(2, message.encode())  # unbuffered: print() could wait on stderr's lock
    except OSError:
      pass
    (self._exit or os._exit)(code)

  def add_pending(self, signums: Iterable[int]) -> None:
    """Counts signals recorded before this handler was installed (one request)."""
    signums = list(signums)
    if signums:
      self.count += len(signums)
      self.requests = max(self.requests, 1)
      if self.signum is None:
        self.signum = signums[0]

  def is_set(self) -> bool:
    return self.signum is not None

  def preempted(self, step: int | None = None, checkpoint_dir: str | None = None,
                detail: str | None = None) -> "Preempted":
    """The `Preempted` exception for this request (see `Preempted` for the arguments)."""
    return Preempted(step, checkpoint_dir, self.signum or signal.SIGTERM, detail=detail)


class Preempted(Exception):
  """A stop signal ended the run at a stop point, after everything unfinished that can
  resume (a checkpoint of `step` in `checkpoint_dir`, when given) reached disk; running the
  same command again resumes (experiments/main.py exits with `exit_code`: 143 for SIGTERM,
  130 for SIGINT). `detail` says where it stopped when no checkpoint was written."""

  def __init__(self, step: int | None, checkpoint_dir: str | None,
               signum: int = signal.SIGTERM, *, detail: str | None = None):
    name = _name(signum)
    if checkpoint_dir is not None:
      where = f"at step {step}; checkpoint saved in {checkpoint_dir}"
    else:
      where = detail or (f"at step {step}" if step is not None else "")
    super().__init__(f"preempted ({name}) {where}; rerun the same command to resume")
    self.step = step
    self.checkpoint_dir = checkpoint_dir
    self.signum = signum
    self.exit_code = EXIT_CODES.get(signum, PREEMPTED_EXIT_CODE)


def requested(stop: StopRequest) -> bool:
  """Whether to stop now. With several processes (each gets its own signal, at different
  moments) every process must call this at the same point: they agree (any one asked), so
  that all stop at the same point and none waits alone in a collective."""
  import jax  # pylint: disable=g-import-not-at-top  (keeps this module light)
  if jax.process_count() == 1:
    return stop.is_set()
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  flags = multihost_utils.process_allgather(np.int32(stop.is_set()))
  return bool(np.any(flags))


def installed() -> StopRequest | None:
  """The `StopRequest` handling SIGTERM and SIGINT now, if one is."""
  handlers = {signal.getsignal(s) for s in EXIT_CODES}
  if len(handlers) == 1:
    handler = handlers.pop()
    if isinstance(handler, StopRequest):
      return handler
  return None


@contextlib.contextmanager
def stop_requests(pending: Iterable[int] = (), *, force_after: int = FORCE_AFTER
                  ) -> Iterator[StopRequest]:
  """A `StopRequest` that SIGTERM and SIGINT set while inside (instead of killing the
  process or raising KeyboardInterrupt).

  Nested inside another `stop_requests()` (the protocol around its runs, experiments/main.py
  around everything) it is the outer one, and nothing is installed. Otherwise the previous
  handlers are restored on exit, and if a signal arrived but the block ended normally (the
  signal came after the last stop point), it is re-delivered to them (`raise_signal`), so
  it keeps its usual effect. `pending`: signal numbers received before (by a start-up
  recorder), read after the handler is installed so that none falls between; force_after:
  the request that exits at once (1: the first, where nothing needs saving). Off the main
  thread, where Python cannot install signal handlers, the request is never set and the
  signals keep their usual effect.
  """
  outer = installed()
  if outer is not None:
    outer.add_pending(pending)
    yield outer
    return
  request = StopRequest(force_after=force_after)
  if threading.current_thread() is not threading.main_thread():
    yield request
    return
  previous, normal_exit = {}, False
  try:
    for s in EXIT_CODES:  # one by one: a signal between two leaves none half-installed
      previous[s] = signal.signal(s, request)
    request.add_pending(pending)
    yield request
    normal_exit = True
  finally:
    for s, handler in previous.items():
      signal.signal(s, signal.SIG_DFL if handler is None else handler)
  if normal_exit and request.is_set():
    signal.raise_signal(request.signum)
