"""Evaluation metrics of the tasks, as small pure functions.

Two kinds:

* in-jit accumulators (`jax.numpy`, static shapes): run inside a jitted eval step on one
  batch; their outputs are sums, so a split's value is the sum over its batches (and hosts).
  `weights` of 0 exclude an element (padding examples, ignored pixels).
* host-side finishers (`numpy` / `scipy`): turn the summed accumulators, or per-example arrays
  concatenated over a split, into the reported numbers (Python floats).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from rapidfuzz.distance import Levenshtein


def _positive_int(name: str, value) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{name}={value!r}: must be a positive integer")
  return int(value)


def _same_shape(**arrays) -> None:
  shapes = {name: tuple(jnp.shape(a)) for name, a in arrays.items()}
  if len(set(shapes.values())) != 1:
    raise ValueError(f"shapes must be equal, got {shapes}")


# ---------------------------------------------------------------- in-jit accumulators


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  """Top-k hits: float32 `[B]`, 1.0 where `labels [B]` (int) is among the `k` largest of
  `logits [B, C]`.

  Ties follow `jax.lax.top_k` (the lower index wins); `k > C` is clipped to `C`; a label
  outside `[0, C)` never hits. `k` is static.
  """
  k = min(_positive_int("k", k), logits.shape[-1])
  if logits.ndim != 2 or labels.shape != logits.shape[:1]:
    raise ValueError(f"logits {logits.shape}, labels {labels.shape}: need [B, C] and [B]")
  _, top = jax.lax.top_k(logits, k)
  return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


def confusion_matrix(predictions: jax.Array, labels: jax.Array, num_classes: int,
                     weights: jax.Array | None = None) -> jax.Array:
  """Weighted confusion counts, float32 `[C, C]`: row = true class, column = predicted class
  (the convention of torchvision's segmentation reference `ConfusionMatrix`).

  `predictions`, `labels`: int, any equal shape (e.g. `[B, H, W]`); `weights`: same shape,
  float, default 1. Elements whose label or prediction is outside `[0, C)` (the ignore label
  255) contribute nothing. `num_classes` is static.

  One scatter-add into a flat `[C*C]` vector at `label * C + prediction` (what
  `jnp.bincount(..., length=C*C)` lowers to): on CPU about 50x faster than a one-hot matmul
  for `[64, 64, 64]` pixels and C = 21, and it needs no `[N, C]` intermediate. float32 counts
  are exact up to 2**24 per cell and batch.
  """
  c = _positive_int("num_classes", num_classes)
  if weights is None:
    weights = jnp.ones(jnp.shape(labels), jnp.float32)
  _same_shape(predictions=predictions, labels=labels, weights=weights)
  # int32 first: uint8 label maps (255 = ignore) would overflow in `labels * c`.
  predictions, labels = jnp.asarray(predictions, jnp.int32), jnp.asarray(labels, jnp.int32)
  valid = (labels >= 0) & (labels < c) & (predictions >= 0) & (predictions < c)
  # Without a Python branch: invalid elements go to a safe index with weight 0.
  index = jnp.where(valid, labels * c + predictions, 0).reshape(-1)
  update = jnp.where(valid, weights.astype(jnp.float32), 0.0).reshape(-1)
  return jnp.zeros(c * c, jnp.float32).at[index].add(update).reshape(c, c)


def qa_span_sums(start_logits: jax.Array, end_logits: jax.Array, start_positions: jax.Array,
                 end_positions: jax.Array, weights: jax.Array) -> dict:
  """Extractive-QA span hits of the independent argmaxes (no span search), as float32 scalar
  sums: `start_correct`, `end_correct`, `exact_correct` (both right), `f1` (SQuAD's F1
  computed on window token positions: overlap of the predicted span [argmax start, argmax
  end] (empty when end < start) with the gold span, harmonic mean of precision and recall;
  the official word-level EM/F1 after post-processing are `spg_jax.text.squad_metrics`),
  `count` (sum of weights).

  `start_logits`, `end_logits`: `[B, L]`; `start_positions`, `end_positions`: int `[B]`;
  `weights`: `[B]` float (0 for padding examples).
  """
  _same_shape(start_logits=start_logits, end_logits=end_logits)
  _same_shape(start_positions=start_positions, end_positions=end_positions, weights=weights)
  w = weights.astype(jnp.float32)
  pred_start = jnp.argmax(start_logits, axis=-1)
  pred_end = jnp.argmax(end_logits, axis=-1)
  start, end = pred_start == start_positions, pred_end == end_positions
  overlap = jnp.maximum(jnp.minimum(pred_end, end_positions)
                        - jnp.maximum(pred_start, start_positions) + 1, 0).astype(jnp.float32)
  pred_len = jnp.maximum(pred_end - pred_start + 1, 0).astype(jnp.float32)
  gold_len = jnp.maximum(end_positions - start_positions + 1, 1).astype(jnp.float32)
  # 2PR / (P + R) with P = overlap / pred_len, R = overlap / gold_len; 0 without overlap.
  f1 = jnp.where(overlap > 0, 2.0 * overlap / jnp.maximum(pred_len + gold_len, 1.0), 0.0)
  return {"start_correct": jnp.sum(w * start), "end_correct": jnp.sum(w * end),
          "exact_correct": jnp.sum(w * (start & end)), "f1": jnp.sum(w * f1),
          "count": jnp.sum(w)}


def token_accuracy_sums(predictions: jax.Array, targets: jax.Array, weights: jax.Array) -> dict:
  """Per-token seq2seq accuracy as float32 scalar sums `correct` and `count`.

  `predictions` (int token ids, argmax already taken), `targets` (int) and `weights` (float,
  0 at padding): equal shapes, e.g. `[B, T]`.
  """
  _same_shape(predictions=predictions, targets=targets, weights=weights)
  w = weights.astype(jnp.float32)
  return {"correct": jnp.sum(w * (predictions == targets)), "count": jnp.sum(w)}


# ---------------------------------------------------------------- host-side finishers


def _square(confusion) -> np.ndarray:
  m = np.asarray(confusion, np.float64)
  if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 1:
    raise ValueError(f"confusion shape {m.shape}: must be a square [C, C] matrix")
  return m


def _div(a: float, b: float) -> float:
  return float(a / b) if b > 0 else 0.0


def segmentation_metrics(confusion) -> dict:
  """Segmentation metrics from a summed `[C, C]` confusion (rows true, columns predicted).

  Returns `pixel_accuracy` (trace / total, torchvision's "global correct"),
  `mean_class_accuracy` (mean of diag / row_sum), `iou` (numpy `[C]`, diag / union with
  union = row_sum + col_sum - diag), `mIoU` and `num_classes_present`.

  Difference from torchvision's `ConfusionMatrix.compute`, which divides without guards (a
  class absent from both labels and predictions gives NaN and makes the mean NaN): `iou` is
  NaN for such classes, and `mIoU` averages over the classes with a non-zero union only
  (`num_classes_present` of them); `mean_class_accuracy` averages over classes with a
  non-zero row sum. An all-zero matrix gives 0.0 everywhere.
  """
  m = _square(confusion)
  diag, rows, cols = np.diag(m), m.sum(1), m.sum(0)
  union = rows + cols - diag
  present = union > 0
  iou = np.full(m.shape[0], np.nan)
  iou[present] = diag[present] / union[present]
  labelled = rows > 0
  return {
      "pixel_accuracy": _div(diag.sum(), m.sum()),
      "mean_class_accuracy": float(np.mean(diag[labelled] / rows[labelled])) if labelled.any()
                             else 0.0,
      "iou": iou,
      "mIoU": float(np.mean(iou[present])) if present.any() else 0.0,
      "num_classes_present": int(present.sum()),
  }


def classification_metrics(confusion) -> dict:
  """`accuracy`, `f1`, `matthews` from a summed `[C, C]` confusion (rows true), C >= 2.

  `f1`: C == 2, F1 of the positive class 1 (GLUE's MRPC / QQP); C > 2, macro F1 over the
  classes that occur in labels or predictions (sklearn's default label set; a class with
  weight 0 everywhere counts as absent). A class with no true and no predicted element has F1
  0.0 (sklearn's `zero_division`). `matthews`: sklearn's multiclass Matthews correlation
  coefficient, 0.0 when undefined (as sklearn).
  """
  m = _square(confusion)
  if m.shape[0] < 2:
    raise ValueError(f"confusion shape {m.shape}: classification needs C >= 2 classes")
  diag, rows, cols = np.diag(m), m.sum(1), m.sum(0)
  total, correct = m.sum(), diag.sum()
  denominator = rows + cols  # 2 tp + fp + fn
  f1 = np.where(denominator > 0, 2 * diag / np.maximum(denominator, 1e-300), 0.0)
  if m.shape[0] == 2:
    f1_value = float(f1[1])
  else:
    present = denominator > 0
    f1_value = float(np.mean(f1[present])) if present.any() else 0.0
  cov_tp = correct * total - rows @ cols
  cov_pp = total ** 2 - cols @ cols
  cov_tt = total ** 2 - rows @ rows
  matthews = float(cov_tp / np.sqrt(cov_tt * cov_pp)) if cov_tt * cov_pp > 0 else 0.0
  return {"accuracy": _div(correct, total), "f1": f1_value, "matthews": matthews}


def regression_metrics(predictions, labels) -> dict:
  """`pearson`, `spearman` (scipy.stats) and `mse` of 1-D float arrays of equal length N >= 1.

  NaN-free: where either side is constant (including N == 1) the correlations are undefined
  and reported as 0.0 (scipy would return NaN with a warning).
  """
  import scipy.stats  # pylint: disable=g-import-not-at-top  (~1.6 s to import; needed here only)
  p, y = np.asarray(predictions, np.float64), np.asarray(labels, np.float64)
  if p.ndim != 1 or p.shape != y.shape or p.size == 0:
    raise ValueError(f"predictions {p.shape}, labels {y.shape}: must be equal non-empty 1-D")
  constant = np.ptp(p) == 0 or np.ptp(y) == 0
  return {
      "pearson": 0.0 if constant else float(scipy.stats.pearsonr(p, y).statistic),
      "spearman": 0.0 if constant else float(scipy.stats.spearmanr(p, y).statistic),
      "mse": float(np.mean((p - y) ** 2)),
  }


def edit_distance(hypothesis: Sequence, reference: Sequence) -> int:
  """Levenshtein distance (insertions, deletions, substitutions, each 1) between two
  sequences of ints (or other hashables), by `rapidfuzz.distance.Levenshtein`."""
  return int(Levenshtein.distance(list(hypothesis), list(reference)))


def _words(tokens: Sequence[int], delimiter: int | None) -> list[tuple]:
  if delimiter is None:
    return [(t,) for t in tokens]
  words, word = [], []
  for t in tokens:
    if t == delimiter:
      if word:
        words.append(tuple(word))
      word = []
    else:
      word.append(t)
  if word:
    words.append(tuple(word))
  return words


def _word_edits(hypothesis: list[tuple], reference: list[tuple]) -> int:
  # Words as small ints local to the pair: exact equality, no reliance on tuple hashes.
  vocab: dict[tuple, int] = {}
  ids = lambda ws: [vocab.setdefault(w, len(vocab)) for w in ws]
  return edit_distance(ids(hypothesis), ids(reference))


def error_rates(hypotheses: Sequence[Sequence[int]], references: Sequence[Sequence[int]],
                word_delimiter: int | None = None) -> dict:
  """Corpus-level character and word error rates (as jiwer: total edits / total length).

  `hypotheses`, `references`: equal-length lists of int token lists, already stripped of
  padding and blanks. `cer` = sum of token-level edits / sum of reference tokens (delimiter
  tokens count as characters, like spaces in jiwer's cer). `wer` = sum of word-level edits /
  sum of reference words, words being the non-empty runs of tokens between `word_delimiter`
  tokens (wav2vec2's "|"); with `word_delimiter=None` every token is a word, so `wer` equals
  `cer`. Empty references count 0 tokens / words; a zero total gives 0.0 when there are no
  edits and inf otherwise. Also returns the integer totals `char_edits`, `chars`,
  `word_edits`, `words`, so rates can be recombined across shards.
  """
  if len(hypotheses) != len(references):
    raise ValueError(f"hypotheses ({len(hypotheses)}) and references ({len(references)}): "
                     "must have equal lengths")
  totals = {"char_edits": 0, "chars": 0, "word_edits": 0, "words": 0}
  for hyp, ref in zip(hypotheses, references):
    hyp, ref = [int(t) for t in hyp], [int(t) for t in ref]
    hyp_words, ref_words = _words(hyp, word_delimiter), _words(ref, word_delimiter)
    totals["char_edits"] += edit_distance(hyp, ref)
    totals["chars"] += len(ref)
    totals["word_edits"] += _word_edits(hyp_words, ref_words)
    totals["words"] += len(ref_words)
  rate = lambda e, n: e / n if n > 0 else (0.0 if e == 0 else float("inf"))
  return {"cer": float(rate(totals["char_edits"], totals["chars"])),
          "wer": float(rate(totals["word_edits"], totals["words"])), **totals}
