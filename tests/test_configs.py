"""Every experiment config builds, validates and trains 2 steps in its quick variant;
main.py reports a bad value in one line and writes nothing."""
import importlib
import pathlib
import subprocess
import sys

import pytest

from spg_jax import config as config_lib
from spg_jax import data
from spg_jax.train import loop

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG_NAMES = sorted(p.stem for p in (ROOT / "experiments" / "configs").glob("*.py")
                      if p.stem != "__init__")


def _load(name, arg=None):
  return importlib.import_module(f"experiments.configs.{name}").get_config(arg)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_builds_and_validates(name):
  for arg in (None, "quick"):
    config = _load(name, arg)
    if "protocol" not in config:  # protocol configs are checked by the protocol's tests
      config_lib.validate_config(config)


# The fields where the authors' code differs from the paper or its own intent: every config
# must name them itself rather than inherit the library's defaults (docs/FAITHFULNESS.md).
FIDELITY_FIELDS = ("use_relu", "normalize")
SEGMENTATION_FIELDS = ("base_denominator", "head_batch_stats")


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_names_its_normalisation_and_replica_settings(name, monkeypatch):
  """Built on a base config whose defaults are poisoned, every config still ends with
  valid values of these fields: it sets them itself (in every variant and protocol arm)."""
  real = config_lib.base_config

  def poisoned():
    config = real()
    for field in FIDELITY_FIELDS + SEGMENTATION_FIELDS:
      config.spg[field] = "unset"
    return config
  monkeypatch.setattr(config_lib, "base_config", poisoned)
  for arg in (None, "quick"):
    config = _load(name, arg)
    # The base term's denominator and the head's BatchNorm updates matter for segmentation.
    segmentation = config.task.name == "segmentation" or config.dataset.name == "shapes"
    fields = FIDELITY_FIELDS + (SEGMENTATION_FIELDS if segmentation else ())
    for field in fields:
      assert config.spg[field] != "unset", f"{name}:{arg} inherits spg.{field}"


@pytest.mark.parametrize("name", [n for n in CONFIG_NAMES if "protocol" not in _load(n)])
def test_quick_variant_runs_two_steps(name, tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = _load(name, "quick")
  config.num_steps = 2
  config.num_devices = 1
  config.progress_bar = False
  with tfds.testing.mock_data(num_examples=24):  # only TFDS datasets read it
    result = loop.train_and_evaluate(config, str(tmp_path))
  assert result.num_steps == 2
  assert 0.0 <= result.best_val_score <= 1.0
  head = result.final_variables["params"]["head"]
  kernel = head["kernel"] if "kernel" in head else head["classifier"]["kernel"]
  assert data.dataset_info(config.dataset.name).num_classes == kernel.shape[-1]


def test_main_reports_bad_value_and_writes_nothing(tmp_path):
  workdir = tmp_path / "run"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.main",
       "--config=experiments/configs/mnist1d_spg.py:quick", f"--workdir={workdir}",
       "--config.spg.form=ppo"],
      cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode != 0
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert errors == ["error: config.spg.form='ppo': must be one of ['masked', 'reinforce', "
                    "'unmasked']"]
  assert not workdir.exists()
