"""COCO 2017 with VOC labels: the label rules, the builder command and the pipeline, on a
tiny COCO-format set written here (JPEGs, polygons, a crowd RLE, overlaps, an image without
annotations, a category outside the VOC list). Nothing is downloaded. TensorFlow is not
needed: it is not installed here, and the tests check that building and reading never
imported it.
"""
import io
import json
import os
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from spg_jax import data
from spg_jax import sharding
from spg_jax.data import coco_voc
from spg_jax.data import preprocess

PERSON, CAR, DOG, TRAFFIC_LIGHT = 1, 3, 18, 10  # COCO ids; VOC labels 15, 7, 12, none
OPTIONS = {"base_size": 32, "crop_size": 24, "eval_pad_size": 64}
# pycocotools 2.0.11's own use of numpy 2 (not ours).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _rect(x0, y0, x1, y1):
  """A polygon whose mask is rows y0..y1-1, columns x0..x1-1 (pycocotools' rasterisation
  of integer corners)."""
  return [x0, y0, x1, y0, x1, y1, x0, y1]


def _ann(ann_id, image_id, cat, segmentation, area, iscrowd=0):
  return {"id": ann_id, "image_id": image_id, "category_id": cat, "iscrowd": iscrowd,
          "segmentation": segmentation, "area": area, "bbox": [0, 0, 1, 1]}


# image id -> (height, width, grey?)
TRAIN_IMAGES = {1: (40, 60, False), 2: (40, 60, False), 3: (48, 32, False),
                4: (40, 60, False), 5: (40, 60, False), 6: (48, 32, False)}
VAL_IMAGES = {11: (40, 60, False), 12: (40, 60, True), 13: (40, 60, False)}
TRAIN_ANNS = [
    # 1: person and car overlapping on x 20..24, y 10..29 -> 255 there; 600 + 600 > 1000.
    _ann(101, 1, PERSON, [_rect(5, 5, 25, 35)], 600),
    _ann(102, 1, CAR, [_rect(20, 10, 50, 30)], 600),
    # 2: a crowd RLE (person, rows 0..19, uncompressed, column-major) and a traffic light
    # (not a VOC category: dropped) over the rest.
    _ann(103, 2, PERSON, {"counts": [0] + [20, 20] * 60, "size": [40, 60]}, 1200, iscrowd=1),
    _ann(104, 2, TRAFFIC_LIGHT, [_rect(0, 20, 60, 40)], 1200),
    # 3: no annotations -> not a training image. 4: only a non-VOC category -> neither.
    _ann(105, 4, TRAFFIC_LIGHT, [_rect(0, 0, 60, 40)], 2400),
    # 5: a dog of area exactly 1000 (the rule needs more) -> not a training image.
    _ann(106, 5, DOG, [_rect(0, 0, 25, 40)], 1000),
    # 6: two dogs overlapping (same category: still 255), portrait image.
    _ann(107, 6, DOG, [_rect(0, 0, 20, 30)], 600),
    _ann(108, 6, DOG, [_rect(10, 20, 30, 48)], 560),
]
VAL_ANNS = [
    # 11: one person of two polygons (united).
    _ann(201, 11, PERSON, [_rect(0, 0, 10, 10), _rect(30, 20, 60, 40)], 700),
    # 12: grey JPEG without annotations (kept: validation images are not filtered).
    # 13: a car under a traffic light: the light is dropped first, so no 255.
    _ann(202, 13, CAR, [_rect(10, 10, 40, 30)], 600),
    _ann(203, 13, TRAFFIC_LIGHT, [_rect(30, 0, 60, 40)], 1200),
]


