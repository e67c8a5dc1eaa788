"""The task registry and the seam's shared behaviour (`spg_jax.tasks`, `tasks.base`):
building from `config.task` with one-line errors, batch rules that run on the host and in
jit alike, selection direction."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spg_jax import tasks


def test_names_and_fields():
  assert tasks.names() == ("classification", "segmentation", "sequence_classification",
                           "sequence_regression", "extractive_qa", "ctc", "seq2seq")
  assert tasks.fields("classification") == ("top_k",)
  assert tasks.fields("ctc") == ("inputs", "blank_id", "threshold", "word_delimiter",
                                 "zero_infinity")


@pytest.mark.parametrize("given, message", [
    ({"name": "detection"}, r"config\.task\.name='detection': must be one of \["),
    ({"name": "classification", "topk": 3},
     r"config\.task\.topk: not a field of task 'classification' \(its fields: \['top_k'\]\)"),
    ({"name": "classification", "top_k": 0}, r"config\.task\.top_k=0: must be an integer"),
    ({"name": "ctc", "threshold": 0.0}, r"config\.task\.threshold=0\.0: must be in \(0, 1\]"),
    ({"name": "ctc", "blank_id": 9}, r"config\.task\.blank_id=9: must be in \[0, 5\)"),
    ({"name": "sequence_regression", "metric": "r2"}, r"config\.task\.metric='r2'"),
    ({"name": "seq2seq", "inputs": ()}, r"config\.task\.inputs=\(\): must be a non-empty"),
])
def test_bad_task_config_is_one_line_naming_the_field(given, message):
  with pytest.raises(ValueError, match=message) as info:
    tasks.build(given, num_classes=5)
  assert "\n" not in str(info.value)


def test_build_fills_the_dataset_facts_and_lists_become_tuples():
  task = tasks.build({"name": None, "inputs": ["a", "b"]}, 4, default_name="seq2seq")
  assert task == tasks.Seq2Seq(num_classes=4, inputs=("a", "b"))
  assert hash(task) == hash(tasks.Seq2Seq(num_classes=4, inputs=("a", "b")))
  seg = tasks.build({"name": "segmentation"}, 6, ignore_label=255)
  assert (seg.num_classes, seg.ignore_label) == (6, 255)


def test_batch_rules_agree_on_host_and_in_jit():
  task = tasks.build({"name": "segmentation"}, 3, ignore_label=255)
  good = {"input": np.zeros((2, 2, 2, 3), np.float32),
          "label": np.array([[[0, 255], [2, 1]]] * 2, np.int32)}
  bad = {"input": good["input"].copy(), "label": good["label"].copy()}
  bad["input"][0, 0, 0, 0] = np.nan
  bad["label"][1, 1, 1] = 3
  for batch, expected in ((good, {"input": True, "label": True}),
                          (bad, {"input": False, "label": False})):
    assert jax.device_get(task.check_batch(batch)) == expected
    assert jax.device_get(jax.jit(task.check_batch)(batch)) == expected
  assert task.describe_bad_field("label", bad) == (
      "holds values in [0, 3], outside [0, 3) or the ignore label 255 (the model's classes)")
  assert [(c.field, c.problem) for c in task.batch_checks()] == [
      ("input", "holds NaN or Inf"),
      ("label", "holds values outside [0, 3) other than the ignore label 255")]


def test_text_tasks_check_every_input_and_build_dict_inputs():
  task = tasks.build({"name": "sequence_classification"}, 2)
  assert task.input_features == ("input_ids", "token_type_ids", "attention_mask")
  features = {k: type("F", (), {"shape": (4,), "dtype": "int32"})()
              for k in task.input_features}
  dummy = task.dummy_input(features, batch_size=3)
  assert {k: (v.shape, v.dtype) for k, v in dummy.items()} == {
      k: ((3, 4), jnp.int32) for k in task.input_features}
  assert [c.field for c in task.batch_checks()] == ["inputs", "label"]


def test_selection_direction():
  assert tasks.build({"name": "ctc"}, 5).better(0.2, 0.3)  # WER: lower is better
  assert not tasks.build({"name": "classification"}, 5).better(0.2, 0.3)
  mse = tasks.build({"name": "sequence_regression", "metric": "mse"}, 1)
  assert mse.selection_mode == "min" and mse.better(1.0, 2.0)
  assert tasks.build({"name": "segmentation"}, 5).better(0.0, None)


def test_features_the_task_reads_must_exist():
  task = tasks.build({"name": "extractive_qa"}, 0)
  with pytest.raises(ValueError, match=r"dataset 'squadish' has no feature 'input_ids'"):
    task.check_features({"input": None, "label": None}, "squadish")
