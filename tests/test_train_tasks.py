"""One engine for every task: a 1-step end-to-end run per task with a user's model and
in-memory data (neither in the registry nor in the catalog), SPG-HPO on, through
`train_and_evaluate`; the task's metrics land in metrics.jsonl and select the checkpoint."""
import json

import jax
import numpy as np
import pytest

from spg_jax import config as config_lib
from spg_jax import tasks
from spg_jax.train import loop

import fake_models

# The selection metric and the other eval metrics each task must log.
EXPECTED = {
    "classification": ("accuracy", ("top5_accuracy", "loss")),
    "segmentation": ("mIoU", ("pixel_accuracy", "mean_class_accuracy", "loss")),
    "sequence_classification": ("accuracy", ("f1", "matthews", "loss")),
    "sequence_regression": ("pearson", ("spearman", "mse")),
    "extractive_qa": ("exact_match", ("span_f1", "start_accuracy", "end_accuracy")),
    "ctc": ("wer", ("cer", "loss")),
    "seq2seq": ("token_accuracy", ("loss",)),
}


def _config(task):
  config = config_lib.base_config()
  config.model.name = f"fake_{task}"  # a label only: the model is passed in
  config.task.name = task
  config_lib.quick(config, num_steps=1, batch_size=8)
  config.eval_batch_size = 8
  config.num_devices = 1
  config.progress_bar = False
  config.spg.rate = 0.2
  return config


def test_every_task_is_covered():
  assert set(EXPECTED) == set(tasks.names()) == set(fake_models.CASES)


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_one_step_run_per_task_logs_its_metrics(task, tmp_path):
  model, _, _ = fake_models.CASES[task]
  result = loop.train_and_evaluate(_config(task), str(tmp_path), model=model,
                                   dataset=fake_models.dataset(task))
  selection, others = EXPECTED[task]
  assert result.num_steps == 1 and result.selection_metric == selection
  assert np.isfinite(result.best_val_score) and np.isfinite(result.test_score)
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  train = [r for r in records if "train/loss" in r][-1]
  for name in ("loss_base", "loss_replicas_2", "survival_3", "mean_episode_length"):
    assert np.isfinite(train[f"train/{name}"]), name
  evals = [r for r in records if f"eval/{selection}" in r]
  assert evals and all(f"eval/{m}" in evals[-1] for m in others)
  assert any(f"test/{selection}" in r for r in records)
  # The exported model is the user's base model: replicas stripped.
  assert "replicas_0" not in result.best_variables["params"]
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0), _dummy(task), train=False))
  assert jax.tree.structure(expected["params"]) == \
      jax.tree.structure(result.best_variables["params"])


def _dummy(task):
  """The model's input for two training examples of `task`."""
  _, num_classes, ignore = fake_models.CASES[task]
  split = fake_models.dataset(task).splits["train"]
  return tasks.build({"name": task}, num_classes, ignore).model_input(
      {k: v[:2] for k, v in split.items()})


def test_a_task_field_is_validated_before_anything_runs(tmp_path):
  config = _config("sequence_classification")
  config.task.metric = "auc"
  with pytest.raises(ValueError, match=r"config\.task\.metric='auc': must be one of "):
    loop.train_and_evaluate(config, str(tmp_path / "run"),
                            model=fake_models.CASES["sequence_classification"][0],
                            dataset=fake_models.dataset("sequence_classification"))
  assert not (tmp_path / "run").exists()


def test_a_dataset_without_the_task_s_features_is_refused(tmp_path):
  config = _config("sequence_classification")
  with pytest.raises(ValueError, match=r"task\.name='sequence_classification': dataset "
                     r"'fake_classification' is a 'classification' dataset"):
    loop.train_and_evaluate(config, str(tmp_path), model=fake_models.CASES["classification"][0],
                            dataset=fake_models.dataset("classification"))
