"""TFDS datasets read with `tfds.data_source` (array_record, random access, no TensorFlow).

The data must be prepared beforehand, e.g.
`tfds build cifar10 --file_format=array_record --data_dir=DIR`; nothing here downloads
(`download=False` everywhere). Our splits: "train" = the first `1 - validation_fraction`
of TFDS "train", "validation" = its last `validation_fraction` (TFDS shuffles examples when
it prepares a dataset, so the tail is a random sample), "test" = TFDS "test" ("validation"
for imagenet2012, whose test labels are not public).
"""
from __future__ import annotations

from typing import Any

from spg_jax.data import catalog
from spg_jax.data import preprocess
from spg_jax.data import sources

# Per dataset: (eval transform, train transform) on raw `{"image", "label"}` examples.
_TRANSFORMS = {
    "mnist": (preprocess.unit_image_eval, None),
    "cifar10": (preprocess.unit_image_eval, preprocess.cifar_train),
    "cifar100": (preprocess.unit_image_eval, preprocess.cifar_train),
    "imagenet2012": (preprocess.imagenet_eval, preprocess.imagenet_train),
}
# Formats `tfds.data_source` can read with random access.
_RANDOM_ACCESS_FORMATS = ("array_record", "parquet")


def prepare_command(tfds_name: str, data_dir: str | None) -> str:
  return (f"tfds build {tfds_name} --file_format=array_record "
          f"--data_dir={data_dir or 'DIR'}")


def _data_source(info: catalog.DatasetInfo, tfds_split: str, data_dir: str | None) -> Any:
  """`builder.as_data_source(tfds_split)`; a one-line ValueError saying how to prepare the
  data when it is missing or not in a random-access format. Never downloads."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (heavy)
  builder = tfds.builder(info.tfds_name, data_dir=data_dir)
  try:
    return builder.as_data_source(split=tfds_split)
  except Exception as e:  # pylint: disable=broad-except  (tfds raises several types here)
    # Diagnose after the fact: `tfds.testing.mock_data` serves data sources for builders
    # that report themselves unprepared, so the check cannot come first.
    where = data_dir or "the default data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
    command = prepare_command(info.tfds_name, data_dir)
    if not builder.is_prepared():
      extra = (" (imagenet2012 also needs the ImageNet tar files in --manual_dir)"
               if info.name == "imagenet2012" else "")
      raise ValueError(
          f"dataset={info.name!r}: not prepared in {where}; prepare it once with "
          f"`{command}`{extra} (preparing may need TensorFlow installed; reading it "
          f"afterwards does not)") from e
    file_format = getattr(builder.info.file_format, "value", builder.info.file_format)
    if file_format not in _RANDOM_ACCESS_FORMATS:
      raise ValueError(
          f"dataset={info.name!r}: prepared in {where} as {file_format!r}, which has no "
          f"random access; re-prepare it with `{command}`") from e
    raise


def make_tfds_parts(name: str, split: str, *, data_dir: str | None = None,
                    validation_fraction: float = 0.1) -> sources.Parts:
  """Raw examples of `split` plus the dataset's eval and train transforms."""
  info = catalog.dataset_info(name)
  catalog.check_split(split)
  catalog.check_validation_fraction(validation_fraction)
  eval_fn, train_fn = _TRANSFORMS[name]
  if split == "test":
    return sources.Parts(_data_source(info, info.tfds_test_split, data_dir), eval_fn, train_fn)
  pool = _data_source(info, "train", data_dir)
  n_val = catalog.num_validation(len(pool), validation_fraction)
  if split == "validation":
    if n_val == 0:
      raise ValueError(f"validation_fraction={validation_fraction!r}: leaves no validation "
                       f"examples out of {len(pool)}")
    raw = sources.RangeView(pool, len(pool) - n_val, len(pool))
  else:
    raw = sources.RangeView(pool, 0, len(pool) - n_val)
  return sources.Parts(raw, eval_fn, train_fn)
