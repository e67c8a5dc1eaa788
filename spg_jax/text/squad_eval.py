"""The official SQuAD v1.1 exact match and F1 of a trained BERT QA model.

In-run metrics of the `extractive_qa` task are span-level on the tokenised windows (the
argmax start / end against the labelled tokens). The numbers SQuAD reports are text-level:
every window of a question is run, the best valid span over its windows is cut from the
context by the tokenizer's character offsets (`squad.predict_answers`: n-best 20, at most
30 tokens) and scored against all its ground-truth answers by the official script's rules
(`squad.squad_metrics`). This module does that for an exported model:

  evaluate_export(config, export_dir, split="test")
    -> {"exact_match", "f1" (percent), "questions", "windows"}

`config`: the run's config (a protocol workdir's `config.json`): its model, dataset (name,
data_dir, validation_fraction, preprocess: tokenizer, max_length, stride, format) and
eval_batch_size are used. Splits as `spg_jax.data.text_catalog`: "test" is the official
dev-v1.1 set, "validation" the questions carved from train.
"""
from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import numpy as np

from spg_jax import models
from spg_jax.data import text_catalog
from spg_jax.data import text_sources
from spg_jax.text import squad
from spg_jax.text import tokenize

INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def window_logits(apply_fn: Any, windows: Mapping[str, np.ndarray], batch_size: int
                  ) -> tuple[np.ndarray, np.ndarray]:
  """(start_logits, end_logits), float32 `[W, L]`, of `apply_fn(inputs) -> {"start_logits",
  "end_logits"}` over the windows in batches of `batch_size` (the last one padded, so one
  compilation serves every batch)."""
  n = len(windows["input_ids"])
  starts, ends = [], []
  for lo in range(0, n, batch_size):
    batch = {k: np.asarray(windows[k][lo:lo + batch_size], np.int32) for k in INPUTS}
    real = len(batch["input_ids"])
    if real < batch_size:
      batch = {k: np.concatenate([v, np.zeros((batch_size - real,) + v.shape[1:], v.dtype)])
               for k, v in batch.items()}
    out = apply_fn(batch)
    starts.append(np.asarray(out["start_logits"], np.float32)[:real])
    ends.append(np.asarray(out["end_logits"], np.float32)[:real])
  length = windows["input_ids"].shape[1]
  empty = np.zeros((0, length), np.float32)
  return (np.concatenate(starts) if starts else empty, np.concatenate(ends) if ends else empty)


def evaluate_model(apply_fn: Any, rows: Mapping[str, Any], tokenizer: tokenize.BertTokenizer,
                   *, max_length: int, stride: int, batch_size: int, n_best: int = 20,
                   max_answer_length: int = 30) -> dict:
  """Official EM / F1 of `apply_fn` on SQuAD rows (`text_files.SQUAD_COLUMNS`)."""
  windows = tokenizer.squad_windows(list(rows["question"]), list(rows["context"]),
                                    max_length=max_length, stride=stride)
  start, end = window_logits(apply_fn, windows, batch_size)
  answers = squad.predict_answers(start, end, windows, list(rows["context"]), n_best=n_best,
                                  max_answer_length=max_answer_length)
  scores = squad.squad_metrics(answers, [list(t) for t in rows["answer_texts"]])
  return {**scores, "questions": len(answers), "windows": int(len(start))}


@functools.lru_cache(maxsize=4)
def _jitted_apply(name: str, kwargs: tuple):
  """One compiled forward pass per architecture: every export of a protocol shares it."""
  model = models.get(name, **dict(kwargs))

  @jax.jit
  def apply(params, batch):
    outputs, _ = model.apply({"params": params}, batch, train=False)
    return outputs

  return apply


def _apply_fn(config: Any, variables: Mapping[str, Any]):
  kwargs = dict(config.model.kwargs)
  kwargs.pop("num_classes", None)
  hashable = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                         for k, v in kwargs.items()))  # JSON gives lists
  apply = _jitted_apply(config.model.name, hashable)
  params = jax.device_put(variables["params"])
  return lambda batch: apply(params, batch)


def evaluate_export(config: Any, export_dir: str, split: str = "test") -> dict:
  """Official EM / F1 (percent) of the model exported at `export_dir` on `split`.

  Raises:
    ValueError (one line): a dataset that is not SQuAD, a split outside train / validation
      / test, a missing export or data (the readers' messages).
  """
  name = config.dataset.name
  if name not in text_catalog.NAMES or not text_catalog.is_squad(name):
    raise ValueError(f"config.dataset.name={name!r}: the official SQuAD metrics need a "
                     "SQuAD dataset (squad_v1)")
  if split not in ("train", "validation", "test"):
    raise ValueError(f"split={split!r}: must be one of ['train', 'validation', 'test']")
  from spg_jax.train import checkpoint_eval  # pylint: disable=g-import-not-at-top  (orbax)
  variables = checkpoint_eval.load_checkpoint(export_dir, "export")
  options = text_catalog.check_options(name, {k: v for k, v in
                                              dict(config.dataset.preprocess).items()
                                              if v is not None})
  if options["tokenizer"] is None:
    raise ValueError("config.dataset.preprocess.tokenizer=None: the path of the model's "
                     "vocab.txt, tokenizer.json or folder is needed")
  rows = text_sources.raw_rows(name, split, config.dataset.data_dir,
                               float(config.dataset.validation_fraction), options["format"])
  tokenizer = _load_tokenizer(options["tokenizer"])
  return evaluate_model(_apply_fn(config, variables), rows, tokenizer,
                        max_length=options["max_length"], stride=options["stride"],
                        batch_size=int(config.eval_batch_size))


@functools.lru_cache(maxsize=2)
def _load_tokenizer(path: str) -> tokenize.BertTokenizer:
  return tokenize.load_tokenizer(path)
