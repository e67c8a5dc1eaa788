"""The paper's vision recipes (experiments/configs/*_paper.py): each is a protocol with a
same-budget control arm, SPG-HPO and SPG-NAS that starts from a converted checkpoint, runs
SPG with the authors' settings, and whose quick variant runs end to end under mock data."""
import importlib
import os
import pathlib

import pytest

from experiments import main as experiments_main
from spg_jax import models
from spg_jax import protocol
from spg_jax.train import loop

import test_data_coco_voc

ROOT = pathlib.Path(__file__).resolve().parents[1]
ALL_RECIPES = {p.stem for p in (ROOT / "experiments" / "configs").glob("*_paper.py")}
# The text and audio recipes have their own tests (test_text_recipes.py,
# test_audio_configs.py): other inputs, other arms.
OTHER_RECIPES = {"glue_bert_paper", "squad_bert_paper", "superb_ks_wav2vec2_paper",
                 "ctc_wav2vec2_large_paper"}
RECIPES = sorted(ALL_RECIPES - OTHER_RECIPES)
MODELS = {"imagenet_resnet50_paper": "resnet50", "imagenet_mobilenet_v2_paper": "mobilenet_v2",
          "imagenet_efficientnet_v2_m_paper": "efficientnet_v2_m",
          "imagenet_vit_b16_paper": "vit_b16", "coco_voc_fcn_resnet50_paper": "fcn_resnet50"}


def _config(name, arg=None):
  return importlib.import_module(f"experiments.configs.{name}").get_config(arg)


def test_every_paper_row_has_a_recipe():
  assert set(RECIPES) == set(MODELS) and OTHER_RECIPES <= ALL_RECIPES


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
  # The full-size model with the recipe's kwargs builds and gives both attachments (no
  # compilation: the kwargs are checked when the module is constructed).
  model = models.get(config.model.name, **config.model.kwargs)
  assert set(models.spg_attachments(model, "hpo")) == set(models.spg_attachments(model, "nas"))


@pytest.mark.parametrize("name", [r for r in RECIPES if r != "imagenet_resnet50_paper"])
def test_quick_recipe_trains_its_spg_arm_two_steps(name, tmp_path):
  """Each recipe's data pipeline, schedule and SPG settings with the tiny model (the ResNet-50
  recipe runs its whole protocol below): 2 steps of the SPG-HPO arm."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = _config(name, "quick")
  stage = protocol.arm_stage_configs(config, 0)["spg_hpo"]
  stage.num_steps, stage.eval_every_steps, stage.num_devices = 2, 2, 1
  if stage.dataset.name == "coco_voc":  # a tiny COCO folder, built as a user would
    from spg_jax.data import coco_voc  # pylint: disable=g-import-not-at-top
    coco_dir = test_data_coco_voc.write_coco(str(tmp_path / "coco"))
    stage.dataset.data_dir = str(tmp_path / "tfds")
    stage.batch_size = stage.eval_batch_size = 2  # the tiny set trains on a few images
    assert coco_voc.main([f"--coco_dir={coco_dir}",
                          f"--data_dir={stage.dataset.data_dir}"]) == 0
    result = loop.train_and_evaluate(stage, str(tmp_path / "run"))
  else:
    with tfds.testing.mock_data(num_examples=24):
      result = loop.train_and_evaluate(stage, str(tmp_path / "run"))
  assert result.num_steps == 2 and 0.0 <= result.best_val_score <= 1.0


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
