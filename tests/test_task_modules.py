"""Each task module on hand-computed cases: its SPG terms, its eval contribution of one
batch (padding weighted out) and the split's metrics."""
import jax.numpy as jnp
import numpy as np
import pytest

from spg_jax import losses, tasks

NONE = {}


def _eval(task, outputs, batch, weights):
  values = task.eval_batch(outputs, batch, NONE, jnp.asarray(weights, jnp.float32))
  return task.eval_metrics({k: np.asarray(v) for k, v in values.items()})


def test_classification_terms_are_the_core_s_and_eval_counts_real_examples_only():
  task = tasks.Classification(num_classes=3, top_k=2)
  step_logits = jnp.asarray(np.random.default_rng(0).normal(size=(4, 2, 3)), jnp.float32)
  labels = jnp.array([0, 1, 2, 0])
  got = task.terms(step_logits, {"label": labels}, NONE)
  want = losses.classification_terms(step_logits, labels)
  np.testing.assert_array_equal(got.losses, want.losses)
  np.testing.assert_array_equal(got.correct, want.correct)
  logits = jnp.array([[3.0, 2.0, 0.0], [0.0, 1.0, 3.0], [0.0, 1.0, 3.0], [9.0, 0.0, 0.0]])
  # top-1 right: rows 0, 2; top-2 right: rows 0, 1 (label 1 is second), 2; row 3 is padding.
  metrics = _eval(task, logits, {"label": jnp.array([0, 1, 2, 1])}, [1, 1, 1, 0])
  assert metrics["accuracy"] == pytest.approx(2 / 3)
  assert metrics["top2_accuracy"] == pytest.approx(1.0)
  ce = np.log(np.exp(logits[:3]).sum(-1)) - np.asarray(logits)[[0, 1, 2], [0, 1, 2]]
  assert metrics["loss"] == pytest.approx(float(np.mean(ce)), rel=1e-6)


