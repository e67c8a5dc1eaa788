"""grain pipelines: seeded order, per-example augmentation, per-process slices, global batches.

The pipeline is a `grain.MapDataset` (random access all the way), so the iterator's state is
one integer (the next batch index) and a restored iterator continues exactly where the saved
one was. Layout, for a split of `n` examples:

  source -> seed(seed) -> shuffle (if shuffle) -> augment or eval transform
    -> [pad each epoch to a multiple of the global batch, with "mask" (drop_remainder=False);
        padding examples are zeros of every feature's shape and dtype]
    -> repeat(num_epochs) -> this process's rows of every global batch -> batch(local)

Every transform sees the example's global position (epoch * epoch_len + i), so each epoch is
shuffled and augmented differently but reproducibly, and the global batch is the same for
any number of processes: process p reads rows [p * local, (p + 1) * local) of each global
batch, which is what `jax.make_array_from_process_local_data` expects.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import grain
import numpy as np
from jax.sharding import Mesh

from spg_jax import sharding
from spg_jax.data import catalog

_MAX_SEED = 2**32  # grain seeds are uint32


class _AddMask:
  """Marks real examples with `mask=True` (padding examples get `False`)."""

  def __init__(self, fn: Callable[..., dict[str, np.ndarray]]):
    self.fn = fn

  def __call__(self, *args) -> dict[str, np.ndarray]:
    return {**self.fn(*args), "mask": np.True_}


def padding_example(features: Mapping[str, catalog.Feature]) -> dict[str, np.ndarray]:
  """Zeros of every feature's shape and dtype, plus `mask=False`: what pads a last batch."""
  return {**{name: f.zeros() for name, f in features.items()}, "mask": np.False_}


class _PadEpochs:
  """`map_with_index` body: each epoch of `n` examples padded to `padded_len` positions.

  Position `index` = epoch * padded_len + j reads example j of that epoch of `ds` (global
  index epoch * n + j, so per-epoch reshuffling still applies) or a padding example.
  """

  def __init__(self, ds: grain.MapDataset, n: int, padded_len: int,
               features: Mapping[str, catalog.Feature]):
    self.ds, self.n, self.padded_len = ds, n, padded_len
    self.pad = padding_example(features)

  def __call__(self, index: int, _: Any) -> dict[str, np.ndarray]:
    epoch, j = divmod(index, self.padded_len)
    return self.ds[epoch * self.n + j] if j < self.n else self.pad


class _ProcessRows:
  """`map` body: local position i -> the global position of row i in this process's slice."""

  def __init__(self, ds: grain.MapDataset, process_index: int, local_batch: int,
               global_batch: int):
    self.ds, self.offset = ds, process_index * local_batch
    self.local_batch, self.global_batch = local_batch, global_batch

  def __call__(self, i: int) -> dict[str, np.ndarray]:
    b, r = divmod(int(i), self.local_batch)
    return self.ds[b * self.global_batch + self.offset + r]


def check_pipeline_args(*, seed: int, num_epochs: int | None, worker_count: int) -> None:
  """One-line ValueErrors naming the field, raised before any data is touched."""
  if not (isinstance(seed, (int, np.integer)) and 0 <= seed < _MAX_SEED):
    raise ValueError(f"seed={seed!r}: must be an integer in [0, 2**32)")
  if num_epochs is not None and (not isinstance(num_epochs, (int, np.integer))
                                 or num_epochs <= 0):
    raise ValueError(f"num_epochs={num_epochs!r}: must be a positive integer or None "
                     f"(repeat forever)")
  if worker_count < 0:
    raise ValueError(f"worker_count={worker_count!r}: must be >= 0 (0 = read in this process)")
  if worker_count:
    from absl import flags  # pylint: disable=g-import-not-at-top  (grain depends on absl)
    # grain 0.2.x's worker processes read its --grain_* absl flags and crash unless the
    # flags were parsed (as `absl.app.run` does); say so now instead of inside a worker.
    if not flags.FLAGS.is_parsed():
      raise ValueError(f"worker_count={worker_count}: grain's worker processes need absl "
                       f"flags parsed; run under absl.app.run (experiments/main.py does) "
                       f"or use worker_count=0")


def resolve_features(features: Mapping[str, catalog.Feature] | None,
                     input_shape: Sequence[int] | None) -> catalog.Features:
  """The example specs from `features`, or from the older `input_shape=` (a classifier's
  float32 input and int32 scalar label); one-line ValueError unless exactly one is given."""
  if (features is None) == (input_shape is None):
    raise ValueError(f"features={features!r}, input_shape={input_shape!r}: give exactly one "
                     f"(features: name -> Feature; input_shape: a classifier's input shape)")
  if features is None:
    return catalog.classification_features(tuple(input_shape))
  return catalog.Features(features)


def check_example(example: Mapping[str, Any], features: Mapping[str, catalog.Feature]
                  ) -> None:
  """One-line ValueError unless `example` has exactly `features`' names, shapes and dtypes
  (padding examples must match real ones, or batching fails deep inside grain)."""
  if set(example) != set(features):
    raise ValueError(f"features: names {sorted(features)} do not match the example's "
                     f"{sorted(example)}")
  for name, f in features.items():
    a = np.asarray(example[name])
    if a.shape != f.shape or a.dtype != np.dtype(f.dtype):
      raise ValueError(f"features[{name!r}]: {f.dtype} {f.shape}, but the example's "
                       f"{name!r} is {a.dtype} {a.shape}")


