"""Feature specs (`Feature`, `DatasetInfo.features`, padding of any example) and the synthetic
"shapes" segmentation dataset: splits, labels, determinism, sharded and padded batches.

Everything here is generated in memory: no file is read and nothing is downloaded.
"""
import json
import random
import time

import grain
import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from spg_jax import data
from spg_jax import sharding
from spg_jax.data import embedded
from spg_jax.data import pipeline
from spg_jax.data import shapes
from spg_jax.data import sources

_READ = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
S = shapes.IMAGE_SIZE


@pytest.fixture(scope="module")
def mesh():
  assert jax.device_count() == 8  # conftest forces 8 CPU devices
  return sharding.make_mesh()


@pytest.fixture(scope="module")
def generated():
  """The arrays, generated afresh once for this module, and whether the global RNGs
  survived the generation."""
  shapes.shapes_arrays.cache_clear()
  random.seed(3)
  np.random.seed(3)
  py_state, np_state = random.getstate(), np.random.get_state()
  start = time.perf_counter()
  arrays = shapes.shapes_arrays()
  print(f"shapes: generated {shapes.NUM_TRAIN_POOL + shapes.NUM_TEST} images in "
        f"{time.perf_counter() - start:.2f} s")
  untouched = (random.getstate() == py_state and
               np.array_equal(np.random.get_state()[1], np_state[1]))
  return arrays, untouched


def _take(it, k):
  return [jax.tree.map(np.asarray, next(it)) for _ in range(k)]


# --- Feature, DatasetInfo -----------------------------------------------------------------

def test_dataset_info_features_task_and_ignore_label():
  info = data.dataset_info("shapes")
  assert (info.kind, info.task, info.num_classes, info.ignore_label) == (
      "embedded", "segmentation", len(shapes.CLASSES), 255)
  assert dict(info.features) == {"input": data.Feature((S, S, 3), "float32"),
                                 "label": data.Feature((S, S), "int32")}
  assert info.input_shape == (S, S, 3) and info.label_shape == (S, S)
  for name in ("digits", "mnist1d", "mnist", "cifar10", "cifar100", "imagenet2012"):
    other = data.dataset_info(name)
    assert (other.task, other.ignore_label, other.label_shape) == ("classification", None, ())
    assert other.features["input"].dtype == "float32"
    assert other.features["label"] == data.Feature((), "int32")
  assert len({hash(data.dataset_info(n)) for n in data.names()}) == len(data.names())


def test_feature_validates_and_canonicalises():
  assert data.Feature([2, 3], np.float32) == data.Feature((2, 3), "float32")
  for kwargs, field in [({"shape": 5, "dtype": "int32"}, "shape=5"),
                        ({"shape": (-1,), "dtype": "int32"}, "shape="),
                        ({"shape": (2,), "dtype": "nonsense"}, "dtype='nonsense'")]:
    with pytest.raises(ValueError, match=field) as e:
      data.Feature(**kwargs)
    assert "\n" not in str(e.value)
  with pytest.raises(ValueError, match="features"):
    data.Features({"input": (3,)})


def test_array_source_holds_any_equal_length_arrays():
  two = sources.ArraySource(np.zeros((3, 2), np.float32), np.arange(3, dtype=np.int32))
  assert set(two[1]) == {"input", "label"} and two.labels[2] == 2 and len(two) == 3
  many = sources.ArraySource({"a": np.zeros((4, 5)), "b": np.ones((4,), bool),
                              "c": np.arange(4)})
  assert len(many) == 4 and set(many[-1]) == {"a", "b", "c"} and many[3]["c"] == 3
  with pytest.raises(ValueError, match="lengths differ"):
    sources.ArraySource({"a": np.zeros(3), "b": np.zeros(4)})
  with pytest.raises(ValueError, match="differ in length"):
    sources.ArraySource(np.zeros(3), np.zeros(4))
  with pytest.raises(AttributeError, match="'label'"):
    many.labels  # pylint: disable=pointless-statement


