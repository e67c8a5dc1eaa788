"""Offline text demo on SYNTHETIC data: a 2-layer BERT on a procedurally generated sentence
task (`spg_jax.data.synthetic_text`: clauses "the plot was [not] dull" vote, "not" flips
the vote, the label is the majority; fixed seeds, vocabulary built on the fly), control vs
SPG-HPO over seeds. Runs on CPU in minutes, no download, no files.

  python -m experiments.main --config=experiments/configs/synthetic_text_protocol.py \
      --workdir=/tmp/text_demo

Per seed: train the BERT from scratch (no SPG), then retrain its best-on-validation
checkpoint two ways with the same budget and a lower learning rate: continued training
("control") and SPG-HPO on the pooled output. AdamW, linear decay. This is a plumbing and
protocol demo on toy data; its numbers say nothing about GLUE.
"""
import ml_collections

from experiments import text_recipes
from experiments.configs import mnist1d_protocol
from spg_jax import config as config_lib
from spg_jax.data import synthetic_text


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = config_lib.base_config()
  config.model.name = "bert"
  config.model.kwargs = ml_collections.ConfigDict({
      "size": "tiny", "head_type": "sequence", "vocab_size": synthetic_text.vocab_size(),
      "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2,
      "intermediate_size": 128, "max_position_embeddings": 64})
  config.dataset.name = "synthetic_text"
  config.dataset.validation_fraction = 0.1
  config.task.metric = "accuracy"
  config.batch_size = 32
  config.eval_batch_size = 500
  config.log_every_steps = 50
  config.optimizer.name = "adamw"
  config.optimizer.weight_decay = 0.0
  config.schedule.name = "linear"
  config.checkpoint.every_steps = 0
  config.progress_bar = False
  text_recipes.spg_settings(config, rate=0.1)
  base_steps, retrain_steps, seeds = 600, 200, (0, 1, 2)
  if config_lib.variant(arg) == "quick":
    base_steps, retrain_steps, seeds = 4, 4, (0,)
    config.batch_size = config.eval_batch_size = 8
  p = mnist1d_protocol.protocol_section(seeds=seeds, base_steps=base_steps,
                                        retrain_steps=retrain_steps,
                                        eval_every=max(retrain_steps // 4, 1),
                                        base_lr=1e-3, retrain_lr=2e-4)
  del p.arms["spg_nas"]  # HPO only: the demo compares control and SPG-HPO
  config.protocol = p
  config.num_steps = retrain_steps
  config.eval_every_steps = max(retrain_steps // 4, 1)
  return config