def build_dataset(
    raw: Sequence[Any],
    eval_fn: Callable[[Any], dict[str, np.ndarray]],
    train_fn: Callable[[Any, np.random.Generator], dict[str, np.ndarray]] | None,
    *,
    features: Mapping[str, catalog.Feature] | None = None,
    input_shape: Sequence[int] | None = None,
    global_batch_size: int,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    augment: bool = False,
    drop_remainder: bool = True,
    process_index: int = 0,
    process_count: int = 1,
    worker_count: int = 0,
    read_options: grain.ReadOptions | None = None,
) -> grain.IterDataset:
  """The per-process pipeline, yielding this process's numpy slice of each global batch.

  Args:
    raw: random-access source of raw examples (`len`, `__getitem__`).
    eval_fn: deterministic `raw example -> example` (`{"input", "label", ...}` as
      `features` describes).
    train_fn: `(raw example, rng) -> example`, used when `augment` (if None, `eval_fn` is
      used: the dataset has no augmentation).
    features: `name -> Feature` of one example (`DatasetInfo.features`): padding
      examples are zeros of these shapes and dtypes. With drop_remainder=False, the first
      raw example's `eval_fn` output is checked against it.
    input_shape: instead of `features`, for a classifier only (float32 input of this
      shape, int32 scalar label); kept for older callers. Give exactly one of the two.
    global_batch_size: examples per global batch, over all processes.
    seed: fixes the order (shuffle) and the augmentation.
    shuffle: reshuffle every epoch; otherwise source order.
    num_epochs: passes over the data; None repeats forever.
    augment: apply `train_fn`.
    drop_remainder: drop the last incomplete global batch. If False, every epoch is padded
      to a whole number of global batches and each example carries a bool `"mask"`
      (False on padding), so evaluation can count every example exactly once.
    process_index, process_count: this process's slot (jax.process_index/process_count).
    worker_count: grain multiprocessing workers (0: threads in this process).
    read_options: grain's per-example reader threads and read-ahead (default: grain's).

  Returns:
    An IterDataset of `{name: [local_B, *features[name].shape] (, "mask": [local_B]
    bool)}`, e.g. `{"input": [local_B, *input_shape] float32, "label": [local_B] int32}`,
    with `local_B = global_batch_size // process_count`.
  """
  features = resolve_features(features, input_shape)
  if "mask" in features:
    raise ValueError(f"features: has 'mask', which the pipeline adds itself (names: "
                     f"{list(features)})")
  if global_batch_size % process_count:
    raise ValueError(f"batch_size={global_batch_size}: must be a multiple of the process "
                     f"count ({process_count})")
  n = len(raw)
  if n == 0:
    raise ValueError("the split has no examples")
  local_batch = global_batch_size // process_count
  ds = grain.MapDataset.source(raw).seed(seed)
  if shuffle:
    ds = ds.shuffle()
  if augment and train_fn is not None:
    fn, ds_map = train_fn, ds.random_map
  else:
    fn, ds_map = eval_fn, ds.map
  if drop_remainder:
    ds = ds_map(fn)
  else:
    check_example(eval_fn(raw[0]), features)
    padded_len = -(-n // global_batch_size) * global_batch_size
    ds = grain.MapDataset.range(padded_len).map_with_index(
        _PadEpochs(ds_map(_AddMask(fn)), n, padded_len, features))
  ds = ds.repeat(num_epochs)
  # len(ds) is sys.maxsize when repeating forever; the floor division keeps that "infinite".
  num_batches = len(ds) // global_batch_size
  if num_batches == 0:
    raise ValueError(f"batch_size={global_batch_size}: more than the {len(ds)} examples of "
                     f"num_epochs={num_epochs} pass(es) with drop_remainder=True")
  ds = grain.MapDataset.range(num_batches * local_batch).map(
      _ProcessRows(ds, process_index, local_batch, global_batch_size))
  # Prefetch threads work per example (ImageNet decoding parallelises) and the read-ahead
  # buffer counts examples, not batches, so its memory stays small.
  it_ds = ds.to_iter_dataset(read_options).batch(local_batch, drop_remainder=True)
  if worker_count:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return it_ds


class DataIterator:
  """Global batches as sharded `jax.Array`s, with a checkpointable position.

  `next(it)` -> `{name: [B, *features[name].shape]}` for the dataset's features, e.g.
  `{"input": [B, *input_shape] float32, "label": [B] int32}` (plus `"mask"` [B] bool when
  built with drop_remainder=False), each with NamedSharding(mesh, P('data')).
  `get_state()` returns a JSON-serialisable dict; `set_state(state)` on an iterator built
  with the same arguments continues exactly where the saved one was.
  """

  def __init__(self, dataset: grain.IterDataset, mesh: Mesh, config: dict[str, Any]):
    self._mesh = mesh
    self._config = config
    self._it = iter(dataset)

  def __iter__(self) -> "DataIterator":
    return self

  def __next__(self) -> dict[str, Any]:
    return sharding.shard_batch(next(self._it), self._mesh)

  def get_state(self) -> dict[str, Any]:
    """`{"config": <arguments that fix the stream>, "grain": <grain iterator state>}`."""
    return {"config": dict(self._config), "grain": self._it.get_state()}

  def set_state(self, state: dict[str, Any]) -> None:
    """Restore a `get_state()` result; ValueError if it came from a different stream."""
    saved = state.get("config", {})
    diff = sorted(k for k in set(saved) | set(self._config)
                  if saved.get(k) != self._config.get(k))
    if diff:
      raise ValueError(f"iterator state: saved for a different stream ({', '.join(diff)} "
                       f"differ: saved {[saved.get(k) for k in diff]}, now "
                       f"{[self._config.get(k) for k in diff]})")
    self._it.set_state(state["grain"])

  def close(self) -> None:
    """Stop grain's read-ahead threads / worker processes now (not at garbage collection)."""
    self._it.close()

  def __enter__(self) -> "DataIterator":
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()
