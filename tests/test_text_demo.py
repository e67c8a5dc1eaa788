"""The offline text demo (experiments/configs/synthetic_text_protocol.py): its SYNTHETIC
data (spg_jax.data.synthetic_text) follows its stated rule, is fixed by its seeds, tokenises
without [UNK] through the vocabulary built on the fly, and its SPG-HPO arm trains."""
import numpy as np

from spg_jax import config as config_lib
from spg_jax import data
from spg_jax import protocol as protocol_lib
from spg_jax.data import synthetic_text, text_sources
from spg_jax.train import loop

from experiments.configs import synthetic_text_protocol


def rule(sentence):
  """The label by the module docstring's rule, parsed back from the text."""
  votes = 0
  for clause in sentence.rstrip(".").replace(" but ", " and ").split(" and "):
    words = clause.split()
    assert words[0] == "the" and words[1] in synthetic_text.NOUNS and words[2] == "was"
    negated = words[3] == "not"
    adjective = words[-1]
    assert adjective in synthetic_text.POSITIVE + synthetic_text.NEGATIVE
    vote = 1 if adjective in synthetic_text.POSITIVE else -1
    votes += -vote if negated else vote
  return int(votes > 0)


def test_sentences_follow_the_rule_and_the_seed():
  sentences, labels = synthetic_text.generate(500, seed=7)
  assert [rule(s) for s in sentences] == labels.tolist()
  again, labels_again = synthetic_text.generate(500, seed=7)
  assert again == sentences and np.array_equal(labels_again, labels)
  assert synthetic_text.generate(50, seed=8)[0] != sentences[:50]
  assert 0.35 < labels.mean() < 0.65  # both classes well represented
  # Word order matters: some sentences differ only in where "not" is and disagree.
  assert any(" not " in s for s in sentences) and any(s.count(" was ") == 3 for s in sentences)


def test_splits_tokenise_without_unknown_tokens():
  tok = synthetic_text.tokenizer()
  vocab = synthetic_text.vocabulary()
  assert vocab[:5] == ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
  sizes = {}
  for split in ("train", "validation", "test"):
    source = data.make_source("synthetic_text", split, validation_fraction=0.1)
    sizes[split] = len(source)
    ids = np.stack([source[i]["input_ids"] for i in range(len(source))])
    assert not (ids == vocab.index("[UNK]")).any()
    assert (ids[:, 0] == vocab.index("[CLS]")).all()
    # The longest sentence (3 clauses) fits in max_length 32: nothing is cut off.
    lengths = np.stack([source[i]["attention_mask"] for i in range(len(source))]).sum(1)
    assert lengths.max() < 32
  assert sizes == {"train": 3600, "validation": 400, "test": 1000}
  assert len(tok.encode(["the plot was not dull."], None, max_length=16)["input_ids"][0]) == 16
  # The carved validation rows are not trained on.
  train_rows = text_sources.split_rows(4000, "train", 0.1)
  assert not set(train_rows) & set(text_sources.split_rows(4000, "validation", 0.1))


def test_demo_config_and_its_spg_arm_trains(tmp_path):
  config = synthetic_text_protocol.get_config()
  assert config.model.kwargs.num_hidden_layers == 2 and config.model.kwargs.vocab_size == len(
      synthetic_text.vocabulary())
  assert tuple(config.protocol.seeds) == (0, 1, 2)
  assert sorted(config.protocol.arms) == ["control", "spg_hpo"]
  assert config.spg.normalize == "none"
  arms = protocol_lib.arm_stage_configs(config, 0)
  assert len({(c.num_steps, c.batch_size) for c in arms.values()}) == 1  # same budget
  quick = protocol_lib.arm_stage_configs(synthetic_text_protocol.get_config("quick"), 0)
  arm = quick["spg_hpo"]
  arm.num_steps = arm.eval_every_steps = 2
  arm.num_devices = 1
  config_lib.validate_config(arm)
  result = loop.train_and_evaluate(arm, str(tmp_path))
  assert result.num_steps == 2 and 0.0 <= result.test_metrics["accuracy"] <= 1.0
  assert {"accuracy", "f1", "matthews"} <= set(result.test_metrics)
