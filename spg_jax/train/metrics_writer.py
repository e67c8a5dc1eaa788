"""Scalar logging: TensorBoard event files (tensorboardX, no TensorFlow), a JSONL mirror of
every scalar (`workdir/metrics.jsonl`), and a tqdm progress bar with steps/s and ETA.

Array metrics are flattened to scalars: `survival` `[T+1]` -> `survival_0 .. survival_T`.
Only process 0 writes (`enabled=False` elsewhere); the in-memory `history` is kept anyway.
A (re)started run rewrites `metrics.jsonl` from the history its checkpoint holds (empty
for a fresh start), so records of steps lost to a kill never linger in it.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

import numpy as np


def flatten_scalars(prefix: str, metrics: Mapping[str, Any]) -> dict[str, float]:
  """`{"loss": 0.3, "survival": [0.9, 0.8]}` -> `{"p/loss": 0.3, "p/survival_0": 0.9, ...}`."""
  out = {}
  for name, value in metrics.items():
    array = np.asarray(value, np.float64)
    key = f"{prefix}/{name}" if prefix else name
    if array.ndim == 0:
      out[key] = float(array)
    else:
      for i, v in enumerate(array.reshape(-1)):
        out[f"{key}_{i}"] = float(v)
  return out


def _json_line(record: Mapping[str, Any]) -> str:
  """One JSONL line; non-finite floats as strings ("nan", "inf": strict JSON has none)."""
  clean = {k: (v if math.isfinite(v) else str(v)) if isinstance(v, float) else v
           for k, v in record.items()}
  return json.dumps(clean) + "\n"


def _rewrite_jsonl(path: str, records: list[dict]) -> None:
  """Replaces `path` with `records` at once (a temporary file renamed over it)."""
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.writelines(_json_line(r) for r in records)
  os.replace(tmp, path)


class MetricsWriter:
  """Writes scalars to TensorBoard and JSONL and drives the console progress bar.

  Args:
    workdir: run directory (`tensorboard/` and `metrics.jsonl` go inside).
    num_steps: total steps (progress bar).
    initial_step: where the run (re)starts.
    enabled: write files and show the bar (process 0 only).
    progress_bar: show the tqdm bar.
    history: the records logged before `initial_step` (from the checkpoint resumed from);
      `metrics.jsonl` is rewritten to hold exactly these before new ones are appended.
    shown: the scalars the progress bar displays (e.g. the task's selection metric).
  """

  def __init__(self, workdir: str, num_steps: int, initial_step: int = 0, *,
               enabled: bool = True, progress_bar: bool = True, history: tuple = (),
               shown: tuple[str, ...] = ("train/loss", "train/accuracy", "eval/accuracy")):
    self.history: list[dict[str, float]] = [dict(r) for r in history]
    self._shown = tuple(shown)
    self._tb = self._jsonl = self._bar = None
    if not enabled:
      return
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top  (heavy)
    self._tb = SummaryWriter(logdir=os.path.join(workdir, "tensorboard"))
    path = os.path.join(workdir, "metrics.jsonl")
    _rewrite_jsonl(path, self.history)
    self._jsonl = open(path, "a", encoding="utf-8")  # pylint: disable=consider-using-with
    if progress_bar:
      import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm.tqdm(total=num_steps, initial=initial_step, unit="step",
                            dynamic_ncols=True)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """Logs `scalars` at `step` to every sink and appends them to `history`."""
    record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
    self.history.append(record)
    if self._tb is not None:
      for name, value in scalars.items():
        self._tb.add_scalar(name, value, global_step=step)
    if self._jsonl is not None:
      self._jsonl.write(_json_line(record))
      self._jsonl.flush()
    if self._bar is not None:
      shown = {k.split("/")[-1]: f"{v:.4g}" for k, v in scalars.items()
               if k in self._shown}
      if shown:
        self._bar.set_postfix(shown, refresh=False)

  def advance(self, steps: int = 1) -> None:
    if self._bar is not None:
      self._bar.update(steps)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    if self._tb is not None:
      self._tb.close()
    if self._jsonl is not None:
      self._jsonl.close()