def test_padding_examples_follow_every_feature():
  # A toy segmentation split of 10 examples with an extra feature: batches of 4, last padded.
  n = 10
  arrays = {"input": np.arange(n * 6, dtype=np.float32).reshape(n, 3, 2),
            "label": np.arange(n * 4, dtype=np.int32).reshape(n, 2, 2) + 1,
            "weight": np.full((n,), 0.5, np.float16)}
  features = {k: data.Feature(a.shape[1:], a.dtype.name) for k, a in arrays.items()}
  ds = data.build_dataset(sources.ArraySource(arrays), sources.identity, None,
                          features=features, global_batch_size=4, seed=0, shuffle=False,
                          num_epochs=1, drop_remainder=False, read_options=_READ)
  batches = list(ds)
  assert len(batches) == 3
  cat = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  assert cat["mask"].tolist() == [True] * n + [False] * 2
  for k, a in arrays.items():
    assert cat[k].dtype == a.dtype and cat[k].shape == (12,) + a.shape[1:]
    np.testing.assert_array_equal(cat[k][:n], a)
    assert not cat[k][n:].any()  # padding is zeros
  assert pipeline.padding_example(features)["label"].shape == (2, 2)


def test_build_dataset_feature_arguments_are_checked():
  src = sources.ArraySource(np.zeros((4, 3), np.float32), np.zeros((4,), np.int32))
  build = lambda **kw: data.build_dataset(src, sources.identity, None, global_batch_size=4,
                                          seed=0, read_options=_READ, **kw)
  # The older input_shape= still describes a classifier.
  assert next(iter(build(input_shape=(3,))))["input"].shape == (4, 3)
  with pytest.raises(ValueError, match="give exactly one"):
    build()
  with pytest.raises(ValueError, match="give exactly one"):
    build(input_shape=(3,), features=data.dataset_info("digits").features)
  with pytest.raises(ValueError, match=r"features\['input'\]: float32 \(8, 8, 1\)"):
    build(features=data.dataset_info("digits").features, drop_remainder=False)
  with pytest.raises(ValueError, match="'mask'"):
    build(features={"input": data.Feature((3,), "float32"),
                    "mask": data.Feature((), "bool")})


# --- the shapes generator -----------------------------------------------------------------

def test_shape_masks_have_the_areas_they_claim():
  # Monte Carlo areas (points, not the pixel grid, which quantises edges).
  u, v = np.random.default_rng(0).uniform(-40, 40, (2, 400_000)).astype(np.float32)
  area = lambda cls: shapes._shape_mask(cls, u, v, 12.0, np.random.default_rng(1)).mean() * 80**2  # pylint: disable=protected-access
  for cls in (1, 2, 3):  # disc, square, triangle: the disc's area
    assert abs(area(cls) / (np.pi * 12.0**2) - 1) < 0.03, cls
  ring = shapes._shape_mask(4, u, v, 12.0, np.random.default_rng(0))  # pylint: disable=protected-access
  assert not ring[u * u + v * v < 25].any() and ring[u * u + v * v < 100].any()  # a hole


def test_generation_keeps_the_global_rng(generated):
  assert generated[1]


def test_arrays_shapes_dtypes_and_determinism(generated):
  d, _ = generated
  assert d["x"].shape == (2000, S, S, 3) and d["y"].shape == (2000, S, S)
  assert d["x_test"].shape == (500, S, S, 3) and d["y_test"].shape == (500, S, S)
  assert all(a.dtype == np.uint8 and not a.flags.writeable for a in d.values())
  # Every image from its own seed: redrawing a few gives the same pixels.
  again_x, again_y = shapes._draw_split(0, 5)  # pylint: disable=protected-access
  np.testing.assert_array_equal(again_x, d["x"][:5])
  np.testing.assert_array_equal(again_y, d["y"][:5])
  test_x, _ = shapes._draw_split(1, 2)  # pylint: disable=protected-access
  np.testing.assert_array_equal(test_x, d["x_test"][:2])
  assert not np.array_equal(d["x"][:2], d["x_test"][:2])
  assert shapes.shapes_arrays() is d  # cached


def test_labels_classes_and_ignore_ring(generated):
  d, _ = generated
  for y in (d["y"], d["y_test"]):
    values = set(np.unique(y).tolist())
    assert values == set(range(shapes.NUM_CLASSES)) | {shapes.IGNORE_LABEL}
    ignored = y == shapes.IGNORE_LABEL
    assert 0.02 < ignored.mean() < 0.15
    assert ignored.any(axis=(1, 2)).all()  # every image has an object, so a boundary
  counts = np.bincount(d["y"].ravel(), minlength=256)[:shapes.NUM_CLASSES]
  share = counts / counts.sum()
  assert share[0] > 0.5 and (share[1:] > 0.02).all()  # every class, none negligible