def expected_labels():
  """Hand-computed label maps (VOC labels: person 15, car 7, dog 12)."""
  out = {}
  m = np.zeros((40, 60), np.uint8)
  m[5:35, 5:25] = 15
  m[10:30, 20:50] = 7
  m[10:30, 20:25] = 255
  out[1] = m
  m = np.zeros((40, 60), np.uint8)
  m[:20] = 15
  out[2] = m
  m = np.zeros((48, 32), np.uint8)
  m[0:30, 0:20] = 12
  m[20:48, 10:30] = 12
  m[20:30, 10:20] = 255
  out[6] = m
  m = np.zeros((40, 60), np.uint8)
  m[0:10, 0:10] = 15
  m[20:40, 30:60] = 15
  out[11] = m
  out[12] = np.zeros((40, 60), np.uint8)
  m = np.zeros((40, 60), np.uint8)
  m[10:30, 10:40] = 7
  out[13] = m
  return out


def _jpeg(image_id, h, w, grey):
  rng = np.random.default_rng(image_id)
  a = rng.integers(0, 256, (h, w) if grey else (h, w, 3), dtype=np.uint8)
  buf = io.BytesIO()
  Image.fromarray(a).save(buf, format="JPEG", quality=90)
  return buf.getvalue()


def write_coco(root):
  """The tiny COCO 2017 folder: annotations/instances_{train,val}2017.json + images."""
  categories = [{"id": c, "name": n} for c, n in
                [(PERSON, "person"), (CAR, "car"), (DOG, "dog"), (TRAFFIC_LIGHT, "light")]]
  os.makedirs(os.path.join(root, "annotations"))
  for folder, images, anns in [("train2017", TRAIN_IMAGES, TRAIN_ANNS),
                               ("val2017", VAL_IMAGES, VAL_ANNS)]:
    os.makedirs(os.path.join(root, folder))
    entries = []
    for image_id, (h, w, grey) in images.items():
      name = f"{image_id:012d}.jpg"
      with open(os.path.join(root, folder, name), "wb") as f:
        f.write(_jpeg(image_id, h, w, grey))
      entries.append({"id": image_id, "file_name": name, "height": h, "width": w})
    with open(os.path.join(root, "annotations", f"instances_{folder}.json"), "w") as f:
      json.dump({"images": entries, "annotations": anns, "categories": categories}, f)
  return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """(coco_dir, data_dir) with the dataset built by the command."""
  coco_dir = write_coco(str(tmp_path_factory.mktemp("coco")))
  data_dir = str(tmp_path_factory.mktemp("tfds") / "data")
  assert "tensorflow" not in sys.modules
  assert coco_voc.main([f"--coco_dir={coco_dir}", f"--data_dir={data_dir}"]) == 0
  assert "tensorflow" not in sys.modules
  return coco_dir, data_dir


@pytest.fixture(scope="module")
def mesh():
  return sharding.make_mesh()


# --- the label rules ----------------------------------------------------------------------

def test_category_list_maps_the_voc_classes():
  assert len(coco_voc.CAT_LIST) == len(coco_voc.VOC_CLASSES) == 21
  voc = dict(zip(coco_voc.VOC_CLASSES, coco_voc.CAT_LIST))
  assert voc["person"] == PERSON and voc["car"] == CAR and voc["dog"] == DOG
  anns = coco_voc.filter_and_remap(TRAIN_ANNS[:4])
  assert [a["category_id"] for a in anns] == [15, 7, 15]  # the traffic light is gone
  assert TRAIN_ANNS[0]["category_id"] == PERSON  # the input is not changed


@pytest.mark.parametrize("image_id", [1, 2, 6, 11, 12, 13])
def test_label_maps_equal_hand_computed_ones(image_id):
  h, w, _ = {**TRAIN_IMAGES, **VAL_IMAGES}[image_id]
  anns = [a for a in TRAIN_ANNS + VAL_ANNS if a["image_id"] == image_id]
  label = coco_voc.label_map(coco_voc.filter_and_remap(anns), h, w)
  assert label.dtype == np.uint8 and label.shape == (h, w)
  np.testing.assert_array_equal(label, expected_labels()[image_id])


