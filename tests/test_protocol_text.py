"""results.md says where the validation split comes from, per dataset: a dataset with its own
split (the audio datasets, a user's ArrayDataset) is not described as a share of the training
data; and a run with gradient accumulation says what its steps and batch are."""
import importlib

import pytest

from spg_jax import protocol
from spg_jax import report
from tests import fake_models


def _config(name, arg="quick"):
  return importlib.import_module(f"experiments.configs.{name}").get_config(arg)


def _fake_result(arms, seeds=(0, 1)):
  runs = {arm: [protocol.RunRecord(arm, s, 0.9, 4, 0.9, 4, 1.0, f"exports/{arm}/seed_{s}",
                                   ([0.0, 4.0], [0.9, 0.9]), []) for s in seeds]
          for arm in arms}
  metric = report.Metric("accuracy", percent=True, higher_is_better=True)
  return protocol.ProtocolResult(list(seeds), list(arms), "control", 0.95, metric,
                                 {a: [0.9 + 0.01 * s for s in seeds] for a in arms}, runs,
                                 "results.md", "results.png", 1.0)


OWN = "the dataset's own split; `dataset.validation_fraction` does not apply"


@pytest.mark.parametrize("dataset,own", [("spoken_digits", True), ("speech_commands", True),
                                         ("librispeech", True), ("mnist1d", False),
                                         ("digits", False), ("synthetic_text", False)])
def test_validation_description_per_dataset(dataset, own):
  config = _config("mnist1d_protocol")
  config.dataset.name = dataset
  config.dataset.validation_fraction = 0.2
  text = protocol.validation_description(config)
  assert text == (OWN if own else "20% of the training data, the same examples for every seed")


def test_user_dataset_has_its_own_split_and_unknown_names_claim_nothing():
  config = _config("mnist1d_protocol")
  assert protocol.validation_description(config, fake_models.dataset("classification")) == OWN
  config.dataset.name = "my_own_data"
  assert protocol.validation_description(config) == "the dataset's validation split"


def test_results_markdown_of_an_audio_protocol_names_its_own_split_and_accumulation():
  config = _config("superb_ks_wav2vec2_paper", "")  # speech_commands, 4 micro-batches/update
  arms = ["base"] + list(config.protocol.arms)
  text = protocol.results_markdown(config, _fake_result(arms), "python -m x")
  assert f"validation split ({OWN})" in text and "% of the training data" not in text
  assert ("5320 steps of batch 48 x 4 accumulated (steps are micro-batches, one optimizer "
          "update per 4), validation every 532 steps") in text
  carved = protocol.results_markdown(_config("mnist1d_protocol"),
                                     _fake_result(["base", "control"]), "python -m x")
  assert "validation split (10% of the training data, the same examples for every seed)" \
      in carved
  assert "accumulated" not in carved


def test_arms_with_other_accumulation_are_another_budget():
  config = _config("mnist1d_protocol")
  config.protocol.arms.spg_hpo.optimizer = {"accumulation_steps": 2}
  with pytest.raises(ValueError, match=r"^config\.protocol\.arms: every arm needs the same "
                     r"optimizer\.accumulation_steps \(same budget\), got \{'control': 1, "
                     r".*'spg_hpo': 2"):
    protocol.arm_stage_configs(config, 0)