def test_class_is_not_told_by_colour(generated):
  d, _ = generated
  x, y = d["x"][:500].reshape(-1, 3).astype(np.float32), d["y"][:500].ravel()
  means = np.stack([x[y == c].mean(0) for c in range(1, shapes.NUM_CLASSES)]) / 255
  assert np.ptp(means, axis=0).max() < 0.05  # same colour distribution for every shape


def test_standardisation_constants_match_the_pool(generated):
  del generated
  mean, std = shapes._pool_statistics()  # pylint: disable=protected-access
  np.testing.assert_allclose(mean, shapes.MEAN, atol=2e-3)
  np.testing.assert_allclose(std, shapes.STD, atol=2e-3)


# --- through the package API --------------------------------------------------------------

def test_sources_of_every_split(generated):
  del generated
  info = data.dataset_info("shapes")
  srcs = {s: data.make_source("shapes", s) for s in data.SPLITS}
  assert {s: len(src) for s, src in srcs.items()} == {"train": 1800, "validation": 200,
                                                      "test": 500}
  for src in srcs.values():
    ex = src[len(src) - 1]
    assert set(ex) == set(info.features)
    for k, f in info.features.items():
      assert ex[k].shape == f.shape and ex[k].dtype == np.dtype(f.dtype)
    assert np.isfinite(ex["input"]).all() and abs(ex["input"].mean()) < 3


def test_train_and_validation_are_disjoint_and_fixed():
  train = embedded.split_indices("shapes", "train")
  val = embedded.split_indices("shapes", "validation")
  assert len(val) == 200 and not np.intersect1d(train, val).size
  np.testing.assert_array_equal(np.union1d(train, val), np.arange(shapes.NUM_TRAIN_POOL))
  np.testing.assert_array_equal(embedded.split_indices("shapes", "validation"), val)
  assert not np.array_equal(embedded.split_indices("shapes", "validation", split_seed=1), val)
  assert len(embedded.split_indices("shapes", "validation", validation_fraction=0.25)) == 500


def test_iterator_yields_sharded_segmentation_batches(mesh, generated):
  del generated
  it = data.make_iterator("shapes", "train", global_batch_size=16, mesh=mesh, seed=0,
                          read_options=_READ)
  batch = next(it)
  assert set(batch) == {"input", "label"}
  assert batch["input"].shape == (16, S, S, 3) and batch["input"].dtype == np.float32
  assert batch["label"].shape == (16, S, S) and batch["label"].dtype == np.int32
  for a in batch.values():
    assert a.sharding == NamedSharding(mesh, P("data"))
    assert len(a.addressable_shards) == 8


def test_padded_epoch_covers_every_example_once(mesh, generated):
  del generated
  src = data.make_source("shapes", "validation")  # 200 examples: 5 batches of 48, padded
  it = data.make_iterator("shapes", "validation", global_batch_size=48, mesh=mesh, seed=1,
                          num_epochs=1, drop_remainder=False, read_options=_READ)
  batches = [jax.tree.map(np.asarray, b) for b in it]
  assert len(batches) == 5
  cat = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  mask = cat["mask"]
  assert mask.sum() == len(src) and not mask[len(src):].any()
  assert not cat["label"][~mask].any() and not cat["input"][~mask].any()
  # Shuffled, but each real example exactly once: compare per-example label checksums.
  weights = np.arange(S * S, dtype=np.int64).reshape(S, S) % 7919
  key = lambda labels: np.sort((labels.astype(np.int64) * weights).sum(axis=(1, 2)))
  expected = np.stack([src[i]["label"] for i in range(len(src))])
  np.testing.assert_array_equal(key(cat["label"][mask]), key(expected))


def test_resume_continues_the_stream(mesh, generated):
  del generated
  make = lambda: data.make_iterator("shapes", "validation", global_batch_size=16, mesh=mesh,
                                    seed=4, read_options=_READ)
  uninterrupted = _take(make(), 16)  # 200 / 16: crosses an epoch boundary
  first = make()
  _take(first, 10)
  resumed = make()
  resumed.set_state(json.loads(json.dumps(first.get_state())))
  for a, b in zip(_take(resumed, 6), uninterrupted[10:]):
    np.testing.assert_array_equal(a["input"], b["input"])
    np.testing.assert_array_equal(a["label"], b["label"])