def test_training_filter_is_torchvisions_rule():
  instances = coco_voc.Instances({"images": [{"id": i, "file_name": f"{i}.jpg"}
                                             for i in TRAIN_IMAGES],
                                  "annotations": TRAIN_ANNS})
  assert instances.kept_ids("train") == [1, 2, 6]
  assert instances.kept_ids("validation") == [1, 2, 3, 4, 5, 6]
  assert coco_voc.has_valid_annotation([_ann(1, 1, DOG, [], 1000.5)])
  assert not coco_voc.has_valid_annotation([_ann(1, 1, DOG, [], 1000)])


# --- the command --------------------------------------------------------------------------

def test_builder_writes_the_splits_without_tensorflow(prepared, capsys):
  coco_dir, data_dir = prepared
  assert "tensorflow" not in sys.modules
  path = coco_voc.dataset_dir(data_dir)
  assert {"dataset_info.json", "features.json", "metadata.json"} <= set(os.listdir(path))
  with open(os.path.join(path, "metadata.json")) as f:
    sizes = json.load(f)["image_sizes"]
  assert sizes == {"train": [[40, 60], [48, 32]], "validation": [[40, 60]]}
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder_from_directory(path)
  assert builder.info.splits["train"].num_examples == 3
  assert builder.info.splits["validation"].num_examples == 3
  src = builder.as_data_source("validation")
  by_id = {int(src[i]["image_id"]): src[i] for i in range(len(src))}
  labels = expected_labels()
  for image_id, ex in by_id.items():
    np.testing.assert_array_equal(preprocess.decode_label(ex["label"]), labels[image_id])
    with open(os.path.join(coco_dir, "val2017", f"{image_id:012d}.jpg"), "rb") as f:
      assert ex["image"] == f.read()  # the JPEG file as it is
  assert preprocess.decode_image(by_id[12]["image"]).shape == (40, 60, 3)  # grey -> RGB
  # Rerunning is harmless: it says so and writes nothing.
  assert coco_voc.main([f"--coco_dir={coco_dir}", f"--data_dir={data_dir}"]) == 0
  assert "already prepared" in capsys.readouterr().out


def _break(root, what):
  if what == "no_annotations":
    os.remove(os.path.join(root, "annotations", "instances_val2017.json"))
  elif what == "bad_json":
    with open(os.path.join(root, "annotations", "instances_train2017.json"), "w") as f:
      f.write("{not json")
  elif what == "missing_image":
    os.remove(os.path.join(root, "val2017", f"{13:012d}.jpg"))
  elif what == "no_folder":
    os.rename(os.path.join(root, "train2017"), os.path.join(root, "other"))


