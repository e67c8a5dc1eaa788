"""Input pipelines: embedded datasets (no download) and TFDS datasets through grain.

Public API:
  names()                       known dataset names.
  dataset_info(name, preprocess=None)
                                DatasetInfo(num_classes, features, task, ignore_label, ...);
                                `.input_shape` / `.label_shape` for short.
  ArrayDataset(name, splits, num_classes, task=...)
                                your own in-memory data; every function here that takes a
                                dataset `name` also takes one of these.
  make_source(name, split, ...) random-access source of preprocessed (eval-style) examples.
  make_iterator(name, split, global_batch_size=..., mesh=..., seed=...)
                                sharded global batches with get_state()/set_state().

An example is a dict of numpy arrays described by `dataset_info(name).features` (`Feature`:
shape without batch axis, dtype): for the classification datasets `{"input": float32
[*input_shape], "label": int32 []}`; for "shapes" (synthetic segmentation) `{"input":
float32 [64, 64, 3], "label": int32 [64, 64]}` with `ignore_label` 255 on object boundaries;
for "coco_voc" (COCO 2017 with VOC labels, 21 classes) evaluation examples padded to
`eval_pad_size` (`{"input": float32 [P, P, 3], "label": int32 [P, P]}`, P = 1040 by
default) and 480x480 training crops (`DatasetInfo.train_features`); for the audio sets
(`spg_jax.data.audio_sources`: "spoken_digits", "speech_commands", "librispeech")
waveforms `{"input_values": float32 [L], "attention_mask": int32 [L], "label": ...}`.
Splits are "train", "validation" (carved from the training data, for model selection) and
"test" (final reports only; ImageNet's public "validation" split, COCO's val2017).
Train-time augmentation happens in the pipeline (`make_iterator(..., augment=True)`, the
default for "train"), never in the source. `preprocess={...}` selects a dataset's
preprocessing options (`catalog.PREPROCESS_OPTIONS`: ImageNet's crop and resize sizes,
COCO's base, crop and pad sizes), e.g. `{"eval_resize_size": 480, "eval_crop_size": 480}`
for EfficientNet-V2-M.
"""
from __future__ import annotations

from typing import Any

import grain
import jax
import numpy as np
from jax.sharding import Mesh

from spg_jax import sharding
from spg_jax.data import catalog
from spg_jax.data.arrays import ArrayDataset
from spg_jax.data import audio_sources
from spg_jax.data import embedded
from spg_jax.data import pipeline
from spg_jax.data import sources
from spg_jax.data import text_sources
from spg_jax.data import tfds_sources
from spg_jax.data.catalog import DatasetInfo, dataset_info, Feature, Features, names, SPLITS
from spg_jax.data.pipeline import DataIterator, build_dataset

__all__ = ["ArrayDataset", "DataIterator", "DatasetInfo", "Feature", "Features", "SPLITS", "build_dataset",
           "dataset_info", "make_iterator", "make_parts", "make_source", "names"]


# Read-ahead of TFDS datasets: grain's default (500 examples) unless that holds more than
# this many bytes of preprocessed examples (COCO's padded evaluation images are 13 MB each).
_READ_AHEAD_BYTES = 1 << 30
_READ_AHEAD_MIN = 16


def make_parts(name: str, split: str, *, data_dir: str | None = None, seed: int = 0,
               validation_fraction: float = 0.1,
               preprocess: dict[str, Any] | None = None) -> sources.Parts:
  """Raw examples of a split with the dataset's eval and (optional) train transforms."""
  info = dataset_info(name, preprocess)
  catalog.check_split(split)
  catalog.check_validation_fraction(validation_fraction)
  if info.kind == "arrays":
    parts = sources.Parts(name.source(split), sources.identity, None)
  elif info.kind == "text":
    parts = text_sources.make_text_parts(info.name, split, data_dir=data_dir,
                                         validation_fraction=validation_fraction,
                                         options=info.options)
  elif info.kind == "audio":
    parts = audio_sources.make_audio_parts(info.name, split, data_dir=data_dir,
                                           options=info.options)
  elif info.kind == "embedded":
    parts = embedded.make_embedded_parts(name, split, split_seed=seed,
                                         validation_fraction=validation_fraction)
  else:
    parts = tfds_sources.make_tfds_parts(name, split, data_dir=data_dir,
                                         validation_fraction=validation_fraction,
                                         preprocess_options=preprocess)
  if len(parts.raw) == 0:
    raise ValueError(f"validation_fraction={validation_fraction!r}: leaves split={split!r} "
                     f"of {info.name!r} empty")
  return parts


