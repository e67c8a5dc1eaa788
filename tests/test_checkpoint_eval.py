"""Evaluate-only: a saved base model's metrics on validation and test, no training
(`spg_jax.train.checkpoint_eval`, `experiments.main --config.mode=evaluate`)."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from spg_jax import config as config_lib
from spg_jax.train import checkpoint_eval
from spg_jax.train import checkpointing

import fake_models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config():
  config = config_lib.base_config()
  config.model.name = "fake_classification"  # a label only: the model is passed in
  config.task.name = "classification"
  config_lib.quick(config, num_steps=1, batch_size=8)
  config.eval_batch_size = 8  # 12 examples: the second batch is padded and masked
  config.num_devices = 1
  return config


def _exported(tmp_path, num_classes=3):
  model = fake_models.Classifier(num_classes=num_classes)
  variables = model.init(jax.random.key(3), np.zeros((1, 5), np.float32), train=False)
  path = str(tmp_path / f"export_{num_classes}")
  checkpointing.export_variables(path, variables)
  return model, variables, path


def test_metrics_equal_a_direct_computation_on_every_example(tmp_path):
  model, variables, path = _exported(tmp_path)
  dataset = fake_models.dataset("classification")
  out = checkpoint_eval.evaluate_checkpoint(_config(), path, model=model, dataset=dataset)
  assert list(out) == ["validation", "test"]
  for split in ("validation", "test"):
    arrays = dataset.splits[split]
    logits, _ = model.apply(variables, arrays["input"], train=False)
    expected = float(np.mean(np.argmax(np.asarray(logits), -1) == arrays["label"]))
    assert out[split]["accuracy"] == pytest.approx(expected, abs=1e-6)
    assert out[split]["top5_accuracy"] == pytest.approx(1.0)  # 3 classes: always in top 5


def test_a_checkpoint_of_another_model_is_one_line_naming_the_field(tmp_path):
  model, _, _ = _exported(tmp_path, num_classes=3)
  _, _, other = _exported(tmp_path, num_classes=4)
  with pytest.raises(ValueError, match=r"^config\.init_checkpoint\['params'\]\['head'\]") as e:
    checkpoint_eval.evaluate_checkpoint(_config(), other, model=model,
                                        dataset=fake_models.dataset("classification"),
                                        field="config.init_checkpoint")
  assert "\n" not in str(e.value) and "(4,)" in str(e.value) and "(3,)" in str(e.value)


@pytest.mark.parametrize("bad", [None, "", 3])
def test_a_checkpoint_that_is_not_a_path_is_refused(bad):
  with pytest.raises(ValueError, match="must be the directory of an exported model"):
    checkpoint_eval.load_checkpoint(bad, "config.init_checkpoint")


def test_a_missing_directory_and_a_bad_split_are_refused(tmp_path):
  with pytest.raises(ValueError, match="no such directory"):
    checkpoint_eval.load_checkpoint(str(tmp_path / "nope"))
  _, variables, _ = _exported(tmp_path)
  with pytest.raises(ValueError, match=r"splits=\('val',\): must be a non-empty subset"):
    checkpoint_eval.evaluate_checkpoint(_config(), variables, splits=("val",))


def _main(*args, cwd=REPO):
  return subprocess.run([sys.executable, "-m", "experiments.main", *args], cwd=cwd,
                        capture_output=True, text=True, timeout=300)


def test_evaluate_mode_on_the_command_line(tmp_path):
  """A registry model and embedded data: the printed metrics and evaluation.json agree with
  the library call; a missing checkpoint is exit 2 in one line and writes nothing."""
  config = config_lib.base_config()
  config_lib.quick(config)
  from spg_jax import models  # pylint: disable=import-outside-toplevel
  model = models.get(config.model.name, num_classes=10)
  model_variables = model.init(jax.random.key(0), np.zeros((1, 40, 1), np.float32),
                               train=False)
  path = str(tmp_path / "export")
  checkpointing.export_variables(path, model_variables)
  workdir = tmp_path / "eval"
  cfg = os.path.join(REPO, "experiments/configs/mnist1d_spg.py:quick")
  done = _main(f"--config={cfg}", f"--workdir={workdir}", "--config.mode=evaluate",
               f"--config.init_checkpoint={path}")
  assert done.returncode == 0, done.stderr[-2000:]
  saved = json.loads((workdir / "evaluation.json").read_text())
  expected = checkpoint_eval.evaluate_checkpoint(config, path)
  for split in ("validation", "test"):
    assert saved["metrics"][split]["accuracy"] == pytest.approx(
        expected[split]["accuracy"], abs=1e-6)
    assert f"{split}: accuracy={expected[split]['accuracy']:.6g}" in done.stdout
  missing = tmp_path / "eval2"
  bad = _main(f"--config={cfg}", f"--workdir={missing}", "--config.mode=evaluate",
              f"--config.init_checkpoint={tmp_path / 'nope'}")
  assert bad.returncode == 2
  assert bad.stderr.strip().count("\n") == 0 and "no such directory" in bad.stderr
  assert not missing.exists()
