"""GLUE and SQuAD v1.1 splits as tokenised in-memory sources (`spg_jax.data.make_parts`).

A split is read once (Hugging Face files or TFDS array_record, `text_files`), tokenised with
`spg_jax.text.tokenize` and kept (an LRU cache: evaluation rebuilds its iterator every time
and must not re-tokenise). Examples:

  GLUE    {"input_ids", "token_type_ids", "attention_mask": int32 [L], "label": int32 []
           (STS-B: float32 [])}
  SQuAD   {"input_ids", "token_type_ids", "attention_mask": int32 [L],
           "start_positions", "end_positions": int32 []} per window (384 tokens, stride 128;
           an answer outside a window gets position L, which the task ignores)

Splits as `text_catalog` says: "train" / "validation" = a seeded permutation of the
official train split (validation: its first `validation_fraction`; SQuAD: of questions),
"test" = the official validation split.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Mapping

import numpy as np

from spg_jax import validation
from spg_jax.data import sources
from spg_jax.data import text_catalog
from spg_jax.data import text_files

SPLIT_SEED = 0  # fixed: every training seed selects on the same validation examples


def resolve_format(name: str, data_dir: str | None, fmt: str) -> str:
  """"tfds" or "hf" for `format="auto"`: TFDS when its prepared folder is in data_dir."""
  if fmt != "auto":
    return fmt
  spec = text_catalog.SPECS[name]
  return "tfds" if text_files.tfds_prepared(spec.tfds_name, data_dir) else "hf"


def _hf_folder(name: str, data_dir: str | None) -> str:
  """data_dir itself, or its subfolder of the Hub's layout (`cola/`, `plain_text/`)."""
  if data_dir is None:
    raise ValueError(f"dataset.data_dir=None: dataset {name!r} is read from local files; "
                     "give the folder of its Hugging Face parquet/JSON files or the TFDS "
                     "data_dir where `tfds build` wrote it")
  sub = os.path.join(data_dir, text_catalog.SPECS[name].hf_folder)
  return sub if os.path.isdir(sub) else data_dir


def _columns(name: str) -> tuple:
  spec = text_catalog.SPECS[name]
  if spec.task == "extractive_qa":
    return text_files.SQUAD_COLUMNS
  return spec.text_columns + ("label",)


@functools.lru_cache(maxsize=8)
def read_split(name: str, official_split: str, data_dir: str | None, fmt: str
               ) -> Mapping[str, tuple]:
  """The raw columns of an official split (cached; tuples, so nobody edits them)."""
  fmt = resolve_format(name, data_dir, fmt)
  columns = _columns(name)
  if fmt == "tfds":
    rows = text_files.read_tfds_split(text_catalog.SPECS[name].tfds_name, official_split,
                                      data_dir, columns)
  else:
    rows = text_files.read_hf_split(_hf_folder(name, data_dir), official_split, columns)
  return {k: tuple(v) for k, v in rows.items()}


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str):
  tokenize = validation.require_extra("spg_jax.text.tokenize", "text")
  return tokenize.load_tokenizer(path)


def split_rows(n: int, split: str, validation_fraction: float) -> np.ndarray:
  """Indices of our "train" / "validation" into `n` official train rows (sorted)."""
  perm = np.random.default_rng(SPLIT_SEED).permutation(n)
  n_val = int(round(n * validation_fraction))
  return np.sort(perm[:n_val] if split == "validation" else perm[n_val:])


def _readonly(arrays: dict) -> dict:
  for a in arrays.values():
    a.setflags(write=False)
  return arrays


def encode_glue(name: str, rows: Mapping[str, Any], tokenizer: Any, max_length: int
                ) -> dict[str, np.ndarray]:
  """Token arrays `[N, max_length]` and labels `[N]` of GLUE rows."""
  spec = text_catalog.SPECS[name]
  first = list(rows[spec.text_columns[0]])
  second = list(rows[spec.text_columns[1]]) if len(spec.text_columns) > 1 else None
  out = tokenizer.encode(first, second, max_length=max_length)
  dtype = np.float32 if spec.num_classes == 1 else np.int32
  labels = np.asarray(rows["label"], dtype)
  outside = len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes)
  if spec.num_classes > 1 and outside:
    raise ValueError(f"dataset {name!r}: labels outside [0, {spec.num_classes}) (GLUE's "
                     "test splits hide theirs as -1; those are not read)")
  out["label"] = labels
  return out