def make_source(name: str, split: str, *, data_dir: str | None = None, seed: int = 0,
                validation_fraction: float = 0.1,
                preprocess: dict[str, Any] | None = None) -> Any:
  """A random-access source of eval-style preprocessed examples.

  Args:
    name: one of `names()`.
    split: "train", "validation" or "test".
    data_dir: TFDS data directory (TFDS datasets only; default: $TFDS_DATA_DIR or
      ~/tensorflow_datasets). Nothing is ever downloaded.
    seed: the split seed of the embedded datasets (which examples are train / validation /
      test); TFDS splits are fixed (validation = the last `validation_fraction` of "train").
    validation_fraction: share of the training data held out as "validation".
    preprocess: the dataset's preprocessing options (`catalog.PREPROCESS_OPTIONS`; None
      or missing keys: the defaults).

  Returns:
    `src` with `len(src)` and `src[i]` -> one example as `dataset_info(name).features`
    describes, e.g. `{"input": float32 [*input_shape], "label": int32 []}`.
  """
  parts = make_parts(name, split, data_dir=data_dir, seed=seed,
                     validation_fraction=validation_fraction, preprocess=preprocess)
  if parts.eval_fn is sources.identity:
    return parts.raw
  return sources.MappedSource(parts.raw, parts.eval_fn)


def make_iterator(name: str, split: str, *, global_batch_size: int, mesh: Mesh, seed: int,
                  data_dir: str | None = None, shuffle: bool = True,
                  num_epochs: int | None = None, augment: bool | None = None,
                  drop_remainder: bool = True, worker_count: int = 0,
                  validation_fraction: float = 0.1,
                  read_options: grain.ReadOptions | None = None,
                  preprocess: dict[str, Any] | None = None) -> DataIterator:
  """Global batches of `split`, sharded over the mesh's `'data'` axis; checkpointable.

  Args:
    name, split, data_dir, validation_fraction, preprocess: as in `make_source` (the split
      seed is fixed at 0, so every training seed sees the same train / validation
      examples).
    global_batch_size: examples per batch over all processes; a multiple of the number of
      devices on the `'data'` axis.
    mesh: from `spg_jax.sharding.make_mesh`.
    seed: fixes the order and the augmentation.
    shuffle: reshuffle every epoch (otherwise source order).
    num_epochs: passes over the data; None repeats forever.
    augment: train-time augmentation (crop/flip for CIFAR and ImageNet; the embedded
      datasets and MNIST have none); default True for "train", False otherwise.
    drop_remainder: drop the last incomplete batch; if False, pad it (zeros of every
      feature) and add a bool `"mask"` to every batch (False on padding).
    worker_count: grain multiprocessing workers (0: read with threads in this process).
      Needs absl flags parsed (`absl.app.run`), which grain's workers read.
    read_options: grain's reader threads and read-ahead, counted in examples. Default:
      none for embedded datasets (in-memory arrays: threads only add hand-off latency,
      ~10x slower per batch), grain's (16 threads, 500 examples) for TFDS datasets, with
      the read-ahead cut to about 1 GiB of examples (at least 16) for large ones.

  Returns:
    A `DataIterator`: `next(it)` -> `{name: jax.Array [B, *shape]}` for every
    `dataset_info(name).features` entry (e.g. `{"input": [B, *input_shape] float32,
    "label": [B] int32}`; "shapes": `"label"` [B, 64, 64] int32) with
    NamedSharding(mesh, P('data')); `get_state()` / `set_state(state)` for checkpointing.
  """
  info = dataset_info(name, preprocess)
  catalog.check_split(split)
  sharding.check_batch_divisible(global_batch_size, mesh)
  pipeline.check_pipeline_args(seed=seed, num_epochs=num_epochs, worker_count=worker_count)
  if augment is None:
    augment = split == "train"
  if read_options is None:
    read_options = default_read_options(info, augment)
  parts = make_parts(name, split, data_dir=data_dir, validation_fraction=validation_fraction,
                     preprocess=preprocess)
  process_index, process_count = jax.process_index(), jax.process_count()
  dataset = build_dataset(
      parts.raw, parts.eval_fn, parts.train_fn, features=info.features,
      global_batch_size=global_batch_size, seed=seed, shuffle=shuffle,
      num_epochs=num_epochs, augment=augment, drop_remainder=drop_remainder,
      process_index=process_index, process_count=process_count, worker_count=worker_count,
      read_options=read_options)
  config = {"name": info.name, "split": split, "global_batch_size": global_batch_size,
            "seed": int(seed), "shuffle": shuffle, "num_epochs": num_epochs,
            "augment": bool(augment), "drop_remainder": drop_remainder,
            "validation_fraction": validation_fraction, "process_count": process_count,
            "num_examples": len(parts.raw)}
  if info.preprocess:  # only where options exist, so other streams' states stay as they were
    config["preprocess"] = info.options
  return DataIterator(dataset, mesh, config)


def default_read_options(info: DatasetInfo, augment: bool) -> grain.ReadOptions | None:
  """grain's read options for `make_iterator` (see there): None (grain's default) for TFDS
  datasets of small examples; no threads for in-memory ones; a shorter read-ahead where
  grain's 500 examples would hold more than about 1 GiB."""
  if info.kind in ("embedded", "arrays", "text", "audio"):
    return grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
  features = info.train_features if augment and info.train_features else info.features
  nbytes = sum(int(np.prod(f.shape)) * np.dtype(f.dtype).itemsize for f in features.values())
  default = grain.ReadOptions()
  if nbytes * default.prefetch_buffer_size <= _READ_AHEAD_BYTES:
    return None
  return grain.ReadOptions(num_threads=default.num_threads,
                           prefetch_buffer_size=max(_READ_AHEAD_MIN,
                                                    _READ_AHEAD_BYTES // nbytes))
