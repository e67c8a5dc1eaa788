"""The known datasets, their example features and classes, and argument checks shared by the
package.

A dataset is described by its `DatasetInfo`: the task it is for, its number of classes, and
`features`, the shape and dtype of every array of one example (no batch axis), e.g.
`{"input": Feature((32, 32, 3), "float32"), "label": Feature((), "int32")}` for a
classifier, `{"input": Feature((64, 64, 3), "float32"), "label": Feature((64, 64),
"int32")}` for segmentation. The pipeline pads batches with zeros of these specs.

Some datasets take preprocessing options (`PREPROCESS_OPTIONS`: ImageNet's crop and resize
sizes, COCO-with-VOC-labels' presets); `dataset_info(name, preprocess={...})` gives the
info with the shapes those options make.
"""
from __future__ import annotations

import dataclasses
import functools
import types
from typing import Any, Iterator, Mapping

import numpy as np

from spg_jax.data import preprocess as preprocess_lib
from spg_jax.data import librispeech
from spg_jax.data import shapes
from spg_jax.data import speech_commands
from spg_jax.data import spoken_digits
from spg_jax.data import text_catalog

SPLITS = ("train", "validation", "test")
KINDS = ("embedded", "tfds", "arrays", "text", "audio")

# Preprocessing options, per dataset, with their defaults (torchvision's references). The
# other datasets have none.
#   imagenet2012: train_crop_size (RandomResizedCrop), eval_resize_size (the shorter side)
#     and eval_crop_size (centre crop); `preprocess.EVAL_SIZES` lists the weights cards'
#     eval values (EfficientNet-V2-M: 480 / 480).
#   coco_voc: base_size (eval: the shorter side; train: RandomResize(0.5 * base,
#     2 * base)), crop_size (train RandomCrop) and eval_pad_size (evaluation images are
#     padded to this square, label 255, so batches have one shape; it must hold the
#     largest resized image: 2 * base_size holds every aspect ratio up to 2:1).
#   spoken_digits: train_per_word, validation_per_word, test_per_word (clips per word of
#     each split, generated with espeak-ng; spg_jax.data.audio_sources).
#   librispeech: max_samples, max_tokens (padded lengths of audio and transcripts; longer
#     utterances are left out; spg_jax.data.audio_sources).
PREPROCESS_OPTIONS = types.MappingProxyType({
    "imagenet2012": types.MappingProxyType({
        "train_crop_size": preprocess_lib.IMAGENET_CROP,
        "eval_resize_size": preprocess_lib.IMAGENET_RESIZE,
        "eval_crop_size": preprocess_lib.IMAGENET_CROP}),
    "coco_voc": types.MappingProxyType({
        "base_size": preprocess_lib.SEG_BASE_SIZE,
        "crop_size": preprocess_lib.SEG_CROP_SIZE,
        "eval_pad_size": 2 * preprocess_lib.SEG_BASE_SIZE}),
    "spoken_digits": types.MappingProxyType({
        f"{split}_per_word": n for split, n in spoken_digits.DEFAULT_SIZES.items()}),
    # 20 s of 16 kHz audio (the usual fine-tuning filter) and up to 400 characters.
    "librispeech": types.MappingProxyType({"max_samples": 20 * librispeech.SAMPLE_RATE,
                                           "max_tokens": 400}),
})
COCO_VOC_NUM_CLASSES = 21


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
    train_features: the specs of augmented training examples where they differ from
      `features` (COCO with VOC labels: 480x480 training crops, evaluation images padded
      to `eval_pad_size`); None: the same as `features`.
    preprocess: the preprocessing options in force, `((name, value), ...)` sorted
      (`PREPROCESS_OPTIONS` defaults filled in); `options` gives them as a dict.
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
  train_features: Mapping[str, Feature] | None = None
  preprocess: tuple[tuple[str, Any], ...] = ()

  def __post_init__(self):
    if not isinstance(self.features, Features):
      object.__setattr__(self, "features", Features(self.features))
    if self.train_features is not None and not isinstance(self.train_features, Features):
      object.__setattr__(self, "train_features", Features(self.train_features))
    object.__setattr__(self, "preprocess", tuple(sorted(dict(self.preprocess).items())))
    if self.kind not in KINDS:
      raise ValueError(f"kind={self.kind!r}: must be one of {list(KINDS)}")

  @property
  def options(self) -> dict[str, Any]:
    """The preprocessing options in force, `{name: value}`."""
    return dict(self.preprocess)

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


