"""COCO 2017 with VOC labels (torchvision's `COCO_WITH_VOC_LABELS_V1` data), prepared once.

What torchvision's segmentation reference (`references/segmentation/coco_utils.py::
get_coco`) builds on the fly from COCO instance annotations, written once as TFDS
array_record (read afterwards with `tfds.data_source`, no TensorFlow at any point):

  * categories: the 20 COCO categories of the Pascal VOC classes, `CAT_LIST[k]` -> label
    k (`CAT_LIST[0] = 0` is no COCO category: label 0 is the background); annotations of
    the other 60 categories are dropped (`FilterAndRemapCocoCategories`);
  * masks (`ConvertCocoPolysToMask`): every annotation's polygons (or, for crowd
    annotations, its RLE) -> a binary mask with pycocotools (`frPyObjects`, `decode`, any
    over its parts); label = the largest category over the masks covering a pixel, 255
    (ignored) where two or more annotations overlap, whatever their categories, 0 where
    none does; crowd annotations count like the others;
  * training images: only those whose VOC-category annotations exist and cover more than
    1000 pixels of annotated `area` in all (`_coco_remove_images_without_annotations`);
    validation images: all of val2017.

Splits written: TFDS "train" (the kept train2017 images) and "validation" (all val2017
images). `spg_jax.data` serves them as "train" / "validation" (the last
`validation_fraction` of TFDS "train") / "test" (= val2017, what torchvision reports).
An example is `{"image": the JPEG file's bytes, "label": PNG bytes of the uint8 label map,
"image_id", "height", "width"}`; the builder's metadata records every split's distinct
image sizes, so readers can check an evaluation pad size before any computation.

Command (run once; writes nothing on bad input, one-line `error: ...` and exit 2):

  python -m spg_jax.data.coco_voc --coco_dir=DIR --data_dir=DIR

`--coco_dir` holds `annotations/instances_{train,val}2017.json` and the image folders
`train2017/`, `val2017/`; `--data_dir` is the TFDS data directory the runs read
(`config.dataset.data_dir`).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from spg_jax import validation

NAME = "coco_voc"
VERSION = "1.0.0"
# references/segmentation/coco_utils.py: COCO category id of VOC label k.
CAT_LIST = (0, 5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72)
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")
IGNORE_LABEL = 255
MIN_TRAIN_AREA = 1000  # _has_valid_annotation: sum of annotated areas must exceed this
# Our split name -> (COCO image folder, annotation file) inside --coco_dir.
SPLITS = {
    "train": ("train2017", os.path.join("annotations", "instances_train2017.json")),
    "validation": ("val2017", os.path.join("annotations", "instances_val2017.json")),
}


# ------------------------------------------------------------------ the labels (pure)
def filter_and_remap(annotations: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """FilterAndRemapCocoCategories: the annotations of `CAT_LIST` categories, in order,
  with `category_id` replaced by its VOC label (copies; the input is not changed)."""
  return [{**a, "category_id": CAT_LIST.index(a["category_id"])}
          for a in annotations if a["category_id"] in CAT_LIST]


def instance_masks(annotations: Sequence[Mapping[str, Any]], height: int, width: int
                   ) -> np.ndarray:
  """uint8 `[N, height, width]`: each annotation's `segmentation` (polygons or RLE) as a
  0/1 mask, its parts united (`convert_coco_poly_to_mask`)."""
  coco_mask = validation.require_extra("pycocotools.mask", "coco")
  masks = []
  for a in annotations:
    decoded = coco_mask.decode(coco_mask.frPyObjects(a["segmentation"], height, width))
    if decoded.ndim < 3:
      decoded = decoded[..., None]
    masks.append(decoded.any(axis=2).astype(np.uint8))
  if not masks:
    return np.zeros((0, height, width), np.uint8)
  return np.stack(masks)


def label_map(annotations: Sequence[Mapping[str, Any]], height: int, width: int
              ) -> np.ndarray:
  """ConvertCocoPolysToMask on remapped annotations -> uint8 `[height, width]`: the largest
  label over the masks at a pixel, 255 where more than one mask covers it, 0 elsewhere."""
  if not annotations:
    return np.zeros((height, width), np.uint8)
  masks = instance_masks(annotations, height, width)
  cats = np.asarray([a["category_id"] for a in annotations], np.uint8)
  target = (masks * cats[:, None, None]).max(axis=0)
  target[masks.sum(axis=0, dtype=np.int64) > 1] = IGNORE_LABEL
  return target.astype(np.uint8)


def has_valid_annotation(annotations: Sequence[Mapping[str, Any]]) -> bool:
  """`_coco_remove_images_without_annotations`' rule on an image's COCO annotations (crowd
  ones included): some in `CAT_LIST` categories, with annotated `area` summing to > 1000."""
  kept = [a for a in annotations if a["category_id"] in CAT_LIST]
  return bool(kept) and sum(a["area"] for a in kept) > MIN_TRAIN_AREA


def encode_png(label: np.ndarray) -> bytes:
  """uint8 `[H, W]` -> PNG bytes (mode "L", lossless)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  Image.fromarray(np.asarray(label, np.uint8), mode="L").save(buf, format="PNG")
  return buf.getvalue()


