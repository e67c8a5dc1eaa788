"""The paper's BERT recipes (GLUE, SQuAD v1.1) as retraining protocols, shared by
experiments/configs/glue_bert_paper.py and squad_bert_paper.py.

Each recipe retrains a Hugging Face checkpoint converted with experiments/convert.py
(`config.protocol.init_checkpoint`) three ways with the same budget (steps and batch):
  control      the recipe's optimiser (AdamW, linear decay), no SPG: the same-budget control;
  finetune_hf  standard fine-tuning with Hugging Face's default optimiser values (Trainer:
               lr 5e-5, no warm-up, no weight decay) inside the same budget (the protocol
               requires equal steps and batch; HF's default budget of 3 epochs at batch 8 is
               a separate run: override num_steps / batch_size);
  spg_hpo      the recipe with SPG-HPO on the pooled output (sequence heads) or the sequence
               output (QA).
AdamW as Hugging Face's (betas 0.9 / 0.999, eps 1e-8), linear decay to 0 after the warm-up.
Not reproduced: the Trainer's gradient clipping at norm 1.0 (`max_grad_norm`; spg_jax's
optimisers have no clipping), the same in every arm.
"""
from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from experiments import paper_recipes
from spg_jax import config as config_lib

HF_DEFAULT_LR = 5e-5
# The tiny vocabulary of the quick variants' test files fits in this many ids.
QUICK_VOCAB = 512


def steps_per_epoch(train_examples: int, validation_fraction: float, batch_size: int) -> int:
  """Steps per epoch on the part of the official train split that is trained on."""
  return max(int(train_examples * (1 - validation_fraction)) // batch_size, 1)


def spg_settings(config: ml_collections.ConfigDict, rate: float) -> None:
  """SPG as the authors' code ran it: T = 3, lambdas (0.4, 0.2, 0.1), depth 1, the
  reference replica (zero-initialised Linear then ReLU: pure dropout), the masked loss, no
  loss normalisation (see the recipe modules for why), the base term over real episodes
  (QA windows whose answer lies outside are ignored, as Hugging Face's loss ignores them)
  and no BatchNorm anywhere (head_batch_stats has nothing to update)."""
  paper_recipes.reference_spg(config, rate, base_denominator="valid", head_batch_stats="base")


def arms() -> ml_collections.ConfigDict:
  """control, finetune_hf and spg_hpo (see the module docstring)."""
  out = ml_collections.ConfigDict()
  out.control = ml_collections.ConfigDict({"spg": {"enabled": False}})
  out.finetune_hf = ml_collections.ConfigDict({
      "spg": {"enabled": False},
      "optimizer": {"learning_rate": HF_DEFAULT_LR, "weight_decay": 0.0},
      "schedule": {"warmup_steps": 0}})
  out.spg_hpo = ml_collections.ConfigDict({"spg": {"enabled": True, "kind": "hpo"}})
  return out


def bert_recipe(dataset: str, *, vocab_size: int, head_type: str, metric: str | None,
                learning_rate: float, batch_size: int, epochs: int, train_examples: int,
                validation_fraction: float, max_length: int, rate: float = 0.1,
                weight_decay: float = 0.0, warmup_ratio: float = 0.0,
                evals_per_epoch: int = 2, seeds: tuple = (0, 1, 2),
                extra_preprocess: dict | None = None) -> ml_collections.ConfigDict:
  """A BERT-base retraining protocol without a base stage (init_checkpoint required)."""
  per_epoch = steps_per_epoch(train_examples, validation_fraction, batch_size)
  num_steps = epochs * per_epoch
  config = config_lib.base_config()
  config.model.name = "bert"
  config.model.kwargs = ml_collections.ConfigDict(
      {"size": "base", "head_type": head_type, "vocab_size": vocab_size})
  config.dataset.name = dataset
  config.dataset.validation_fraction = validation_fraction
  config.dataset.preprocess.tokenizer = config_dict.placeholder(str)
  config.dataset.preprocess.max_length = max_length
  for key, value in (extra_preprocess or {}).items():
    config.dataset.preprocess[key] = value
  if metric is not None:
    config.task.metric = metric
  config.batch_size = batch_size
  config.eval_batch_size = 128
  config.log_every_steps = 50
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = learning_rate
  config.optimizer.weight_decay = weight_decay
  config.schedule.name = "linear"
  config.schedule.warmup_steps = int(round(warmup_ratio * num_steps))
  config.checkpoint.every_steps = per_epoch
  config.checkpoint.keep = 2
  config.progress_bar = False
  spg_settings(config, rate)
  config.num_steps = num_steps
  config.eval_every_steps = max(per_epoch // evals_per_epoch, 1)
  p = ml_collections.ConfigDict()
  p.seeds = seeds
  p.init_checkpoint = config_dict.placeholder(str)
  p.reference = "control"
  p.confidence = 0.95
  p.retrain = ml_collections.ConfigDict({"num_steps": num_steps,
                                         "eval_every_steps": config.eval_every_steps})
  p.arms = arms()
  config.protocol = p
  return config


def quick(config: ml_collections.ConfigDict, max_length: int = 32
          ) -> ml_collections.ConfigDict:
  """The quick variant for CPU tests on tiny files: a one-layer BERT 32 wide with a
  vocabulary of `QUICK_VOCAB` ids, sequences of `max_length`, one seed, a 4-step base stage
  from scratch (no checkpoint needed) and 4-step arms; the same data pipeline, optimiser,
  schedule shape, arms and SPG settings."""
  config.model.kwargs.size = "tiny"
  config.model.kwargs.vocab_size = QUICK_VOCAB
  # One narrow layer: the tests compile it three times (base, control, SPG).
  config.model.kwargs.num_hidden_layers = 1
  config.model.kwargs.hidden_size = 32
  config.model.kwargs.num_attention_heads = 2
  config.model.kwargs.intermediate_size = 64
  config.model.kwargs.max_position_embeddings = max(64, max_length)
  config.dataset.preprocess.max_length = max_length
  config.dataset.validation_fraction = 0.25
  config.batch_size = 8
  config.eval_batch_size = 8
  config.log_every_steps = 2
  config.checkpoint.every_steps = 0
  config.schedule.warmup_steps = min(config.schedule.warmup_steps, 1)
  config.num_steps = 4
  config.eval_every_steps = 2
  p = config.protocol
  p.seeds = (0,)
  p.base = ml_collections.ConfigDict({"num_steps": 4, "eval_every_steps": 2,
                                      "optimizer": {"learning_rate": 1e-3}})
  p.retrain.num_steps = 4
  p.retrain.eval_every_steps = 2
  return config