def _segmentation_features(size: int) -> Features:
  return Features(input=Feature((size, size, 3), "float32"), label=Feature((size, size), "int32"))


def _imagenet(options: Mapping[str, int]) -> DatasetInfo:
  crop, train_crop = options["eval_crop_size"], options["train_crop_size"]
  train = (None if train_crop == crop else
           classification_features((train_crop, train_crop, 3)))
  return DatasetInfo("imagenet2012", 1000, classification_features((crop, crop, 3)), "tfds",
                     tfds_name="imagenet2012", tfds_test_split="validation",
                     train_features=train, preprocess=tuple(options.items()))


def _coco_voc(options: Mapping[str, int]) -> DatasetInfo:
  # torchvision's COCO_WITH_VOC_LABELS_V1 data: COCO 2017 instances as 21 VOC classes;
  # prepared once with `python -m spg_jax.data.coco_voc`; TFDS "validation" = val2017.
  return DatasetInfo("coco_voc", COCO_VOC_NUM_CLASSES,
                     _segmentation_features(options["eval_pad_size"]), "tfds",
                     task="segmentation", ignore_label=preprocess_lib.SEG_IGNORE,
                     tfds_name="coco_voc", tfds_test_split="validation",
                     train_features=_segmentation_features(options["crop_size"]),
                     preprocess=tuple(options.items()))


def _text(name: str, options: Mapping[str, Any] | None = None) -> DatasetInfo:
  # GLUE / SQuAD v1.1 from local files, tokenised on read (spg_jax.data.text_sources).
  options = dict(options or text_catalog.default_options(name))
  spec = text_catalog.SPECS[name]
  features = Features({k: Feature(*v) for k, v in
                       text_catalog.feature_specs(name, options).items()})
  return DatasetInfo(name, spec.num_classes, features, "text", task=spec.task,
                     tfds_name=spec.tfds_name or None, tfds_test_split=spec.test_split,
                     preprocess=tuple(options.items()))


def _spoken_digits(options: Mapping[str, int]) -> DatasetInfo:
  # espeak-ng's spoken "zero".."nine", 1 s at 16 kHz: waveforms with a sample mask, for
  # the sequence_classification task (keyword spotting); generated on first use.
  n = spoken_digits.CLIP_SAMPLES
  features = Features(input_values=Feature((n,), "float32"),
                      attention_mask=Feature((n,), "int32"), label=Feature((), "int32"))
  return DatasetInfo("spoken_digits", len(spoken_digits.WORDS), features, "audio",
                     task="sequence_classification", preprocess=tuple(options.items()))


def _keyword_spotting(name: str, labels: tuple, samples: int) -> DatasetInfo:
  # Keyword spotting (SUPERB KS): 1 s waveforms at 16 kHz with a sample mask.
  features = Features(input_values=Feature((samples,), "float32"),
                      attention_mask=Feature((samples,), "int32"), label=Feature((), "int32"))
  return DatasetInfo(name, len(labels), features, "audio", task="sequence_classification")


def _librispeech(options: Mapping[str, int]) -> DatasetInfo:
  # Transcribed speech (LibriSpeech layout) for the ctc task: wav2vec2's 32 characters.
  samples, tokens = options["max_samples"], options["max_tokens"]
  features = Features(input_values=Feature((samples,), "float32"),
                      attention_mask=Feature((samples,), "int32"),
                      label=Feature((tokens,), "int32"),
                      label_paddings=Feature((tokens,), "float32"))
  return DatasetInfo("librispeech", len(librispeech.VOCAB), features, "audio", task="ctc",
                     preprocess=tuple(options.items()))


