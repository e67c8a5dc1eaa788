"""Datasets that need no download: sklearn's 8x8 digits and MNIST-1D (shipped with pip
packages) and "shapes" (synthetic segmentation, drawn by `spg_jax.data.shapes`).

Splits are fixed by `split_seed` (default 0), independent of the training seed, so runs
with different training seeds select models on the same validation set.
"""
from __future__ import annotations

import functools
import random

import numpy as np

from spg_jax.data import catalog
from spg_jax.data import shapes
from spg_jax.data import sources

EMBEDDED = ("digits", "mnist1d", "shapes")

# Share of the 1797 digits held out as the test split; validation is then carved from the
# rest. sklearn's digits come without an official split.
DIGITS_TEST_FRACTION = 0.2


def _readonly(a: np.ndarray) -> np.ndarray:
  a.setflags(write=False)  # cached arrays are shared between sources: forbid edits
  return a


@functools.lru_cache(maxsize=1)
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
  """All 1797 digits: images `[N, 8, 8, 1]` float32 in [0, 1] (pixel / 16), labels `[N]` int32."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top  (heavy; not at import)
  d = datasets.load_digits()  # bundled with scikit-learn: reads a file, no download
  images = (d.images.astype(np.float32) / 16.0)[..., None]
  return _readonly(images), _readonly(d.target.astype(np.int32))


@functools.lru_cache(maxsize=1)
def mnist1d_arrays() -> dict[str, np.ndarray]:
  """MNIST-1D generated with `make_dataset(get_dataset_args())` (default arguments).

  Returns:
    `{"x": [4000, 40, 1], "y": [4000], "x_test": [1000, 40, 1], "y_test": [1000]}`,
    float32 signals exactly as `make_dataset` gives them (it already centres the whole data
    set and scales it to unit standard deviation, so we standardise nothing further) and
    int32 labels.

  `make_dataset` generates the data procedurally and writes no file (`get_dataset`, which
  downloads or pickles to the CWD, is never called). It reseeds Python's and numpy's global
  RNGs; we restore both so callers' global random state is untouched. Importing `mnist1d`
  imports matplotlib, which may create its usual font cache under `$MPLCONFIGDIR` or
  `~/.cache/matplotlib`.
  """
  from mnist1d import data as mnist1d_data  # pylint: disable=g-import-not-at-top
  py_state, np_state = random.getstate(), np.random.get_state()
  try:
    d = mnist1d_data.make_dataset(mnist1d_data.get_dataset_args())
  finally:
    random.setstate(py_state)
    np.random.set_state(np_state)
  return {
      "x": _readonly(d["x"].astype(np.float32)[..., None]),
      "y": _readonly(d["y"].astype(np.int32)),
      "x_test": _readonly(d["x_test"].astype(np.float32)[..., None]),
      "y_test": _readonly(d["y_test"].astype(np.int32)),
  }


def _train_validation(pool: np.ndarray, split: str, split_seed: int,
                      validation_fraction: float) -> np.ndarray:
  """Indices into `pool` for "train" or "validation": a seeded permutation, validation first."""
  perm = pool[np.random.default_rng(split_seed).permutation(len(pool))]
  n_val = catalog.num_validation(len(pool), validation_fraction)
  chosen = perm[:n_val] if split == "validation" else perm[n_val:]
  return np.sort(chosen)  # source order is irrelevant (the pipeline shuffles); keep it readable


def split_indices(name: str, split: str, *, split_seed: int = 0,
                  validation_fraction: float = 0.1) -> np.ndarray:
  """Indices of `split` into the arrays of `name` ("digits": all 1797; "mnist1d" and
  "shapes": the training pool (4000 signals / 2000 images) for train/validation, the
  separate test set (1000 / 500) for test)."""
  if name == "digits":
    n = len(digits_arrays()[1])
    perm = np.random.default_rng(split_seed).permutation(n)
    n_test = int(round(n * DIGITS_TEST_FRACTION))
    if split == "test":
      return np.sort(perm[:n_test])
    return _train_validation(perm[n_test:], split, split_seed, validation_fraction)
  if name == "mnist1d":
    if split == "test":
      return np.arange(len(mnist1d_arrays()["y_test"]))
    return _train_validation(np.arange(len(mnist1d_arrays()["y"])), split, split_seed,
                             validation_fraction)
  if name == "shapes":  # the sizes are constants: splitting needs no generated data
    if split == "test":
      return np.arange(shapes.NUM_TEST)
    return _train_validation(np.arange(shapes.NUM_TRAIN_POOL), split, split_seed,
                             validation_fraction)
  raise ValueError(f"dataset={name!r}: not an embedded dataset; embedded are "
                   f"{list(EMBEDDED)}")


def make_embedded_source(name: str, split: str, *, split_seed: int = 0,
                         validation_fraction: float = 0.1) -> sources.ArraySource:
  """The raw `split` of embedded dataset `name` as an in-memory source.

  "digits" and "mnist1d" examples are already preprocessed (`{"input", "label"}`);
  "shapes" examples are compact `{"image": uint8, "label": uint8}`, which
  `shapes.to_example` converts (see `make_embedded_parts`).
  """
  idx = split_indices(name, split, split_seed=split_seed,
                      validation_fraction=validation_fraction)
  if name == "digits":
    images, labels = digits_arrays()
    return sources.ArraySource(images[idx], labels[idx])
  if name == "shapes":
    d = shapes.shapes_arrays()
    x, y = (d["x_test"], d["y_test"]) if split == "test" else (d["x"], d["y"])
    return sources.ArraySource({"image": x[idx], "label": y[idx]})
  d = mnist1d_arrays()
  x, y = (d["x_test"], d["y_test"]) if split == "test" else (d["x"], d["y"])
  return sources.ArraySource(x[idx], y[idx])


def make_embedded_parts(name: str, split: str, *, split_seed: int = 0,
                        validation_fraction: float = 0.1) -> sources.Parts:
  """The raw `split` of `name` with its eval transform (no embedded dataset has
  augmentation: `train_fn` is None)."""
  raw = make_embedded_source(name, split, split_seed=split_seed,
                             validation_fraction=validation_fraction)
  eval_fn = shapes.to_example if name == "shapes" else sources.identity
  return sources.Parts(raw, eval_fn, None)
