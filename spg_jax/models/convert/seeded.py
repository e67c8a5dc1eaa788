"""Seeded stand-ins for real checkpoints: every tensor of a key/shape manifest, from numpy.

Used by the golden verification of the converters: a hand-run script (with torch) fills a
reference model with `seeded_state_dict(manifest, seed)` and records its outputs; the tests
(without torch) regenerate the same arrays from the same manifest and seed, convert them and
compare. Pure numpy, no jax or torch, so both sides import it.

Each tensor has its own generator, seeded from `(seed, crc32(key))`, so the values of a key
do not depend on the order or the other keys of the manifest. The distributions are chosen
by the key's name and shape so that random deep networks stay in a sane range in eval mode
(BatchNorm there uses the stored statistics, not the batch's, so nothing renormalises the
signal; the BatchNorm scales set the gain of every layer: too small and the outputs stop
depending on the input, too large and deep residual stacks grow exponentially, so the golden
fixtures record the range each model uses):

  `*.num_batches_tracked` (int64 scalar)   an integer in [0, 1000)
  `*.running_var`                          U(0.5, 1.5)    (positive)
  `*.running_mean`                         N(0, 0.1^2)
  `*.weight` of a BatchNorm (1-D, its `running_mean` in the manifest)   U(low, high),
                                           `batch_norm_weight` = (low, high), default (0.5, 1)
  other 1-D `*.weight` (LayerNorm scales)  U(0.8, 1.2)
  `*bias*` (1-D)                           N(0, 0.05^2)
  class tokens, position embeddings        N(0, 0.02^2)
  conv weights [O, I/g, *k]                N(0, 2 / fan_in), fan_in = I/g * prod(k)  (He)
  linear weights [O, I] (and packed q/k/v) N(0, 1 / fan_in), fan_in = I
"""
from typing import Dict, Iterable, Optional, Sequence, Tuple, Union
import zlib

import numpy as np

# A manifest: (key, shape, dtype name) per tensor, in the state dict's order.
Manifest = Sequence[Tuple[str, Sequence[int], str]]
ManifestLike = Union[Manifest, Iterable[Sequence]]

# The default range of the BatchNorm scales.
BATCH_NORM_WEIGHT = (0.5, 1.0)
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
INT_DTYPES = ("int64", "int32")


def key_rng(seed: int, key: str) -> np.random.Generator:
  """The generator of one tensor: depends on the seed and the key only."""
  return np.random.default_rng([int(seed), zlib.crc32(key.encode("utf-8"))])


def _is_batch_norm_weight(key: str, shape: Tuple[int, ...], keys: frozenset) -> bool:
  prefix = key[:-len("weight")]
  return len(shape) == 1 and prefix + "running_mean" in keys


def seeded_tensor(key: str, shape: Sequence[int], dtype: str, seed: int, *,
                  batch_norm_weight: Optional[Tuple[float, float]] = None) -> np.ndarray:
  """One tensor of `shape` for `key` (float tensors as float32; see the module docstring).

  `batch_norm_weight`: the (low, high) range when `key` is a BatchNorm scale, else None.

  Raises:
    ValueError: a dtype that is neither float nor int (the message names the key).
  """
  shape = tuple(int(d) for d in shape)
  rng = key_rng(seed, key)
  if dtype in INT_DTYPES:
    return np.asarray(rng.integers(0, 1000, size=shape), dtype=np.dtype(dtype))
  if dtype not in FLOAT_DTYPES:
    raise ValueError(f"manifest key {key!r}: dtype {dtype!r}; allowed: "
                     f"{', '.join(FLOAT_DTYPES + INT_DTYPES)}")
  name = key.rsplit(".", 1)[-1]
  if name == "running_var":
    values = rng.uniform(0.5, 1.5, shape)
  elif name == "running_mean":
    values = rng.normal(0.0, 0.1, shape)
  elif name in ("class_token", "pos_embedding", "cls_token", "position_embeddings"):
    values = rng.normal(0.0, 0.02, shape)
  elif "bias" in name:
    values = rng.normal(0.0, 0.05, shape)
  elif len(shape) <= 1:
    low, high = (0.8, 1.2) if batch_norm_weight is None else batch_norm_weight
    values = rng.uniform(low, high, shape)
  else:
    fan_in = int(np.prod(shape[1:]))
    gain = 2.0 if len(shape) > 2 else 1.0  # ReLU-family convs; linear layers keep variance
    values = rng.normal(0.0, np.sqrt(gain / fan_in), shape)
  return np.asarray(values, dtype=np.float32)


def normalize_manifest(manifest: ManifestLike) -> Manifest:
  """`[(key, shape tuple, dtype name), ...]` from JSON-style rows `[key, shape, dtype]`."""
  rows = []
  for row in manifest:
    if len(row) != 3:
      raise ValueError(f"manifest row {row!r}: must be [key, shape, dtype]")
    key, shape, dtype = row
    rows.append((str(key), tuple(int(d) for d in shape), str(dtype)))
  return rows


def seeded_state_dict(manifest: ManifestLike, seed: int,
                      batch_norm_weight: Tuple[float, float] = BATCH_NORM_WEIGHT
                      ) -> Dict[str, np.ndarray]:
  """`{key: array}` for every row of `manifest`, in its order, reproducible from `seed`.

  `batch_norm_weight`: (low, high) of the uniform BatchNorm scales.
  """
  rows = normalize_manifest(manifest)
  keys = frozenset(key for key, _, _ in rows)
  low, high = (float(v) for v in batch_norm_weight)
  return {key: seeded_tensor(key, shape, dtype, seed,
                             batch_norm_weight=(low, high) if key.endswith("weight")
                             and _is_batch_norm_weight(key, shape, keys) else None)
          for key, shape, dtype in rows}


def seeded_input(seed: int, shape: Sequence[int]) -> np.ndarray:
  """Standard-normal float32 inputs of `shape` (the golden scripts' NCHW images)."""
  return np.random.default_rng(int(seed)).normal(size=tuple(shape)).astype(np.float32)
