"""The paper's vision recipes (experiments/configs/*_paper.py): each is a protocol with a
same-budget control arm, SPG-HPO and SPG-NAS that starts from a converted checkpoint, runs
SPG with the authors' settings, and whose quick variant runs end to end under mock data."""
import importlib
import os
import pathlib

import pytest

from experiments import main as experiments_main
from spg_jax import protocol

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECIPES = sorted(p.stem for p in (ROOT / "experiments" / "configs").glob("*_paper.py"))
MODELS = {"imagenet_resnet50_paper": "resnet50", "imagenet_mobilenet_v2_paper": "mobilenet_v2",
          "imagenet_efficientnet_v2_m_paper": "efficientnet_v2_m",
          "imagenet_vit_b16_paper": "vit_b16", "coco_voc_fcn_resnet50_paper": "fcn_resnet50"}


def _config(name, arg=None):
  return importlib.import_module(f"experiments.configs.{name}").get_config(arg)


def test_every_paper_row_has_a_recipe():
  assert set(RECIPES) == set(MODELS)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_needs_a_checkpoint_and_names_its_spg_settings(name, tmp_path):
  config = _config(name)
  assert config.model.name == MODELS[name]
  with pytest.raises(ValueError, match=r"^config\.protocol\.init_checkpoint=None: this "
                                       r"protocol has no base stage"):
    protocol.validate_protocol(config)
  config.protocol.init_checkpoint = str(tmp_path)
  protocol.validate_protocol(config)
  arms = protocol.arm_stage_configs(config, 0)
  assert list(arms) == ["control", "spg_hpo", "spg_nas"]
  assert not arms["control"].spg.enabled
  for arm, kind, form in (("spg_hpo", "hpo", "masked"), ("spg_nas", "nas", "reinforce")):
    spg = arms[arm].spg
    assert (spg.enabled, spg.kind, spg.form) == (True, kind, form)
    assert (spg.num_replicas, tuple(spg.lambdas), spg.normalize, spg.use_relu) == (
        3, (0.4, 0.2, 0.1), "none", True)
  budgets = {(c.num_steps, c.batch_size) for c in arms.values()}
  assert len(budgets) == 1  # same budget in every arm


def test_quick_recipe_runs_and_evaluate_mode_reproduces_its_base_row(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = _config("imagenet_resnet50_paper", "quick")
  config.num_devices = 1
  workdir = str(tmp_path / "protocol")
  with tfds.testing.mock_data(num_examples=24):
    result = protocol.run_protocol(config, workdir, log=lambda _: None, command="pytest")
    assert result.arms == ["base", "control", "spg_hpo", "spg_nas"]
    base_export = os.path.join(workdir, "exports", "base", "seed_0")
    config = _config("imagenet_resnet50_paper", "quick")
    config.num_devices = 1
    config.mode = "evaluate"
    config.protocol.init_checkpoint = base_export
    metrics = experiments_main.evaluate_only(config, str(tmp_path / "eval"))
  assert metrics["test"]["accuracy"] == pytest.approx(result.scores["base"][0], abs=1e-6)
  assert (tmp_path / "eval" / "evaluation.json").exists()
