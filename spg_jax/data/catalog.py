"""The known datasets, their shapes and classes, and argument checks shared by the package."""
from __future__ import annotations

import dataclasses
import types

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model needs to know about a dataset.

  Attributes:
    name: the name used by `make_source` / `make_iterator`.
    num_classes: number of label classes; labels are int32 in [0, num_classes).
    input_shape: shape of one example's `"input"` (no batch axis), e.g. `(40, 1)`.
    kind: `"embedded"` (ships with a pip package, no download) or `"tfds"` (read with
      `tfds.data_source` from a prepared array_record `data_dir`).
    tfds_name: the TFDS builder name (`None` for embedded datasets).
    tfds_test_split: the TFDS split that serves as our "test" split (ImageNet's public
      "validation" split is its test set; `None` for embedded datasets).
  """
  name: str
  num_classes: int
  input_shape: tuple[int, ...]
  kind: str
  tfds_name: str | None = None
  tfds_test_split: str | None = None


# Read-only mapping: a constant table, not mutable global state.
_CATALOG = types.MappingProxyType({
    "digits": DatasetInfo("digits", 10, (8, 8, 1), "embedded"),
    "mnist1d": DatasetInfo("mnist1d", 10, (40, 1), "embedded"),
    "mnist": DatasetInfo("mnist", 10, (28, 28, 1), "tfds", "mnist", "test"),
    "cifar10": DatasetInfo("cifar10", 10, (32, 32, 3), "tfds", "cifar10", "test"),
    "cifar100": DatasetInfo("cifar100", 100, (32, 32, 3), "tfds", "cifar100", "test"),
    "imagenet2012": DatasetInfo("imagenet2012", 1000, (224, 224, 3), "tfds", "imagenet2012",
                                "validation"),
})


def names() -> list[str]:
  """Names of the known datasets, embedded ones first."""
  return list(_CATALOG)


def dataset_info(name: str) -> DatasetInfo:
  """The `DatasetInfo` of `name`; one-line ValueError listing the known names otherwise."""
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
