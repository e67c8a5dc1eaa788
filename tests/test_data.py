"""Input pipelines: embedded and (mocked) TFDS sources, determinism, resume, sharding.

No test touches the network: the embedded datasets ship with their packages and every TFDS
dataset is served by `tfds.testing.mock_data`.
"""
import json
import os
import random

import grain
import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from jax.sharding import NamedSharding, PartitionSpec as P

from spg_jax import data
from spg_jax import sharding
from spg_jax.data import embedded
from spg_jax.data import preprocess

TFDS_NAMES = ("mnist", "cifar10", "cifar100", "imagenet2012")
MOCK_EXAMPLES = 20  # per split under mock_data; train = 18, validation = 2


@pytest.fixture(scope="module")
def mesh():
  assert jax.device_count() == 8  # conftest forces 8 CPU devices
  return sharding.make_mesh()


@pytest.fixture
def mock_tfds():
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
    yield


# Small read-ahead: iterators abandoned by a test would otherwise keep preprocessing up to
# grain's default 500 examples in background threads, slowing the tests that follow.
_READ = grain.ReadOptions(num_threads=2, prefetch_buffer_size=8)


def _iterator(name, split, mesh, **kwargs):
  kwargs.setdefault("global_batch_size", 8)
  kwargs.setdefault("seed", 0)
  return data.make_iterator(name, split, mesh=mesh, read_options=_READ, **kwargs)


def _take(it, k):
  return [jax.tree.map(np.asarray, next(it)) for _ in range(k)]


def _assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["input"], y["input"])
    np.testing.assert_array_equal(x["label"], y["label"])


# --- catalog and errors -------------------------------------------------------------------

def test_names_and_info():
  # The image and signal datasets (text ones: tests/test_data_text.py).
  names = [n for n in data.names() if data.dataset_info(n).kind != "text"]
  assert names[:8] == ["digits", "mnist1d", "shapes", "mnist", "cifar10", "cifar100",
                       "imagenet2012", "coco_voc"]
  names = names[:8]
  shapes = {n: data.dataset_info(n).input_shape for n in names}
  assert shapes == {"digits": (8, 8, 1), "mnist1d": (40, 1), "shapes": (64, 64, 3),
                    "mnist": (28, 28, 1), "cifar10": (32, 32, 3), "cifar100": (32, 32, 3),
                    "imagenet2012": (224, 224, 3), "coco_voc": (1040, 1040, 3)}
  assert [data.dataset_info(n).num_classes for n in names] == [10, 10, 6, 10, 10, 100,
                                                                       1000, 21]


def test_unknown_name_lists_known_ones(mesh):
  with pytest.raises(ValueError, match=r"dataset='svhn'.*imagenet2012") as e:
    data.make_iterator("svhn", "train", global_batch_size=8, mesh=mesh, seed=0)
  assert "\n" not in str(e.value)


def test_bad_split_and_arguments(mesh):
  with pytest.raises(ValueError, match=r"split='dev'.*validation"):
    data.make_source("digits", "dev")
  with pytest.raises(ValueError, match="validation_fraction=1.5"):
    data.make_source("digits", "train", validation_fraction=1.5)
  with pytest.raises(ValueError, match="validation_fraction=0.0.*empty"):
    data.make_source("digits", "validation", validation_fraction=0.0)
  with pytest.raises(ValueError, match="num_epochs=0"):
    data.make_iterator("digits", "train", global_batch_size=8, mesh=mesh, seed=0, num_epochs=0)
  with pytest.raises(ValueError, match="batch_size=160: more than the 144 examples"):
    data.make_iterator("digits", "validation", global_batch_size=160, mesh=mesh, seed=0,
                       num_epochs=1)
  with pytest.raises(ValueError, match="seed=-1"):
    data.make_iterator("digits", "train", global_batch_size=8, mesh=mesh, seed=-1)


def test_worker_count_without_parsed_absl_flags_fails_early(mesh, monkeypatch):
  from absl import flags  # pylint: disable=g-import-not-at-top
  # Another test in the session may have parsed absl flags: pretend they are not.
  monkeypatch.setattr(type(flags.FLAGS), "is_parsed", lambda self: False)
  with pytest.raises(ValueError, match="worker_count=2.*absl"):
    data.make_iterator("digits", "train", global_batch_size=8, mesh=mesh, seed=0,
                       worker_count=2)


def test_batch_not_divisible_is_checked_before_touching_data(mesh, tmp_path):
  # The data_dir is empty: reading anything would raise "not prepared" instead.
  with pytest.raises(ValueError, match=r"batch_size=12: .*\(8\)") as e:
    data.make_iterator("cifar10", "train", global_batch_size=12, mesh=mesh, seed=0,
                       data_dir=str(tmp_path))
  assert "\n" not in str(e.value)
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize("name", TFDS_NAMES)
def test_unprepared_tfds_dataset_says_how_to_prepare(name, tmp_path):
  with pytest.raises(ValueError) as e:
    data.make_source(name, "train", data_dir=str(tmp_path))
  msg = str(e.value)
  assert "\n" not in msg
  assert f"tfds build {name} --file_format=array_record --data_dir={tmp_path}" in msg
  assert "TensorFlow" in msg and "not prepared" in msg