_WITH_OPTIONS = types.MappingProxyType({"imagenet2012": _imagenet, "coco_voc": _coco_voc,
                                        "spoken_digits": _spoken_digits,
                                        "librispeech": _librispeech,
                                        **{n: functools.partial(_text, n)
                                           for n in text_catalog.NAMES}})

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
    "imagenet2012": _imagenet(PREPROCESS_OPTIONS["imagenet2012"]),
    "coco_voc": _coco_voc(PREPROCESS_OPTIONS["coco_voc"]),
    "spoken_digits": _spoken_digits(PREPROCESS_OPTIONS["spoken_digits"]),
    "speech_commands": _keyword_spotting("speech_commands", speech_commands.LABELS,
                                         speech_commands.CLIP_SAMPLES),
    "librispeech": _librispeech(PREPROCESS_OPTIONS["librispeech"]),
    **{n: _text(n) for n in text_catalog.NAMES},
})


def names() -> list[str]:
  """Names of the known datasets, embedded ones first."""
  return list(_CATALOG)


def dataset_info(name: Any, preprocess: Mapping[str, Any] | None = None) -> DatasetInfo:
  """The `DatasetInfo` of `name` (a catalog name, or a user's dataset object with an
  `info`, e.g. `spg_jax.data.ArrayDataset`); one-line ValueError listing the known names
  otherwise.

  Args:
    name: the dataset.
    preprocess: preprocessing options (`PREPROCESS_OPTIONS[name]` keys; None values and
      missing keys take the defaults), e.g. `{"eval_resize_size": 480, "eval_crop_size":
      480}` for imagenet2012, which makes its `features["input"]` `(480, 480, 3)`.
  """
  if not isinstance(name, str):
    info = getattr(name, "info", None)
    if isinstance(info, DatasetInfo):
      check_preprocess(info.name, preprocess)
      return info
    raise ValueError(f"dataset={name!r}: must be a dataset name ({names()}) or a "
                     f"spg_jax.data.ArrayDataset")
  if name not in _CATALOG:
    raise ValueError(f"dataset={name!r}: unknown; known datasets are {names()}")
  options = check_preprocess(name, preprocess)
  if not options or options == dict(_CATALOG[name].preprocess):
    return _CATALOG[name]
  return _WITH_OPTIONS[name](options)


def check_preprocess(name: str, preprocess: Mapping[str, Any] | None) -> dict[str, Any]:
  """Preprocessing options of dataset `name` with the defaults filled in (`{}` for a
  dataset without options); one-line ValueError naming the first unknown or bad option.

  None values stand for the default (a config may hold every option as a placeholder).
  """
  given = {k: v for k, v in dict(preprocess or {}).items() if v is not None}
  if name in text_catalog.NAMES:  # text options are not all pixel counts
    return text_catalog.check_options(name, given)
  defaults = PREPROCESS_OPTIONS.get(name, {})
  for key, value in given.items():
    if key not in defaults:
      allowed = (f"its options are {sorted(defaults)}" if defaults else
                 "it has no preprocessing options")
      raise ValueError(f"preprocess.{key}={value!r}: not an option of dataset {name!r}; "
                       f"{allowed}")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
      unit = "pixels" if name in ("imagenet2012", "coco_voc") else "a count"
      raise ValueError(f"preprocess.{key}={value!r}: must be a positive integer ({unit})")
  options = {**defaults, **{k: int(v) for k, v in given.items()}}
  if name == "coco_voc" and options["eval_pad_size"] < options["base_size"]:
    raise ValueError(f"preprocess.eval_pad_size={options['eval_pad_size']}: must be at "
                     f"least base_size={options['base_size']} (evaluation images are "
                     f"resized to it and then padded)")
  return options


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
