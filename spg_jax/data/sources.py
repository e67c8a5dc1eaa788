"""Random-access sources: `len(source)` and `source[i]` -> dict of numpy arrays.

These are the `grain.MapDataset.source(...)` inputs. They are small classes (not closures)
so that a pipeline stays picklable for grain's multiprocessing workers.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np


def _check_index(index: int, length: int) -> int:
  index = int(index)
  if index < 0:
    index += length
  if not 0 <= index < length:
    # IndexError (not ValueError) keeps Python's sequence iteration protocol working.
    raise IndexError(f"index {index} out of range for a source of length {length}")
  return index


class ArraySource:
  """In-memory examples: `inputs[i]` and `labels[i]` as `{"input", "label"}`.

  Args:
    inputs: `[N, *input_shape]` float32.
    labels: `[N]` int32.
  """

  def __init__(self, inputs: np.ndarray, labels: np.ndarray):
    if len(inputs) != len(labels):
      raise ValueError(f"inputs ({len(inputs)}) and labels ({len(labels)}) differ in length")
    self.inputs = inputs
    self.labels = labels

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    i = _check_index(index, len(self))
    return {"input": self.inputs[i], "label": self.labels[i]}

  def __repr__(self) -> str:
    return f"ArraySource(n={len(self)}, input_shape={self.inputs.shape[1:]})"


class RangeView:
  """Examples `start <= i < stop` of `base`, re-indexed from 0 (a split of a bigger source)."""

  def __init__(self, base: Sequence[Any], start: int, stop: int):
    if not 0 <= start <= stop <= len(base):
      raise ValueError(f"range [{start}, {stop}) does not fit a source of length {len(base)}")
    self.base, self.start, self.stop = base, start, stop

  def __len__(self) -> int:
    return self.stop - self.start

  def __getitem__(self, index: int) -> Any:
    return self.base[self.start + _check_index(index, len(self))]

  def __repr__(self) -> str:
    return f"RangeView({self.base!r}, {self.start}, {self.stop})"


class MappedSource:
  """`fn(base[i])`: a deterministic per-example transform applied lazily on read."""

  def __init__(self, base: Sequence[Any], fn: Callable[[Any], dict[str, np.ndarray]]):
    self.base, self.fn = base, fn

  def __len__(self) -> int:
    return len(self.base)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return self.fn(self.base[_check_index(index, len(self))])

  def __repr__(self) -> str:
    return f"MappedSource({self.base!r}, {getattr(self.fn, '__name__', self.fn)!r})"


class Parts:
  """A split before preprocessing, with its eval transform and optional train transform.

  Attributes:
    raw: random-access source of raw examples.
    eval_fn: `raw example -> {"input", "label"}`, deterministic.
    train_fn: `(raw example, np.random.Generator) -> {"input", "label"}` (augmentation),
      or `None` when the dataset has no augmentation (then training uses `eval_fn`).
  """

  def __init__(self, raw: Sequence[Any], eval_fn: Callable[[Any], dict[str, np.ndarray]],
               train_fn: Callable[[Any, np.random.Generator], dict[str, np.ndarray]] | None):
    self.raw, self.eval_fn, self.train_fn = raw, eval_fn, train_fn


def identity(example: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Eval transform of sources that are already preprocessed (the embedded ones)."""
  return example