# --- embedded sources ---------------------------------------------------------------------

def test_mnist1d_generation_writes_nothing_and_keeps_global_rng(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  embedded.mnist1d_arrays.cache_clear()
  random.seed(7)
  np.random.seed(7)
  py_state, np_state = random.getstate(), np.random.get_state()
  d = embedded.mnist1d_arrays()
  assert random.getstate() == py_state
  np.testing.assert_array_equal(np.random.get_state()[1], np_state[1])
  assert not os.listdir(tmp_path)
  assert d["x"].shape == (4000, 40, 1) and d["x_test"].shape == (1000, 40, 1)
  assert d["x"].dtype == np.float32 and d["y"].dtype == np.int32
  # make_dataset standardises the whole set; we keep its values as they are.
  all_x = np.concatenate([d["x"], d["x_test"]])
  assert abs(all_x.mean()) < 1e-3 and abs(all_x.std() - 1) < 1e-3


@pytest.mark.parametrize("name,sizes,shape", [
    ("digits", {"train": 1294, "validation": 144, "test": 359}, (8, 8, 1)),
    ("mnist1d", {"train": 3600, "validation": 400, "test": 1000}, (40, 1)),
])
def test_embedded_sources(name, sizes, shape):
  srcs = {s: data.make_source(name, s) for s in data.SPLITS}
  assert {s: len(src) for s, src in srcs.items()} == sizes
  for src in srcs.values():
    ex = src[0]
    assert ex["input"].shape == shape and ex["input"].dtype == np.float32
    assert ex["label"].shape == () and ex["label"].dtype == np.int32
    counts = np.bincount(src.labels, minlength=10)
    assert len(counts) == 10 and counts.min() > 0  # every class in every split
    assert np.isfinite(src.inputs).all()
  if name == "digits":
    assert min(s.inputs.min() for s in srcs.values()) == 0.0
    assert max(s.inputs.max() for s in srcs.values()) == 1.0


@pytest.mark.parametrize("name,pool", [("digits", 1797), ("mnist1d", 4000)])
def test_embedded_splits_are_disjoint_and_fixed(name, pool):
  idx = {s: embedded.split_indices(name, s) for s in data.SPLITS}
  if name == "digits":  # one pool: all three splits partition it
    assert np.array_equal(np.sort(np.concatenate(list(idx.values()))), np.arange(pool))
  else:  # mnist1d's test set is separate; train and validation partition its train set
    assert np.array_equal(np.sort(np.concatenate([idx["train"], idx["validation"]])),
                          np.arange(pool))
  again = embedded.split_indices(name, "validation")
  other = embedded.split_indices(name, "validation", split_seed=1)
  assert np.array_equal(again, idx["validation"]) and not np.array_equal(other, again)


# --- TFDS sources under mock data ---------------------------------------------------------

@pytest.mark.parametrize("name", TFDS_NAMES)
def test_tfds_sources(name, mock_tfds):
  info = data.dataset_info(name)
  lens = {s: len(data.make_source(name, s)) for s in data.SPLITS}
  assert lens == {"train": 18, "validation": 2, "test": MOCK_EXAMPLES}
  ex = data.make_source(name, "validation")[1]
  assert ex["input"].shape == info.input_shape and ex["input"].dtype == np.float32
  assert ex["label"].dtype == np.int32 and 0 <= ex["label"] < info.num_classes
  if name == "imagenet2012":  # normalised [0, 1] pixels
    lo = (0 - np.array(preprocess.IMAGENET_MEAN)) / np.array(preprocess.IMAGENET_STD)
    hi = (1 - np.array(preprocess.IMAGENET_MEAN)) / np.array(preprocess.IMAGENET_STD)
    assert (ex["input"] >= lo - 1e-5).all() and (ex["input"] <= hi + 1e-5).all()
  else:
    assert ex["input"].min() >= 0 and ex["input"].max() <= 1


@pytest.mark.parametrize("name", TFDS_NAMES)
def test_tfds_iterator_shape_and_sharding(name, mesh, mock_tfds):
  batch = next(_iterator(name, "train", mesh))
  assert set(batch) == {"input", "label"}
  assert batch["input"].shape == (8, *data.dataset_info(name).input_shape)
  assert batch["input"].dtype == np.float32 and batch["label"].dtype == np.int32
  for a in batch.values():
    assert a.sharding == NamedSharding(mesh, P("data"))


# --- determinism, resume, sharding --------------------------------------------------------

@pytest.mark.parametrize("name", ["digits", "cifar10"])
def test_same_seed_same_batches_other_seed_other_order(name, mesh, mock_tfds):
  make = lambda seed: _iterator(name, "train", mesh, seed=seed)
  a, b, c = _take(make(0), 4), _take(make(0), 4), _take(make(1), 4)
  _assert_same_batches(a, b)
  assert any(not np.array_equal(x["input"], z["input"]) for x, z in zip(a, c))


@pytest.mark.parametrize("name", ["digits", "mnist1d", "cifar100", "imagenet2012"])
def test_resume_yields_the_uninterrupted_batches(name, mesh, mock_tfds):
  # 8-example batches over 18 mock train examples also cross epoch boundaries.
  make = lambda: _iterator(name, "train", mesh, seed=3)
  uninterrupted = _take(make(), 10)
  first = make()
  _take(first, 5)
  state = json.loads(json.dumps(first.get_state()))  # survives a JSON round trip
  resumed = make()
  resumed.set_state(state)
  _assert_same_batches(_take(resumed, 5), uninterrupted[5:])


def test_restoring_a_state_from_another_stream_fails(mesh):
  it = _iterator("digits", "train", mesh)
  other = _iterator("digits", "train", mesh, global_batch_size=16)
  with pytest.raises(ValueError, match="global_batch_size"):
    other.set_state(it.get_state())


def test_global_batch_on_a_smaller_mesh():
  mesh4 = sharding.make_mesh(4)
  batch = next(_iterator("mnist1d", "test", mesh4, global_batch_size=12))
  assert batch["input"].shape == (12, 40, 1)
  assert batch["input"].sharding == NamedSharding(mesh4, P("data"))
  assert len(batch["input"].addressable_shards) == 4


def test_process_slices_assemble_the_single_process_batch(mock_tfds):
  # Each process reads its own rows; with augmentation, too, the global batch is the same
  # for any number of processes.
  parts = data.make_parts("cifar10", "train")
  build = lambda index, count: data.build_dataset(
      parts.raw, parts.eval_fn, parts.train_fn, input_shape=(32, 32, 3),
      global_batch_size=8, seed=5, augment=True, process_index=index, process_count=count,
      read_options=_READ)
  one = iter(build(0, 1))
  halves = [iter(build(i, 2)) for i in range(2)]
  for _ in range(3):
    glob = next(one)
    local = [next(h) for h in halves]
    assert local[0]["label"].shape == (4,)
    np.testing.assert_array_equal(np.concatenate([l["input"] for l in local]), glob["input"])


def test_one_epoch_with_padding_covers_every_example_once(mesh):
  src = data.make_source("digits", "test")  # 359 examples: 23 batches of 16, last padded
  it = _iterator("digits", "test", mesh, global_batch_size=16, num_epochs=1,
                 drop_remainder=False)
  batches = list(it)
  assert len(batches) == 23
  mask = np.concatenate([np.asarray(b["mask"]) for b in batches])
  assert mask.sum() == len(src) and not mask[len(src):].any()
  labels = np.concatenate([np.asarray(b["label"]) for b in batches])[mask]
  np.testing.assert_array_equal(np.bincount(labels), np.bincount(src.labels))


def test_epochs_are_reshuffled(mesh):
  n = len(data.make_source("digits", "validation"))  # 144 = 9 batches of 16
  it = _iterator("digits", "validation", mesh, global_batch_size=16, num_epochs=2)
  batches = list(it)
  assert len(batches) == 2 * n // 16
  x = np.concatenate([np.asarray(b["input"]) for b in batches])
  e0, e1 = x[:n], x[n:]
  assert not np.array_equal(e0, e1)
  np.testing.assert_array_equal(np.sort(e0.reshape(n, -1), axis=0),
                                np.sort(e1.reshape(n, -1), axis=0))


# --- augmentation -------------------------------------------------------------------------

def test_augment_defaults_to_train_only(mesh, mock_tfds):
  for split, augmented in [("train", True), ("validation", False)]:
    it = _iterator("cifar10", split, mesh, shuffle=False)
    x = np.asarray(next(it)["input"])
    srcx = np.stack([data.make_source("cifar10", split)[i]["input"] for i in range(2)])
    assert np.array_equal(x[:2], srcx) != augmented


def test_random_resized_crop_box_matches_torchvision_constraints():
  rng = np.random.default_rng(0)
  for h, w in [(300, 500), (17, 47), (1000, 100)]:
    for _ in range(50):
      top, left, ch, cw = preprocess.random_resized_crop_box(h, w, rng)
      assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w and ch > 0 and cw > 0


def test_imagenet_eval_geometry_and_normalisation():
  image = np.full((300, 400, 3), 255, np.uint8)
  resized = preprocess.resize_shorter(image, 256)
  assert resized.shape == (256, 341, 3)
  out = preprocess.imagenet_eval_image(image)
  expected = (1 - np.array(preprocess.IMAGENET_MEAN)) / np.array(preprocess.IMAGENET_STD)
  assert out.shape == (224, 224, 3)
  np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), rtol=1e-5)
  ramp = np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (256, 1, 3))
  crop = preprocess.center_crop(ramp, 224)
  assert crop[0, 0, 0] == 16 and crop[0, -1, 0] == 239


def test_pad_crop_flip_is_deterministic_given_the_rng():
  image = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
  a = preprocess.pad_crop_flip(image, np.random.default_rng(1))
  b = preprocess.pad_crop_flip(image, np.random.default_rng(1))
  assert a.shape == image.shape
  np.testing.assert_array_equal(a, b)