@pytest.mark.parametrize("what,message", [
    ("no_coco_dir", r"--coco_dir='.*': not a directory"),
    ("no_annotations", r"annotation file .*instances_val2017.json not found"),
    ("bad_json", r"instances_train2017.json is not readable JSON"),
    ("missing_image", r"1 image\(s\) of .*instances_val2017.json missing .*000000000013.jpg"),
    ("no_folder", r"image folder .*train2017 not found"),
    ("data_dir_is_a_file", r"--data_dir=.*: not a writable directory"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, what, message):
  coco_dir = write_coco(str(tmp_path / "coco"))
  data_dir = tmp_path / "out"
  if what == "no_coco_dir":
    coco_dir = str(tmp_path / "nowhere")
  elif what == "data_dir_is_a_file":
    data_dir.write_text("")
  else:
    _break(coco_dir, what)
  before = sorted(os.listdir(tmp_path))
  assert coco_voc.main([f"--coco_dir={coco_dir}", f"--data_dir={data_dir}"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1
  assert __import__("re").search(message, err), err
  assert sorted(os.listdir(tmp_path)) == before  # nothing written, data_dir not created


# --- reading: catalog, sources, pipeline ---------------------------------------------------

def test_catalog_entry():
  info = data.dataset_info("coco_voc")
  assert "coco_voc" in data.names()
  assert (info.num_classes, info.task, info.ignore_label, info.kind) == (21, "segmentation",
                                                                          255, "tfds")
  assert info.input_shape == (1040, 1040, 3) and info.label_shape == (1040, 1040)
  assert info.train_features["input"].shape == (480, 480, 3)
  assert info.options == {"base_size": 520, "crop_size": 480, "eval_pad_size": 1040}
  small = data.dataset_info("coco_voc", OPTIONS)
  assert small.input_shape == (64, 64, 3) and small.train_features["label"].shape == (24, 24)


def test_unprepared_says_how_to_prepare(tmp_path):
  with pytest.raises(ValueError) as e:
    data.make_source("coco_voc", "test", data_dir=str(tmp_path))
  msg = str(e.value)
  assert "\n" not in msg and "not prepared" in msg
  assert f"python -m spg_jax.data.coco_voc --coco_dir=COCO_2017_DIR --data_dir={tmp_path}" in msg
  assert not os.listdir(tmp_path)


def test_sources_and_eval_examples(prepared):
  _, data_dir = prepared
  kw = dict(data_dir=data_dir, validation_fraction=1 / 3, preprocess=OPTIONS)
  sizes = {s: len(data.make_source("coco_voc", s, **kw)) for s in data.SPLITS}
  assert sizes == {"train": 2, "validation": 1, "test": 3}
  src = data.make_source("coco_voc", "test", **kw)
  labels = expected_labels()
  seen = set()
  for i in range(len(src)):
    ex = src[i]
    assert ex["input"].shape == (64, 64, 3) and ex["input"].dtype == np.float32
    assert ex["label"].shape == (64, 64) and ex["label"].dtype == np.int32
    # 40x60 -> 32x48 (shorter side 32, nearest for the labels), padded with 255 / 0.
    assert (ex["label"][32:] == 255).all() and (ex["label"][:, 48:] == 255).all()
    assert (ex["input"][32:] == 0).all() and (ex["input"][:, 48:] == 0).all()
    matches = [k for k in (11, 12, 13) if np.array_equal(
        ex["label"][:32, :48], preprocess.resize_shorter(labels[k], 32, "nearest"))]
    assert len(matches) == 1
    seen.add(matches[0])
  assert seen == {11, 12, 13}


def test_pad_size_too_small_fails_before_reading(prepared):
  _, data_dir = prepared
  with pytest.raises(ValueError, match=r"preprocess.eval_pad_size=40: too small.*at least 48"):
    data.make_source("coco_voc", "train", data_dir=data_dir,
                     preprocess={**OPTIONS, "eval_pad_size": 40})


def test_pipeline_batches_have_the_documented_shapes(prepared, mesh):
  _, data_dir = prepared
  kw = dict(data_dir=data_dir, validation_fraction=1 / 3, preprocess=OPTIONS, mesh=mesh)
  train = data.make_iterator("coco_voc", "train", global_batch_size=8, seed=0, **kw)
  batch = jax.tree.map(np.asarray, next(train))
  assert batch["input"].shape == (8, 24, 24, 3) and batch["input"].dtype == np.float32
  assert batch["label"].shape == (8, 24, 24) and batch["label"].dtype == np.int32
  assert set(np.unique(batch["label"])) <= {0, 7, 12, 15, 255}
  assert train.get_state()["config"]["preprocess"] == OPTIONS
  test = data.make_iterator("coco_voc", "test", global_batch_size=8, seed=0, shuffle=False,
                            num_epochs=1, drop_remainder=False, **kw)
  batches = [jax.tree.map(np.asarray, b) for b in test]
  assert "tensorflow" not in sys.modules
  assert len(batches) == 1
  b = batches[0]
  assert b["input"].shape == (8, 64, 64, 3) and b["label"].shape == (8, 64, 64)
  assert b["mask"].tolist() == [True] * 3 + [False] * 5
  train.close()
