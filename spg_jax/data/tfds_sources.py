"""TFDS datasets read with `tfds.data_source` (array_record, random access, no TensorFlow).

The data must be prepared beforehand, e.g.
`tfds build cifar10 --file_format=array_record --data_dir=DIR` (COCO with VOC labels:
`python -m spg_jax.data.coco_voc --coco_dir=COCO --data_dir=DIR`); nothing here downloads
(`download=False` everywhere). Our splits: "train" = the first `1 - validation_fraction`
of TFDS "train", "validation" = its last `validation_fraction` (TFDS shuffles examples when
it prepares a dataset, so the tail is a random sample), "test" = TFDS "test" ("validation"
for imagenet2012, whose test labels are not public, and for coco_voc, where it is val2017).
"""
from __future__ import annotations

import os
from typing import Any, Callable

from spg_jax import validation
from spg_jax.data import catalog
from spg_jax.data import preprocess
from spg_jax.data import sources

# Formats `tfds.data_source` can read with random access.
_RANDOM_ACCESS_FORMATS = ("array_record", "parquet")
# Datasets we build ourselves (not TFDS catalog builders): the command that prepares them.
_OWN_BUILDERS = {"coco_voc": "python -m spg_jax.data.coco_voc --coco_dir=COCO_2017_DIR "
                             "--data_dir={data_dir}"}


def transforms(info: catalog.DatasetInfo) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
  """(eval transform, train transform or None) on raw TFDS examples, for `info`'s
  preprocessing options (`info.options`)."""
  options = info.options
  if info.name == "mnist":
    return preprocess.unit_image_eval, None
  if info.name in ("cifar10", "cifar100"):
    return preprocess.unit_image_eval, preprocess.cifar_train
  if info.name == "imagenet2012":
    return (preprocess.ImageNetEval(options["eval_resize_size"], options["eval_crop_size"]),
            preprocess.ImageNetTrain(options["train_crop_size"]))
  if info.name == "coco_voc":
    return (preprocess.SegmentationEval(options["base_size"], options["eval_pad_size"]),
            preprocess.SegmentationTrain(options["base_size"], options["crop_size"]))
  raise ValueError(f"dataset={info.name!r}: not a TFDS dataset")


def prepare_command(tfds_name: str, data_dir: str | None) -> str:
  if tfds_name in _OWN_BUILDERS:
    return _OWN_BUILDERS[tfds_name].format(data_dir=data_dir or "DIR")
  return (f"tfds build {tfds_name} --file_format=array_record "
          f"--data_dir={data_dir or 'DIR'}")


def _where(data_dir: str | None) -> str:
  return data_dir or "the default data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)"


def _not_prepared(info: catalog.DatasetInfo, data_dir: str | None) -> ValueError:
  command = prepare_command(info.tfds_name, data_dir)
  if info.tfds_name in _OWN_BUILDERS:
    how = "(no TensorFlow needed, to prepare or to read)"
  else:
    how = ("(preparing may need TensorFlow installed; reading it afterwards does not)")
    if info.name == "imagenet2012":
      how = "(imagenet2012 also needs the ImageNet tar files in --manual_dir) " + how
  return ValueError(f"dataset={info.name!r}: not prepared in {_where(data_dir)}; prepare "
                    f"it once with `{command}` {how}")


def _builder(info: catalog.DatasetInfo, data_dir: str | None) -> Any:
  """The TFDS builder: a catalog builder by name, or (our own datasets) the prepared files
  `<data_dir>/<name>/<version>`, which TFDS reads without the builder's code (the same
  read-only builder whether or not the builder's module was imported)."""
  tfds = validation.require_extra("tensorflow_datasets", "tfds")  # heavy: only here
  if info.tfds_name not in _OWN_BUILDERS:
    return tfds.builder(info.tfds_name, data_dir=data_dir)
  from etils import epath  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core import constants  # pylint: disable=g-import-not-at-top
  from spg_jax.data import coco_voc  # pylint: disable=g-import-not-at-top
  root = epath.Path(data_dir or constants.get_default_data_dir())
  path = root / info.tfds_name / coco_voc.VERSION
  if not (path / "dataset_info.json").exists():
    raise _not_prepared(info, data_dir)
  return tfds.builder_from_directory(os.fspath(path))