def encode_squad(rows: Mapping[str, Any], tokenizer: Any, max_length: int, stride: int
                 ) -> dict[str, np.ndarray]:
  """Windows of SQuAD rows, labelled with the first answer (run_qa.py's training rule)."""
  answers = [(int(s[0]), t[0]) for s, t in zip(rows["answer_starts"], rows["answer_texts"])]
  return tokenizer.squad_windows(list(rows["question"]), list(rows["context"]), answers,
                                 max_length=max_length, stride=stride)


def raw_rows(name: str, split: str, data_dir: str | None, validation_fraction: float,
             fmt: str = "auto") -> dict[str, list]:
  """The raw columns of our `split` (untokenised; SQuAD: the `text_files.SQUAD_COLUMNS`,
  every ground-truth answer kept), the same rows `split_arrays` tokenises."""
  spec = text_catalog.SPECS[name]
  official = spec.test_split if split == "test" else "train"
  rows = read_split(name, official, data_dir, fmt)
  if split == "test":
    return {k: list(v) for k, v in rows.items()}
  n = len(next(iter(rows.values())))
  keep = split_rows(n, split, validation_fraction)
  if len(keep) == 0:
    raise ValueError(f"validation_fraction={validation_fraction!r}: leaves split={split!r} "
                     f"of {name!r} empty ({n} training rows)")
  return {k: [v[i] for i in keep] for k, v in rows.items()}


@functools.lru_cache(maxsize=6)
def split_arrays(name: str, split: str, data_dir: str | None, validation_fraction: float,
                 options: tuple) -> Mapping[str, np.ndarray]:
  """The tokenised examples of our `split` (see the module docstring); cached, read-only."""
  opts = dict(options)
  if name == text_catalog.SYNTHETIC:
    return _synthetic(split, validation_fraction, opts["max_length"])
  if opts.get("tokenizer") is None:
    raise ValueError(f"dataset.preprocess.tokenizer=None: dataset {name!r} needs the "
                     "path of the model's vocab.txt, tokenizer.json or folder")
  spec = text_catalog.SPECS[name]
  rows = raw_rows(name, split, data_dir, validation_fraction, opts["format"])
  tokenizer = _tokenizer(opts["tokenizer"])
  if spec.task == "extractive_qa":
    out = encode_squad(rows, tokenizer, opts["max_length"], opts["stride"])
    out = {k: out[k] for k in text_catalog.feature_specs(name, opts)}
  else:
    out = encode_glue(name, rows, tokenizer, opts["max_length"])
  return _readonly(out)


def _synthetic(split: str, validation_fraction: float, max_length: int
               ) -> Mapping[str, np.ndarray]:
  """The generated demo data (`synthetic_text`), split as the file-backed datasets."""
  from spg_jax.data import synthetic_text  # pylint: disable=g-import-not-at-top
  rows = synthetic_text.rows("test" if split == "test" else "train")
  if split != "test":
    keep = split_rows(len(rows["label"]), split, validation_fraction)
    rows = {k: [v[i] for i in keep] for k, v in rows.items()}
  return _readonly(encode_glue(text_catalog.SYNTHETIC, rows, synthetic_text.tokenizer(),
                               max_length))


def make_text_parts(name: str, split: str, *, data_dir: str | None,
                    validation_fraction: float, options: Mapping[str, Any]) -> sources.Parts:
  """`sources.Parts` of a text dataset's split (already tokenised: identity transform)."""
  arrays = split_arrays(name, split, data_dir, float(validation_fraction),
                        tuple(sorted(options.items())))
  return sources.Parts(sources.ArraySource(dict(arrays)), sources.identity, None)
