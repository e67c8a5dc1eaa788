"""The BERT paper recipes (GLUE, SQuAD v1.1): every task's config builds with the paper's
values and selects and logs its GLUE metric; STS-B's quick arm trains a regression on tiny
files the test writes (the whole protocols through the command line:
tests/test_text_main.py)."""
import importlib

import numpy as np
import pytest

from spg_jax import config as config_lib
from spg_jax import data
from spg_jax import protocol as protocol_lib
from spg_jax.train import engine
from spg_jax.train import loop

import text_fixtures as files


def _load(name, arg):
  return importlib.import_module(f"experiments.configs.{name}").get_config(arg)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  root = tmp_path_factory.mktemp("recipes")
  files.write_vocab(root / "vocab.txt")
  return root


@pytest.mark.parametrize("task, lr, batch, epochs", [
    ("cola", 2.5e-5, 32, 6), ("sst2", 3e-5, 64, 5), ("rte", 5e-5, 32, 5), ("qqp", 2e-5, 32, 10)])
def test_glue_recipes_carry_the_paper_values(task, lr, batch, epochs):
  config = _load("glue_bert_paper", task)
  assert config.dataset.name == f"glue/{task}"
  assert (config.optimizer.name, config.optimizer.learning_rate, config.batch_size) == (
      "adamw", lr, batch)
  assert config.schedule.name == "linear"
  assert config.num_steps == epochs * config.checkpoint.every_steps
  assert config.spg.normalize == "none"
  arms = protocol_lib.arm_stage_configs(config, 0)
  assert list(arms) == ["control", "finetune_hf", "spg_hpo"]
  assert arms["finetune_hf"].optimizer.learning_rate == 5e-5
  assert len({(c.num_steps, c.batch_size) for c in arms.values()}) == 1
  for arm in arms.values():
    arm.num_devices = 1
    config_lib.validate_config(arm)


def test_squad_recipe_and_bad_argument():
  config = _load("squad_bert_paper", None)
  assert (config.optimizer.learning_rate, config.batch_size, config.dataset.name) == (
      3e-5, 12, "squad_v1")
  assert dict(config.dataset.preprocess) == {"tokenizer": None, "max_length": 384,
                                             "stride": 128}
  assert config.model.kwargs.head_type == "qa" and config.model.kwargs.vocab_size == 30522
  with pytest.raises(ValueError, match=r"^config argument 'wnli': the task must be one of"):
    _load("glue_bert_paper", "wnli")


# GLUE's metrics per task (Wang et al. 2019, Table 1): (selection metric, every metric GLUE
# reports for it). MRPC and QQP report accuracy and F1, STS-B Pearson and Spearman.
GLUE_METRICS = {
    "cola": ("matthews", {"matthews"}), "sst2": ("accuracy", {"accuracy"}),
    "mrpc": ("f1", {"accuracy", "f1"}), "qqp": ("accuracy", {"accuracy", "f1"}),
    "stsb": ("pearson", {"pearson", "spearman"}), "mnli": ("accuracy", {"accuracy"}),
    "mnli_mismatched": ("accuracy", {"accuracy"}), "qnli": ("accuracy", {"accuracy"}),
    "rte": ("accuracy", {"accuracy"})}


@pytest.mark.parametrize("task", sorted(GLUE_METRICS))
def test_every_glue_task_selects_and_logs_its_glue_metric(task):
  config = _load("glue_bert_paper", f"{task}-quick")
  info = data.dataset_info(config.dataset.name, {"max_length": 32})
  built = engine.build_task(config, info)
  selection, reported = GLUE_METRICS[task]
  assert built.selection_metric == selection
  classes = {"stsb": 1, "mnli": 3, "mnli_mismatched": 3}.get(task, 2)
  assert built.num_classes == info.num_classes == classes
  if classes == 1:  # STS-B: regression, correlations over the whole split
    assert built.name == "sequence_regression"
    totals = {"prediction": np.array([0.5, 2.0, 4.5, 3.0]), "label": np.array([1., 2., 5., 2.5])}
  else:
    assert built.name == "sequence_classification"
    totals = {"confusion": np.eye(classes) * 3 + 1, "loss": np.array(1.0),
              "count": np.array(10.0)}
  logged = built.eval_metrics(totals)
  assert reported <= set(logged)
  assert config.dataset.preprocess.max_length == 32
  test_split = {"mnli": "validation_matched", "mnli_mismatched": "validation_mismatched"}
  assert info.tfds_test_split == test_split.get(task, "validation")  # test labels hidden


def _arm(name, arg, data_dir, tokenizer, arm_name="spg_hpo"):
  config = _load(name, arg)
  arm = protocol_lib.arm_stage_configs(config, 0)[arm_name]
  arm.dataset.data_dir = str(data_dir)
  arm.dataset.preprocess.tokenizer = str(tokenizer)
  arm.num_steps = 2
  arm.eval_every_steps = 2
  arm.num_devices = 1
  config_lib.validate_config(arm)
  return arm


def test_stsb_quick_arm_trains_a_regression_and_logs_correlations(root, tmp_path):
  # The control arm (no SPG): one compile less. The classification and QA recipes run whole
  # through the command line in tests/test_text_main.py.
  folder = files.write_glue(root, "stsb")
  arm = _arm("glue_bert_paper", "stsb-quick", folder, root / "vocab.txt", "control")
  result = loop.train_and_evaluate(arm, str(tmp_path))
  assert result.num_steps == 2
  assert {"pearson", "spearman", "mse"} <= set(result.test_metrics)
  assert -1.0 <= result.test_metrics["spearman"] <= 1.0


@pytest.mark.parametrize("config_name, arg, checkpoint, head, classes", [
    ("glue_bert_paper", "cola", "bert-base-cased", "sequence", 2),
    ("glue_bert_paper", "mnli", "bert-base-cased", "sequence", 3),
    ("glue_bert_paper", "stsb", "bert-base-cased", "sequence", 1),
    ("squad_bert_paper", None, "bert-base-uncased", "qa", 2),
])
def test_recipe_model_is_the_converted_checkpoints(config_name, arg, checkpoint, head, classes):
  """The model a recipe builds is the one `experiments/convert.py` makes of the full-size
  checkpoint (its config.json and key manifest, as stored by the golden script): the same
  architecture, so `protocol.init_checkpoint` loads without a mismatch."""
  import json  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top
  from spg_jax import models  # pylint: disable=g-import-not-at-top
  from spg_jax.models import convert  # pylint: disable=g-import-not-at-top
  from spg_jax.models.convert import common  # pylint: disable=g-import-not-at-top
  golden = pathlib.Path(__file__).parent / "golden" / "huggingface" / "bert.json"
  record = json.loads(golden.read_text())["full_size"][checkpoint]
  shapes = common.shapes_from_manifest(record["models"]["BertModel"]["manifest"])
  options = {"head": head} if head == "qa" else {"head": head, "num_classes": classes}
  info = convert.check_shapes("huggingface", "bert", shapes, record["config"], **options)
  converted = info.build()
  config = _load(config_name, arg)
  kwargs = dict(config.model.kwargs)
  recipe = models.get(config.model.name, num_classes=classes, **kwargs)
  assert recipe.config == converted.config
  assert recipe.head_type == converted.head_type == head
  if head == "sequence":
    assert recipe.num_classes == converted.num_classes == classes