def _data_source(info: catalog.DatasetInfo, tfds_split: str, data_dir: str | None,
                 builder: Any = None) -> Any:
  """`builder.as_data_source(tfds_split)`; a one-line ValueError saying how to prepare the
  data when it is missing or not in a random-access format. Never downloads."""
  builder = builder or _builder(info, data_dir)
  try:
    return builder.as_data_source(split=tfds_split)
  except Exception as e:  # pylint: disable=broad-except  (tfds raises several types here)
    # Diagnose after the fact: `tfds.testing.mock_data` serves data sources for builders
    # that report themselves unprepared, so the check cannot come first.
    where = _where(data_dir)
    command = prepare_command(info.tfds_name, data_dir)
    if not builder.is_prepared():
      raise _not_prepared(info, data_dir) from e
    file_format = getattr(builder.info.file_format, "value", builder.info.file_format)
    if file_format not in _RANDOM_ACCESS_FORMATS:
      raise ValueError(
          f"dataset={info.name!r}: prepared in {where} as {file_format!r}, which has no "
          f"random access; re-prepare it with `{command}`") from e
    raise


def check_pad_size(info: catalog.DatasetInfo, builder: Any, data_dir: str | None) -> None:
  """coco_voc: one-line ValueError unless `eval_pad_size` holds every image of every split
  after its shorter side is resized to `base_size` (from the sizes the builder recorded),
  so a too small pad fails before anything is compiled, not at the first evaluation."""
  from spg_jax.data import coco_voc  # pylint: disable=g-import-not-at-top
  sizes = dict(builder.info.metadata or {}).get("image_sizes")
  if not sizes:
    raise ValueError(f"dataset={info.name!r}: the prepared data in {_where(data_dir)} has no "
                     f"recorded image sizes; rebuild it with "
                     f"`{prepare_command(info.tfds_name, data_dir)}`")
  options = info.options
  need = coco_voc.needed_pad_size([hw for s in sizes.values() for hw in s],
                                  options["base_size"])
  if need > options["eval_pad_size"]:
    raise ValueError(f"preprocess.eval_pad_size={options['eval_pad_size']}: too small for "
                     f"{info.name!r} in {_where(data_dir)}: its largest image is {need} pixels "
                     f"long after resizing the shorter side to {options['base_size']}; set "
                     f"it to at least {need}")


def make_tfds_parts(name: str, split: str, *, data_dir: str | None = None,
                    validation_fraction: float = 0.1,
                    preprocess_options: dict[str, Any] | None = None) -> sources.Parts:
  """Raw examples of `split` plus the dataset's eval and train transforms (for
  `preprocess_options`, see `catalog.PREPROCESS_OPTIONS`)."""
  info = catalog.dataset_info(name, preprocess_options)
  catalog.check_split(split)
  catalog.check_validation_fraction(validation_fraction)
  eval_fn, train_fn = transforms(info)
  builder = None
  if info.tfds_name in _OWN_BUILDERS:
    builder = _builder(info, data_dir)
    if builder.is_prepared():
      check_pad_size(info, builder, data_dir)
  if split == "test":
    return sources.Parts(_data_source(info, info.tfds_test_split, data_dir, builder),
                         eval_fn, train_fn)
  pool = _data_source(info, "train", data_dir, builder)
  n_val = catalog.num_validation(len(pool), validation_fraction)
  if split == "validation":
    if n_val == 0:
      raise ValueError(f"validation_fraction={validation_fraction!r}: leaves no validation "
                       f"examples out of {len(pool)}")
    raw = sources.RangeView(pool, len(pool) - n_val, len(pool))
  else:
    raw = sources.RangeView(pool, 0, len(pool) - n_val)
  return sources.Parts(raw, eval_fn, train_fn)
