"""The known datasets, their example features and classes, and argument checks shared by the
package.

A dataset is described by its `DatasetInfo`: the task it is for, its number of classes, and
`features`, the shape and dtype of every array of one example (no batch axis), e.g.
`{"input": Feature((32, 32, 3), "float32"), "label": Feature((), "int32")}` for a
classifier, `{"input": Feature((64, 64, 3), "float32"), "label": Feature((64, 64),
"int32")}` for segmentation. The pipeline pads batches with zeros of these specs.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Any, Iterator, Mapping

import numpy as np

from spg_jax.data import shapes

SPLITS = ("train", "validation", "test")
KINDS = ("embedded", "tfds", "arrays")


@dataclasses.dataclass(frozen=True)
class Feature:
  """Shape (no batch axis) and numpy dtype name of one array of an example.

  Attributes:
    shape: e.g. `(64, 64, 3)`; `()` for a scalar.
    dtype: a numpy dtype name, e.g. `"float32"`, `"int32"`, `"bool"` (anything
      `np.dtype` accepts is stored as its name).
  """
  shape: tuple[int, ...]
  dtype: str

  def __post_init__(self):
    try:
      shape = tuple(int(d) for d in self.shape)
    except (TypeError, ValueError):
      shape = (-1,)
    if any(d < 0 for d in shape):
      raise ValueError(f"shape={self.shape!r}: must be a tuple of non-negative ints")
    try:
      dtype = np.dtype(self.dtype).name
    except TypeError:
      raise ValueError(f"dtype={self.dtype!r}: must be a numpy dtype name such as "
                       f"'float32', 'int32' or 'bool'") from None
    # Canonical values, so equal specs compare (and hash) equal.
    object.__setattr__(self, "shape", shape)
    object.__setattr__(self, "dtype", dtype)

  def zeros(self) -> np.ndarray:
    """An all-zero array of this shape and dtype (a padding example's value)."""
    return np.zeros(self.shape, self.dtype)


class Features(Mapping[str, Feature]):
  """Read-only, hashable `name -> Feature` mapping (keeps insertion order).

  `Features(input=Feature(...), label=Feature(...))` or `Features({"input": ...})`. It
  compares equal to any mapping with the same items, so a plain dict may be used in tests.
  """

  def __init__(self, items: Mapping[str, Feature] | Any = (), **kwargs: Feature):
    d = dict(items, **kwargs)
    for name, feature in d.items():
      if not isinstance(name, str) or not isinstance(feature, Feature):
        raise ValueError(f"features[{name!r}]={feature!r}: must map str names to Feature")
    self._items = tuple(d.items())
    self._dict = d

  def __getitem__(self, name: str) -> Feature:
    return self._dict[name]

  def __iter__(self) -> Iterator[str]:
    return iter(self._dict)

  def __len__(self) -> int:
    return len(self._items)

  def __hash__(self) -> int:
    # Order-free, as Mapping equality is.
    return hash(frozenset(self._items))

  def __repr__(self) -> str:
    return f"Features({self._dict!r})"


def classification_features(input_shape: tuple[int, ...]) -> Features:
  """`{"input": float32 [*input_shape], "label": int32 []}`: one class per example."""
  return Features(input=Feature(tuple(input_shape), "float32"), label=Feature((), "int32"))


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model needs to know about a dataset.

  Attributes:
    name: the name used by `make_source` / `make_iterator`.
    num_classes: number of label classes; labels are int32 in [0, num_classes) (or
      `ignore_label`).
    features: `name -> Feature` of one example (no batch axis); a plain mapping is turned
      into a read-only, hashable `Features`.
    kind: `"embedded"` (ships with the code or a pip package, no download), `"tfds"`
      (read with `tfds.data_source` from a prepared array_record `data_dir`) or
      `"arrays"` (a user's `spg_jax.data.ArrayDataset`).
    task: what the dataset is for: `"classification"` (one label per example) or
      `"segmentation"` (one label per pixel).
    ignore_label: the label value of pixels that count for no class (object boundaries;
      255 as in Pascal VOC), or `None` when every label is a class.
    tfds_name: the TFDS builder name (`None` for embedded datasets).
    tfds_test_split: the TFDS split that serves as our "test" split (ImageNet's public
      "validation" split is its test set; `None` for embedded datasets).
  """
  name: str
  num_classes: int
  features: Mapping[str, Feature]
  kind: str
  task: str = "classification"
  ignore_label: int | None = None
  tfds_name: str | None = None
  tfds_test_split: str | None = None

  def __post_init__(self):
    if not isinstance(self.features, Features):
      object.__setattr__(self, "features", Features(self.features))
    if self.kind not in KINDS:
      raise ValueError(f"kind={self.kind!r}: must be one of {list(KINDS)}")

  def _feature(self, name: str) -> Feature:
    if name not in self.features:
      raise ValueError(f"dataset={self.name!r}: has no {name!r} feature (it has "
                       f"{list(self.features)})")
    return self.features[name]

  @property
  def input_shape(self) -> tuple[int, ...]:
    """Shape of one example's `"input"` (no batch axis), e.g. `(40, 1)`."""
    return self._feature("input").shape

  @property
  def label_shape(self) -> tuple[int, ...]:
    """Shape of one example's `"label"`: `()` for classification, `(H, W)` for segmentation."""
    return self._feature("label").shape


def _classifier(name: str, num_classes: int, input_shape: tuple[int, ...], kind: str,
                tfds_name: str | None = None,
                tfds_test_split: str | None = None) -> DatasetInfo:
  return DatasetInfo(name, num_classes, classification_features(input_shape), kind,
                     tfds_name=tfds_name, tfds_test_split=tfds_test_split)


_SHAPES_SIZE = (shapes.IMAGE_SIZE, shapes.IMAGE_SIZE)

# Read-only mapping: a constant table, not mutable global state. Embedded datasets first.
_CATALOG = types.MappingProxyType({
    "digits": _classifier("digits", 10, (8, 8, 1), "embedded"),
    "mnist1d": _classifier("mnist1d", 10, (40, 1), "embedded"),
    "shapes": DatasetInfo(
        "shapes", shapes.NUM_CLASSES,
        Features(input=Feature(_SHAPES_SIZE + (3,), "float32"),
                 label=Feature(_SHAPES_SIZE, "int32")),
        "embedded", task="segmentation", ignore_label=shapes.IGNORE_LABEL),
    "mnist": _classifier("mnist", 10, (28, 28, 1), "tfds", "mnist", "test"),
    "cifar10": _classifier("cifar10", 10, (32, 32, 3), "tfds", "cifar10", "test"),
    "cifar100": _classifier("cifar100", 100, (32, 32, 3), "tfds", "cifar100", "test"),
    "imagenet2012": _classifier("imagenet2012", 1000, (224, 224, 3), "tfds", "imagenet2012",
                                "validation"),
})


def names() -> list[str]:
  """Names of the known datasets, embedded ones first."""
  return list(_CATALOG)


def dataset_info(name: Any) -> DatasetInfo:
  """The `DatasetInfo` of `name` (a catalog name, or a user's dataset object with an
  `info`, e.g. `spg_jax.data.ArrayDataset`); one-line ValueError listing the known names
  otherwise."""
  if not isinstance(name, str):
    info = getattr(name, "info", None)
    if isinstance(info, DatasetInfo):
      return info
    raise ValueError(f"dataset={name!r}: must be a dataset name ({names()}) or a "
                     f"spg_jax.data.ArrayDataset")
  if name not in _CATALOG:
    raise ValueError(f"dataset={name!r}: unknown; known datasets are {names()}")
  return _CATALOG[name]


def check_split(split: str) -> None:
  """One-line ValueError unless `split` is one of `SPLITS`."""
  if split not in SPLITS:
    raise ValueError(f"split={split!r}: must be one of {list(SPLITS)}")


def check_validation_fraction(validation_fraction: float) -> None:
  """The validation split is carved from the training data: the fraction must be in [0, 1)."""
  if not 0.0 <= validation_fraction < 1.0:
    raise ValueError(f"validation_fraction={validation_fraction!r}: must be in [0, 1)")


def num_validation(num_train_pool: int, validation_fraction: float) -> int:
  """How many of `num_train_pool` training examples are held out for validation."""
  return int(round(num_train_pool * validation_fraction))