def test_segmentation_confusion_miou_and_ignored_pixels():
  task = tasks.Segmentation(num_classes=2, ignore_label=255)
  # One 2x2 image: labels [[0, 1], [1, 255]]; predictions [[0, 0], [1, 1]].
  predictions = jnp.array([[[0, 0], [1, 1]]])
  logits = jnp.stack([1.0 - predictions, predictions.astype(jnp.float32)], -1) * 4.0
  batch = {"label": jnp.array([[[0, 1], [1, 255]]])}
  metrics = _eval(task, logits, batch, [1.0])
  # Confusion (rows true): class 0: [1, 0]; class 1: [1, 1]. IoU_0 = 1/2, IoU_1 = 1/2.
  assert metrics["pixel_accuracy"] == pytest.approx(2 / 3)
  assert metrics["iou_0"] == pytest.approx(0.5) and metrics["iou_1"] == pytest.approx(0.5)
  assert metrics["mIoU"] == pytest.approx(0.5)
  assert metrics["mean_class_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
  terms = task.terms(logits[:, None], batch, NONE)
  np.testing.assert_array_equal(terms.valid, [[[1, 1], [1, 0]]])
  # A padding image counts nowhere.
  padded = _eval(task, jnp.concatenate([logits, logits]),
                 {"label": jnp.concatenate([batch["label"], batch["label"]])}, [1.0, 0.0])
  assert padded == metrics


def test_sequence_classification_f1_and_matthews_over_the_split():
  task = tasks.SequenceClassification(num_classes=2, metric="matthews")
  # predictions 1, 1, 0, 0 for labels 1, 0, 0, 1: TP 1, FP 1, TN 1, FN 1.
  logits = jnp.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
  metrics = _eval(task, logits, {"label": jnp.array([1, 0, 0, 1])}, [1, 1, 1, 1])
  assert metrics["accuracy"] == pytest.approx(0.5) and metrics["f1"] == pytest.approx(0.5)
  assert metrics["matthews"] == pytest.approx(0.0, abs=1e-12)
  assert task.selection_metric == "matthews"


def test_sequence_regression_tolerance_episodes_and_split_correlations():
  task = tasks.SequenceRegression(num_classes=1, tolerance=0.5)
  step_outputs = jnp.array([[[1.0], [1.4], [2.0]], [[3.0], [3.0], [3.6]]])  # [B, T+1, 1]
  terms = task.terms(step_outputs, {"label": jnp.array([1.0, 3.0])}, NONE)
  np.testing.assert_array_equal(terms.correct, [[True, True, False], [True, True, False]])
  np.testing.assert_allclose(terms.losses, [[0.0, 0.16, 1.0], [0.0, 0.0, 0.36]], atol=1e-6)
  values = task.eval_batch(jnp.array([[1.0], [2.0], [4.0]]),
                           {"label": jnp.array([1.0, 3.0, 4.0])}, NONE, jnp.ones(3))
  metrics = task.eval_metrics({k: np.asarray(v) for k, v in values.items()})
  assert metrics["mse"] == pytest.approx(1 / 3) and metrics["spearman"] == pytest.approx(1.0)
  assert metrics["pearson"] == pytest.approx(float(np.corrcoef([1, 2, 4], [1, 3, 4])[0, 1]))


def test_qa_ignores_answers_outside_the_window_and_needs_start_and_end():
  task = tasks.ExtractiveQA()
  start = jnp.array([[0.0, 5.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
  end = jnp.array([[0.0, 0.0, 5.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
  batch = {"start_positions": jnp.array([1, 0, 7]), "end_positions": jnp.array([2, 2, 7])}
  metrics = _eval(task, {"start_logits": start, "end_logits": end}, batch, [1, 1, 1])
  # Example 2's answer is outside the 3-token window: it does not count. Span F1: example 0
  # exact (1.0); example 1 predicts [0, 1] for [0, 2]: P 1, R 2/3, F1 0.8.
  assert metrics == pytest.approx({"exact_match": 0.5, "start_accuracy": 1.0,
                                   "end_accuracy": 0.5, "span_f1": 0.9})
  terms = task.terms({"start_logits": start[:, None], "end_logits": end[:, None]}, batch,
                     NONE)
  np.testing.assert_array_equal(terms.valid, [1.0, 1.0, 0.0])
  # (example 2's verdict is against position 0 and weighs nothing)
  np.testing.assert_array_equal(terms.correct[:, 0], [True, False, False])


def test_ctc_decodes_greedily_and_scores_wer_and_cer():
  task = tasks.CTC(num_classes=4, blank_id=0, word_delimiter=3)
  # Frames "1 1 _ 2 3 2": decoded 1 2 3 2 = words [1 2] [2]; reference 1 3 2: words [1] [2].
  frames = jnp.array([1, 1, 0, 2, 3, 2])
  logits = (jnp.eye(4)[frames] * 5.0)[None]
  batch = {"label": jnp.array([[1, 3, 2, 0]]), "label_paddings": jnp.array([[0, 0, 0, 1.0]])}
  values = task.eval_batch(logits, batch, NONE, jnp.ones(1))
  metrics = task.eval_metrics({k: np.asarray(v) for k, v in values.items()})
  assert metrics["cer"] == pytest.approx(1 / 3)  # one insertion (2) over 3 tokens
  assert metrics["wer"] == pytest.approx(1 / 2)  # [1 2] for [1]: one substitution, 2 words
  assert np.isfinite(metrics["loss"])


def test_seq2seq_token_accuracy_ignores_padding():
  task = tasks.Seq2Seq(num_classes=3)
  logits = jnp.eye(3)[jnp.array([[0, 1, 2, 2]])] * 3.0
  batch = {"targets": jnp.array([[0, 1, 0, 1]]),
           "target_paddings": jnp.array([[0, 0, 0, 1.0]])}
  metrics = _eval(task, logits, batch, [1.0])
  assert metrics["token_accuracy"] == pytest.approx(2 / 3)
  terms = task.terms(logits[:, None], batch, NONE)
  np.testing.assert_array_equal(terms.valid, [[1, 1, 1, 0]])
