"""The TFDS builder of "coco_voc" (see `spg_jax.data.coco_voc`, which imports this module
only when it builds: defining the class imports TFDS and registers the name with it).

Features are TFDS `Tensor`s only (bytes as `np.object_` scalars, ints), which TFDS writes
and reads without TensorFlow; images and label maps are decoded with Pillow in the input
pipeline. Reading needs no builder code: `tfds.builder("coco_voc", data_dir=DIR)` finds the
prepared files.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import tensorflow_datasets as tfds

from spg_jax.data import coco_voc


class CocoVoc(tfds.core.GeneratorBasedBuilder):
  """COCO 2017 instances as 21-class VOC semantic segmentation (torchvision's
  COCO_WITH_VOC_LABELS_V1 data)."""

  VERSION = tfds.core.Version(coco_voc.VERSION)
  RELEASE_NOTES = {coco_voc.VERSION: "torchvision references/segmentation get_coco rules."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download COCO 2017 (train2017/, val2017/ and annotations/instances_{train,val}2017"
      ".json) yourself and pass its folder as --coco_dir to python -m spg_jax.data.coco_voc.")
  # TFDS looks for a checksums file next to a builder's code; this one downloads nothing.
  # (Its lookup also needs the `importlib_resources` backport for builders inside a
  # package, which TFDS does not install on Python >= 3.9.)
  code_path = None

  def __init__(self, *, instances: Mapping[str, coco_voc.Instances] | None = None,
               **kwargs: Any):
    # The parsed annotation files (the command has read them to check its inputs); read
    # from the manual directory when not given.
    self._instances = instances
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    # tfds.core.DatasetInfo directly: `dataset_info_from_configs` would look for metadata
    # files (checksums, citations) next to this module.
    return tfds.core.DatasetInfo(
        builder=self,
        description=("COCO 2017 with the 20 Pascal VOC categories as labels 1-20 (0 = "
                     "background, 255 = overlapping instances), as torchvision's "
                     "references/segmentation builds it."),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(), dtype=np.object_),   # JPEG bytes
            "label": tfds.features.Tensor(shape=(), dtype=np.object_),   # PNG bytes, "L"
            "image_id": tfds.features.Tensor(shape=(), dtype=np.int64),
            "height": tfds.features.Tensor(shape=(), dtype=np.int32),
            "width": tfds.features.Tensor(shape=(), dtype=np.int32),
        }),
        homepage="https://cocodataset.org",
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
    coco_dir = os.fspath(dl_manager.manual_dir)
    instances = self._instances or coco_voc.read_instances(coco_dir)
    self.info.metadata["image_sizes"] = {}
    return {split: self._generate_examples(instances[split],
                                           os.path.join(coco_dir, coco_voc.SPLITS[split][0]),
                                           split)
            for split in coco_voc.SPLITS}

  def _generate_examples(self, instances: coco_voc.Instances, image_dir: str, split: str):
    sizes = set()
    for key, example in coco_voc.examples(instances, image_dir, split):
      sizes.add((example["height"], example["width"]))
      yield key, example
    # Recorded for readers: the evaluation pad size must hold the largest resized image.
    self.info.metadata["image_sizes"][split] = sorted([h, w] for h, w in sizes)
