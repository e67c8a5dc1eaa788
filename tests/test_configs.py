"""Every experiment config builds, validates and trains 2 steps in its quick variant; bad
values raise one-line errors naming the field; main.py exits non-zero without a workdir."""
import importlib
import pathlib
import subprocess
import sys

import pytest

from experiments.configs import common
from spg_jax import config_validation, data, trainer

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG_NAMES = sorted(p.stem for p in (ROOT / "experiments" / "configs").glob("*.py")
                      if p.stem not in ("__init__", "common"))


def _load(name, arg=None):
  return importlib.import_module(f"experiments.configs.{name}").get_config(arg)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_builds_and_validates(name):
  for arg in (None, "quick"):
    config = _load(name, arg)
    if "protocol" not in config:  # protocol configs are checked by the protocol's tests
      config_validation.validate_config(config)


@pytest.mark.parametrize("name", [n for n in CONFIG_NAMES if "protocol" not in _load(n)])
def test_quick_variant_runs_two_steps(name, tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = _load(name, "quick")
  config.num_steps = 2
  config.num_devices = 1
  config.progress_bar = False
  with tfds.testing.mock_data(num_examples=24):  # only TFDS datasets read it
    result = trainer.train_and_evaluate(config, str(tmp_path))
  assert result.num_steps == 2
  assert 0.0 <= result.best_val_accuracy <= 1.0
  assert data.dataset_info(config.dataset.name).num_classes == \
      result.final_variables["params"]["head"]["kernel"].shape[-1]


BAD_VALUES = [
    ("seed", -1, "config.seed=-1"),
    ("model.name", "resnet7", "config.model.name='resnet7'"),
    ("dataset.name", "mnist2d", "config.dataset.name='mnist2d'"),
    ("dataset.validation_fraction", 0.0, "config.dataset.validation_fraction=0.0"),
    ("batch_size", 0, "config.batch_size=0"),
    ("optimizer.name", "lion", "config.optimizer.name='lion'"),
    ("optimizer.learning_rate", -0.1, "config.optimizer.learning_rate=-0.1"),
    ("optimizer.momentum", 1.0, "config.optimizer.momentum=1.0"),
    ("schedule.name", "linear", "config.schedule.name='linear'"),
    ("schedule.decay_factor", 0.0, "config.schedule.decay_factor=0.0"),
    ("spg.kind", "nas2", "config.spg.kind='nas2'"),
    ("spg.num_replicas", 0, "config.spg.num_replicas=0"),
    ("spg.rate", 1.0, "config.spg.rate=1.0"),
    ("spg.rate", (0.1, 0.2), "config.spg.rate=(0.1, 0.2)"),
    ("spg.lambdas", (0.4, -0.2, 0.1), "config.spg.lambdas=(0.4, -0.2, 0.1)"),
    ("spg.lambdas", (0.4, 0.2), "config.spg.lambdas=(0.4, 0.2)"),
    ("spg.form", "ppo", "config.spg.form='ppo'"),
    ("spg.normalize", "yes", "config.spg.normalize='yes'"),
    ("controller.max_rate", 1.0, "config.controller.max_rate=1.0"),
    ("checkpoint.keep", 0, "config.checkpoint.keep=0"),
    ("skip_nonfinite", 1, "config.skip_nonfinite=1"),
    ("distributed.process_id", 0, "config.distributed=(None, None, 0)"),
    ("num_devices", 1000, "config.num_devices=1000"),
]


@pytest.mark.parametrize("field,value,message", BAD_VALUES)
def test_bad_value_raises_one_line_error_naming_the_field(field, value, message):
  config = common.base_config()
  *path, last = field.split(".")
  target = config
  for part in path:
    target = target[part]
  with target.ignore_type():
    target[last] = value
  with pytest.raises(ValueError) as info:
    config_validation.validate_config(config)
  text = str(info.value)
  assert text.startswith(message) and "\n" not in text


def test_batch_must_split_over_the_devices():
  config = common.base_config()
  config.num_devices, config.batch_size = 8, 12
  with pytest.raises(ValueError, match=r"config.batch_size=12: must be a multiple of .* \(8\)"):
    config_validation.validate_config(config)


def test_main_reports_bad_value_and_writes_nothing(tmp_path):
  workdir = tmp_path / "run"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.main",
       "--config=experiments/configs/mnist1d_spg.py:quick", f"--workdir={workdir}",
       "--config.spg.form=ppo"],
      cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode != 0
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert errors == ["error: config.spg.form='ppo': must be one of ['masked', 'reinforce']"]
  assert not workdir.exists()
