"""Tests of spg_jax.tasks.metrics: hand-computed cases, sklearn / scipy references, jit."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from sklearn import metrics as skm

from spg_jax.tasks import metrics


# ---------------------------------------------------------------- in-jit accumulators


def test_topk_correct_hand_computed_ties_and_clipping():
  logits = jnp.array([[0.1, 0.5, 0.4], [1.0, 1.0, 0.0], [3.0, 2.0, 1.0]])
  labels = jnp.array([2, 1, 2])
  # Row 1 ties at indices 0 and 1: lax.top_k keeps the lower index, so label 1 misses at k=1.
  np.testing.assert_array_equal(metrics.topk_correct(logits, labels, 1), [0.0, 0.0, 0.0])
  np.testing.assert_array_equal(metrics.topk_correct(logits, labels, 2), [1.0, 1.0, 0.0])
  np.testing.assert_array_equal(metrics.topk_correct(logits, labels, 5), [1.0, 1.0, 1.0])
  out = metrics.topk_correct(logits, jnp.array([7, -1, 0]), 3)
  np.testing.assert_array_equal(out, [0.0, 0.0, 1.0])
  assert out.dtype == jnp.float32


def test_topk_correct_jit_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(32, 10)).astype(np.float32)
  labels = rng.integers(0, 10, 32)
  got = jax.jit(metrics.topk_correct, static_argnames="k")(logits, labels, k=3)
  want = (np.argsort(-logits, axis=1)[:, :3] == labels[:, None]).any(1)
  np.testing.assert_array_equal(got, want.astype(np.float32))


def test_confusion_matrix_hand_computed_with_ignore_and_weights():
  predictions = jnp.array([0, 1, 2, 2, 1, 5])
  labels = jnp.array([0, 1, 1, 2, 255, 0])  # 255 ignored; prediction 5 out of range too
  weights = jnp.array([1.0, 1.0, 2.0, 1.0, 1.0, 1.0])
  want = [[1.0, 0.0, 0.0], [0.0, 1.0, 2.0], [0.0, 0.0, 1.0]]
  np.testing.assert_array_equal(metrics.confusion_matrix(predictions, labels, 3, weights), want)
  unweighted = metrics.confusion_matrix(predictions, labels, 3)
  np.testing.assert_array_equal(unweighted, [[1, 0, 0], [0, 1, 1], [0, 0, 1]])
  assert unweighted.dtype == jnp.float32


def test_confusion_matrix_jit_segmentation_uint8_ignore_label():
  rng = np.random.default_rng(1)
  c = 21
  predictions = rng.integers(0, c, (4, 64, 64))
  labels = rng.integers(0, c, (4, 64, 64)).astype(np.uint8)
  labels[rng.random(labels.shape) < 0.2] = 255
  weights = np.ones(labels.shape, np.float32)
  weights[-1] = 0.0  # a padding example
  fn = jax.jit(metrics.confusion_matrix, static_argnames="num_classes")
  got = fn(predictions, labels, num_classes=c, weights=weights)
  keep = (labels != 255) & (weights > 0)
  want = np.zeros((c, c))
  np.add.at(want, (labels[keep].astype(int), predictions[keep]), 1.0)
  np.testing.assert_array_equal(got, want)
  assert float(got.sum()) == keep.sum()


def test_qa_span_sums_hand_computed():
  start_logits = jnp.array([[0.0, 5.0, 1.0, 0.0], [9.0, 1.0, 0.0, 0.0], [0.0, 0.0, 3.0, 1.0]])
  end_logits = jnp.array([[0.0, 0.0, 4.0, 1.0], [0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 3.0, 1.0]])
  out = jax.jit(metrics.qa_span_sums)(start_logits, end_logits, jnp.array([1, 1, 2]),
                                      jnp.array([2, 3, 0]), jnp.array([1.0, 1.0, 0.5]))
  # argmax start [1, 0, 2] vs [1, 1, 2]; argmax end [2, 3, 2] vs [2, 3, 0].
  f1 = float(out.pop("f1"))
  assert {k: float(v) for k, v in out.items()} == {
      "start_correct": 1.5, "end_correct": 2.0, "exact_correct": 1.0, "count": 2.5}
  # Span F1: [1, 2] for [1, 2]: 1; [0, 3] for [1, 3]: overlap 3, P 3/4, R 1: 6/7; the
  # third (gold end before its start) overlaps nothing: 0.
  assert f1 == pytest.approx(1.0 + 6.0 / 7.0, rel=1e-6)


def test_token_accuracy_sums_hand_computed():
  predictions = jnp.array([[1, 2, 3], [4, 5, 0]])
  targets = jnp.array([[1, 2, 4], [4, 0, 0]])
  weights = jnp.array([[1, 1, 1], [1, 1, 0]], jnp.float32)  # the matching last token is padding
  out = jax.jit(metrics.token_accuracy_sums)(predictions, targets, weights)
  assert float(out["correct"]) == 3.0 and float(out["count"]) == 5.0


# ---------------------------------------------------------------- segmentation


CONFUSION_3 = np.array([[5, 1, 0], [2, 3, 1], [0, 1, 7]], np.float64)


def _torchvision_compute(h):
  # torchvision references/segmentation/utils.py ConfusionMatrix.compute, in numpy.
  acc_global = np.diag(h).sum() / h.sum()
  acc = np.diag(h) / h.sum(1)
  iu = np.diag(h) / (h.sum(1) + h.sum(0) - np.diag(h))
  return acc_global, acc, iu


def test_segmentation_metrics_hand_computed_torchvision_formulas():
  out = metrics.segmentation_metrics(CONFUSION_3)
  # total 20, trace 15; rows 6 6 8; columns 7 5 8; unions 8 8 9.
  assert out["pixel_accuracy"] == pytest.approx(0.75)
  assert out["mean_class_accuracy"] == pytest.approx((5 / 6 + 3 / 6 + 7 / 8) / 3)  # 0.736111
  np.testing.assert_allclose(out["iou"], [0.625, 0.375, 7 / 9])
  assert out["mIoU"] == pytest.approx(0.5925925925925926)
  assert out["num_classes_present"] == 3
  acc_global, acc, iu = _torchvision_compute(CONFUSION_3)
  assert out["pixel_accuracy"] == pytest.approx(acc_global)
  assert out["mean_class_accuracy"] == pytest.approx(acc.mean())
  assert out["mIoU"] == pytest.approx(iu.mean())
  assert all(isinstance(out[k], float) for k in ("pixel_accuracy", "mean_class_accuracy", "mIoU"))


def test_segmentation_metrics_absent_class_is_excluded_not_nan():
  padded = np.zeros((4, 4))
  padded[:3, :3] = CONFUSION_3
  with np.errstate(invalid="ignore"):
    assert np.isnan(_torchvision_compute(padded)[2].mean())  # torchvision: NaN mIoU
  out = metrics.segmentation_metrics(padded)
  assert out["mIoU"] == pytest.approx(0.5925925925925926)
  assert out["mean_class_accuracy"] == pytest.approx(0.7361111111111112)
  assert out["num_classes_present"] == 3
  assert np.isnan(out["iou"][3]) and not np.isnan(out["iou"][:3]).any()
  # A class only predicted (row 0, column 2): present with IoU 0, no class accuracy.
  only_predicted = np.array([[3.0, 2.0], [0.0, 0.0]])
  out = metrics.segmentation_metrics(only_predicted)
  np.testing.assert_allclose(out["iou"], [0.6, 0.0])
  assert out["mIoU"] == pytest.approx(0.3) and out["mean_class_accuracy"] == pytest.approx(0.6)
  empty = metrics.segmentation_metrics(np.zeros((3, 3)))
  assert (empty["pixel_accuracy"], empty["mIoU"], empty["num_classes_present"]) == (0.0, 0.0, 0)


# ---------------------------------------------------------------- classification


def test_classification_metrics_binary_hand_computed():
  out = metrics.classification_metrics(np.array([[3, 1], [2, 4]]))
  # tn 3, fp 1, fn 2, tp 4.
  assert out["accuracy"] == pytest.approx(0.7)
  assert out["f1"] == pytest.approx(8 / 11)  # 0.727273
  assert out["matthews"] == pytest.approx(10 / np.sqrt(600))  # 0.408248
  degenerate = metrics.classification_metrics(np.array([[5, 0], [0, 0]]))
  assert degenerate == {"accuracy": 1.0, "f1": 0.0, "matthews": 0.0}


@pytest.mark.parametrize("num_classes", [2, 3, 5])
@pytest.mark.parametrize("weighted", [False, True])
def test_classification_metrics_match_sklearn(num_classes, weighted):
  rng = np.random.default_rng(10 * num_classes + weighted)
  labels = rng.integers(0, num_classes, 300)
  predictions = np.where(rng.random(300) < 0.6, labels, rng.integers(0, num_classes, 300))
  weights = rng.uniform(0.1, 2.0, 300) if weighted else None
  confusion = metrics.confusion_matrix(
      jnp.asarray(predictions), jnp.asarray(labels), num_classes,
      None if weights is None else jnp.asarray(weights, jnp.float32))
  out = metrics.classification_metrics(confusion)
  average = "binary" if num_classes == 2 else "macro"
  assert out["accuracy"] == pytest.approx(
      skm.accuracy_score(labels, predictions, sample_weight=weights), abs=1e-6)
  assert out["f1"] == pytest.approx(
      skm.f1_score(labels, predictions, average=average, sample_weight=weights), abs=1e-6)
  assert out["matthews"] == pytest.approx(
      skm.matthews_corrcoef(labels, predictions, sample_weight=weights), abs=1e-6)


def test_classification_macro_f1_skips_absent_class_like_sklearn():
  labels = np.array([0, 0, 1, 1, 1, 0])
  predictions = np.array([0, 1, 1, 1, 0, 0])
  confusion = np.asarray(metrics.confusion_matrix(jnp.asarray(predictions),
                                                  jnp.asarray(labels), 4))
  out = metrics.classification_metrics(confusion)
  assert out["f1"] == pytest.approx(skm.f1_score(labels, predictions, average="macro"))
  assert out["f1"] == pytest.approx(2 / 3)  # both classes: precision = recall = 2/3


# ---------------------------------------------------------------- regression


def test_regression_metrics_hand_computed_and_constant():
  out = metrics.regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
  assert out["pearson"] == pytest.approx(0.8)  # cov 4 / var 5
  assert out["spearman"] == pytest.approx(0.8)
  assert out["mse"] == pytest.approx(0.5)
  constant = metrics.regression_metrics([2.0, 2.0, 2.0], [1.0, 2.0, 4.0])
  assert constant["pearson"] == 0.0 and constant["spearman"] == 0.0
  assert constant["mse"] == pytest.approx(5 / 3)
  assert metrics.regression_metrics([1.0], [3.0]) == {"pearson": 0.0, "spearman": 0.0,
                                                       "mse": 4.0}


def test_regression_metrics_match_scipy():
  rng = np.random.default_rng(3)
  labels = rng.uniform(0, 5, 200).astype(np.float32)
  predictions = labels + rng.normal(0, 1, 200).astype(np.float32)
  predictions[:20] = np.round(predictions[:20])  # some ties for spearman
  out = metrics.regression_metrics(predictions, labels)
  assert out["pearson"] == pytest.approx(scipy.stats.pearsonr(predictions, labels)[0], abs=1e-6)
  assert out["spearman"] == pytest.approx(scipy.stats.spearmanr(predictions, labels)[0],
                                          abs=1e-6)
  assert out["mse"] == pytest.approx(float(np.mean((predictions - labels) ** 2.0)), rel=1e-5)


# ---------------------------------------------------------------- speech


def _levenshtein_dp(a, b):
  row = list(range(len(b) + 1))
  for i, x in enumerate(a, 1):
    prev, row[0] = row[0], i
    for j, y in enumerate(b, 1):
      prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
  return row[-1]


def test_edit_distance_hand_computed_and_random():
  assert metrics.edit_distance([1, 2, 3], [1, 4, 3, 5]) == 2
  assert metrics.edit_distance([], [1, 2]) == 2
  assert metrics.edit_distance(list(b"kitten"), list(b"sitting")) == 3
  assert metrics.edit_distance(np.array([7, 8]), (7, 8)) == 0
  rng = np.random.default_rng(4)
  for _ in range(50):
    a = rng.integers(0, 4, rng.integers(0, 12)).tolist()
    b = rng.integers(0, 4, rng.integers(0, 12)).tolist()
    assert metrics.edit_distance(a, b) == _levenshtein_dp(a, b)


DELIMITER = ord("|")


def _tokens(text):
  return [DELIMITER if ch == " " else ord(ch) for ch in text]


def test_error_rates_the_cat_sat():
  out = metrics.error_rates([_tokens("the bat sat down")], [_tokens("the cat sat")],
                            word_delimiter=DELIMITER)
  # Characters: c->b, then insert "|down": 6 edits over 11 reference tokens.
  # Words: cat->bat, insert "down": 2 edits over 3 reference words.
  assert out["cer"] == pytest.approx(6 / 11) and out["wer"] == pytest.approx(2 / 3)
  assert (out["char_edits"], out["chars"], out["word_edits"], out["words"]) == (6, 11, 2, 3)


def test_error_rates_corpus_level_delimiters_and_empty():
  hyps = [_tokens("the bat sat down"), _tokens("a b"), []]
  refs = [_tokens("the cat sat"), _tokens("a c d"), []]
  out = metrics.error_rates(hyps, refs, word_delimiter=DELIMITER)
  # Pair 2: chars "a b" vs "a c d": 3 edits over 5; words: 2 edits over 3.
  assert out["cer"] == pytest.approx((6 + 3) / (11 + 5))
  assert out["wer"] == pytest.approx((2 + 2) / (3 + 3))  # corpus level, not mean of rates
  # Leading, doubled and trailing delimiters make no empty words.
  spaced = metrics.error_rates([[1, DELIMITER, 2]],
                               [[DELIMITER, 1, DELIMITER, DELIMITER, 2, DELIMITER]],
                               word_delimiter=DELIMITER)
  assert (spaced["wer"], spaced["words"], spaced["cer"]) == (0.0, 2, 0.5)  # cer: 3 deletions
  no_delimiter = metrics.error_rates([[1, 2, 3]], [[1, 5]])
  assert no_delimiter["wer"] == no_delimiter["cer"] == pytest.approx(1.0)
  assert metrics.error_rates([[]], [[]])["wer"] == 0.0
  assert metrics.error_rates([[1]], [[]])["cer"] == float("inf")
  assert metrics.error_rates([], [])["cer"] == 0.0


# ---------------------------------------------------------------- bad input


def test_bad_input_raises_value_error():
  with pytest.raises(ValueError, match="k=0"):
    metrics.topk_correct(jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32), 0)
  with pytest.raises(ValueError, match="num_classes"):
    metrics.confusion_matrix(jnp.zeros(3, jnp.int32), jnp.zeros(3, jnp.int32), 0)
  with pytest.raises(ValueError, match="shapes"):
    metrics.confusion_matrix(jnp.zeros(3, jnp.int32), jnp.zeros(4, jnp.int32), 2)
  with pytest.raises(ValueError, match="square"):
    metrics.segmentation_metrics(np.zeros((2, 3)))
  with pytest.raises(ValueError, match="C >= 2"):
    metrics.classification_metrics(np.ones((1, 1)))
  with pytest.raises(ValueError, match="1-D"):
    metrics.regression_metrics([1.0, 2.0], [1.0])
  with pytest.raises(ValueError, match="equal lengths"):
    metrics.error_rates([[1]], [])
