"""Random-access sources: `len(source)` and `source[i]` -> dict of numpy arrays.

These are the `grain.MapDataset.source(...)` inputs. They are small classes (not closures)
so that a pipeline stays picklable for grain's multiprocessing workers.
"""
from __future__ import annotations

import types
from typing import Any, Callable, Mapping, Sequence

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
  """In-memory examples: `source[i]` = `{name: arrays[name][i]}` for every array.

  `ArraySource({"input": x, "label": y, ...})` holds any dict of arrays of equal length;
  `ArraySource(inputs, labels)` is the two-array form, `{"input": inputs, "label": labels}`.

  Args:
    arrays: `name -> [N, ...]` numpy arrays (any dtypes), or the inputs `[N, ...]` when
      `labels` is given.
    labels: `[N, ...]` labels of the two-array form.
  """

  def __init__(self, arrays: Mapping[str, np.ndarray] | np.ndarray,
               labels: np.ndarray | None = None):
    if labels is not None:
      if len(arrays) != len(labels):
        raise ValueError(f"inputs ({len(arrays)}) and labels ({len(labels)}) differ in length")
      arrays = {"input": arrays, "label": labels}
    if not isinstance(arrays, Mapping) or not arrays:
      raise ValueError(f"arrays={type(arrays).__name__}: must be a non-empty dict of arrays "
                       f"(or pass inputs and labels)")
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
      raise ValueError(f"arrays: lengths differ ({lengths}); must all be equal")
    # A plain dict (not a MappingProxyType): sources must pickle for grain's workers.
    self._arrays = dict(arrays)
    self._len = next(iter(lengths.values()))

  @property
  def arrays(self) -> Mapping[str, np.ndarray]:
    """Read-only view of `name -> [N, ...]` arrays."""
    return types.MappingProxyType(self._arrays)

  def _array(self, name: str) -> np.ndarray:
    if name not in self._arrays:
      raise AttributeError(f"this ArraySource has no {name!r} array (it has "
                           f"{list(self._arrays)})")
    return self._arrays[name]

  @property
  def inputs(self) -> np.ndarray:
    """The `"input"` array, `[N, ...]`."""
    return self._array("input")

  @property
  def labels(self) -> np.ndarray:
    """The `"label"` array, `[N, ...]`."""
    return self._array("label")

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    i = _check_index(index, len(self))
    return {name: a[i] for name, a in self._arrays.items()}

  def __repr__(self) -> str:
    specs = ", ".join(f"{name}={a.shape[1:]} {a.dtype}" for name, a in self._arrays.items())
    return f"ArraySource(n={len(self)}, {specs})"


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
    eval_fn: `raw example -> example` (`{"input", "label", ...}`), deterministic.
    train_fn: `(raw example, np.random.Generator) -> example` (augmentation),
      or `None` when the dataset has no augmentation (then training uses `eval_fn`).
  """

  def __init__(self, raw: Sequence[Any], eval_fn: Callable[[Any], dict[str, np.ndarray]],
               train_fn: Callable[[Any, np.random.Generator], dict[str, np.ndarray]] | None):
    self.raw, self.eval_fn, self.train_fn = raw, eval_fn, train_fn


def identity(example: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Eval transform of sources that are already preprocessed (the embedded ones)."""
  return example