def image_size(data: bytes) -> tuple[int, int]:
  """`(height, width)` of JPEG/PNG bytes (reads the header only)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(io.BytesIO(data)) as im:
    return im.height, im.width


# ------------------------------------------------------------------ the inputs
class Instances:
  """One split's `instances_*.json`: images by id and their annotations in file order.

  Attributes:
    image_ids: sorted image ids (torchvision's `CocoDetection.ids`).
    files: image id -> file name; annotations: image id -> list of annotation dicts.
  """

  def __init__(self, coco: Mapping[str, Any]):
    self.files = {int(im["id"]): im["file_name"] for im in coco["images"]}
    self.annotations: dict[int, list[dict[str, Any]]] = {i: [] for i in self.files}
    for a in coco["annotations"]:
      self.annotations.setdefault(int(a["image_id"]), []).append(a)
    self.image_ids = sorted(self.files)

  def kept_ids(self, split: str) -> list[int]:
    """The image ids written for `split`: training images filtered by
    `has_valid_annotation`, every validation image."""
    if split != "train":
      return list(self.image_ids)
    return [i for i in self.image_ids if has_valid_annotation(self.annotations[i])]


def _load_json(path: str, what: str) -> Any:
  if not os.path.isfile(path):
    raise ValueError(f"--coco_dir: {what} {path} not found (expected COCO 2017's "
                     f"annotations/instances_{{train,val}}2017.json)")
  try:
    with open(path, encoding="utf-8") as f:
      coco = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"--coco_dir: {path} is not readable JSON ({type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''})") from None
  if not isinstance(coco, dict) or not {"images", "annotations"} <= set(coco):
    raise ValueError(f"--coco_dir: {path} is not a COCO instances file (needs 'images' and "
                     f"'annotations')")
  return coco


def _check_data_dir(data_dir: str) -> None:
  """The data directory exists and is writable, or can be created (its nearest existing
  parent is a writable directory); nothing is created here."""
  path = os.path.abspath(data_dir)
  if os.path.exists(path):
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
      raise ValueError(f"--data_dir={data_dir}: not a writable directory")
    return
  parent = os.path.dirname(path)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
    raise ValueError(f"--data_dir={data_dir}: cannot be created ({parent} is not a writable "
                     f"directory)")


def dataset_dir(data_dir: str) -> str:
  """Where the prepared dataset lives: `<data_dir>/coco_voc/<VERSION>`."""
  return os.path.join(data_dir, NAME, VERSION)


def read_instances(coco_dir: str) -> dict[str, Instances]:
  """Reads and checks `coco_dir`: split -> its `Instances`.

  Raises:
    ValueError: one line naming the first problem (a missing folder, annotation file or
      image file, a file that is not COCO JSON).
  """
  if not coco_dir or not os.path.isdir(coco_dir):
    raise ValueError(f"--coco_dir={coco_dir!r}: not a directory (expected COCO 2017 with "
                     f"annotations/, train2017/ and val2017/)")
  splits = {}
  for split, (folder, ann_file) in SPLITS.items():
    image_dir = os.path.join(coco_dir, folder)
    if not os.path.isdir(image_dir):
      raise ValueError(f"--coco_dir: image folder {image_dir} not found")
    instances = Instances(_load_json(os.path.join(coco_dir, ann_file), "annotation file"))
    missing = [instances.files[i] for i in instances.image_ids
               if not os.path.isfile(os.path.join(image_dir, instances.files[i]))]
    if missing:
      raise ValueError(f"--coco_dir: {len(missing)} image(s) of {ann_file} missing from "
                       f"{image_dir}, e.g. {missing[0]}")
    splits[split] = instances
  return splits


def check_inputs(coco_dir: str, data_dir: str) -> dict[str, Instances]:
  """Everything the build needs, checked before anything is written: `read_instances(
  coco_dir)` and a data directory that exists writable or can be created."""
  if not data_dir:
    raise ValueError("--data_dir='': must name the TFDS data directory to write")
  splits = read_instances(coco_dir)
  _check_data_dir(data_dir)
  return splits


# ------------------------------------------------------------------ the examples
def examples(instances: Instances, image_dir: str, split: str
             ) -> Iterable[tuple[int, dict[str, Any]]]:
  """`(key, example)` of every kept image of `split`, in image id order: the JPEG bytes as
  they are, the label map (computed at the file's own size, as torchvision does) as PNG."""
  for image_id in instances.kept_ids(split):
    with open(os.path.join(image_dir, instances.files[image_id]), "rb") as f:
      data = f.read()
    height, width = image_size(data)
    label = label_map(filter_and_remap(instances.annotations[image_id]), height, width)
    yield image_id, {"image": data, "label": encode_png(label), "image_id": image_id,
                     "height": height, "width": width}


def needed_pad_size(image_sizes: Iterable[Sequence[int]], base_size: int) -> int:
  """The longest side of any of `image_sizes` (`(height, width)`) after resizing its
  shorter side to `base_size`: the smallest evaluation pad size that holds them all."""
  from spg_jax.data import preprocess  # pylint: disable=g-import-not-at-top
  return max((max(preprocess.shorter_side_size(int(h), int(w), base_size))
              for h, w in image_sizes), default=base_size)


def build(coco_dir: str, data_dir: str, splits: Mapping[str, Instances] | None = None) -> str:
  """Writes the dataset (TFDS array_record) into `data_dir`; returns its directory.

  Args:
    coco_dir: COCO 2017 (annotations/instances_{train,val}2017.json, train2017/, val2017/).
    data_dir: the TFDS data directory.
    splits: `check_inputs`' result, if already computed (it is, otherwise).
  """
  if splits is None:
    splits = check_inputs(coco_dir, data_dir)
  tfds = validation.require_extra("tensorflow_datasets", "coco")
  from spg_jax.data import coco_voc_builder  # pylint: disable=g-import-not-at-top
  builder = coco_voc_builder.CocoVoc(data_dir=data_dir, instances=splits)
  builder.download_and_prepare(
      file_format="array_record",
      download_config=tfds.download.DownloadConfig(manual_dir=coco_dir))
  return dataset_dir(data_dir)


def main(argv: Sequence[str] | None = None) -> int:
  """The command: check, build, report. Exit status 0 done, 2 bad input."""
  parser = argparse.ArgumentParser(
      prog="python -m spg_jax.data.coco_voc",
      description="Prepare COCO 2017 with VOC labels (torchvision's COCO_WITH_VOC_LABELS_V1 "
                  "data) as TFDS array_record.")
  parser.add_argument("--coco_dir", required=True,
                      help="COCO 2017: annotations/instances_{train,val}2017.json, "
                           "train2017/, val2017/")
  parser.add_argument("--data_dir", required=True, help="the TFDS data directory to write")
  args = parser.parse_args(argv)
  try:
    target = dataset_dir(args.data_dir)
    if os.path.isfile(os.path.join(target, "dataset_info.json")):
      print(f"{NAME} is already prepared in {target}; remove that directory to rebuild it")
      return 0
    splits = check_inputs(args.coco_dir, args.data_dir)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  target = build(args.coco_dir, args.data_dir, splits)
  with open(os.path.join(target, "metadata.json"), encoding="utf-8") as f:
    sizes = json.load(f)["image_sizes"]
  counts = {s: len(splits[s].kept_ids(s)) for s in SPLITS}
  need = needed_pad_size([hw for s in sizes.values() for hw in s], 520)
  print(f"wrote {NAME} to {target}: {counts['train']} training images (of "
        f"{len(splits['train'].image_ids)}), {counts['validation']} validation images; "
        f"evaluation at base_size 520 needs preprocess.eval_pad_size >= {need}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
