"""wav2vec2 fine-tuning recipes as retraining protocols, shared by
experiments/configs/superb_ks_wav2vec2_paper.py and ctc_wav2vec2_large_paper.py.

Each recipe retrains a Hugging Face checkpoint converted with experiments/convert.py
(`config.protocol.init_checkpoint`) two ways with the same budget (steps and batch):
  control   the recipe's optimiser (AdamW, linear decay after a 10 % warm-up), no SPG: the
            standard fine-tuning run, the same-budget control;
  spg_hpo   the same with SPG-HPO where the reference attaches it (classification: the
            768-d frames before the projector; CTC: the last hidden states before lm_head).
SPG as the authors' code ran it: T = 3, lambdas 0.4/0.2/0.1, the reference replica
(zero-initialised Linear + ReLU: pure dropout), the masked loss, loss normalisation off (the
reference's intent for audio, and what its code does). Not implemented here, unlike
Hugging Face's examples: freezing the conv feature encoder, SpecAugment and LayerDrop.

The `:quick` variants train a tiny wav2vec2 from scratch (a 4-step base stage: no checkpoint
needed) on the same dataset, read from the small folder a test writes.
"""
from __future__ import annotations

from typing import Any, Mapping

import ml_collections
from ml_collections import config_dict

from experiments import paper_recipes
from spg_jax import config as config_lib

WARMUP_RATIO = 0.1


def spg_settings(config: ml_collections.ConfigDict, rate: float) -> None:
  """The reference's SPG settings (see the module docstring); no BatchNorm in wav2vec2."""
  config.spg.enabled = True
  config.spg.kind = "hpo"
  paper_recipes.reference_spg(config, rate, base_denominator="valid", head_batch_stats="base")


def arms() -> ml_collections.ConfigDict:
  """control (standard fine-tuning, no SPG) and spg_hpo."""
  out = ml_collections.ConfigDict()
  out.control = ml_collections.ConfigDict({"spg": {"enabled": False}})
  out.spg_hpo = ml_collections.ConfigDict({"spg": {"enabled": True, "kind": "hpo"}})
  return out


def wav2vec2_recipe(dataset: str, *, model_kwargs: Mapping[str, Any],
                    task: Mapping[str, Any], learning_rate: float, batch_size: int,
                    num_steps: int, eval_every: int, rate: float = 0.1,
                    seeds: tuple = (0, 1, 2), eval_batch_size: int = 64,
                    preprocess: Mapping[str, Any] | None = None,
                    accumulation_steps: int = 1) -> ml_collections.ConfigDict:
  """A wav2vec2 retraining protocol without a base stage (init_checkpoint required):
  AdamW (Hugging Face's betas 0.9 / 0.999, eps 1e-8, no weight decay), linear decay to 0
  after a warm-up of `WARMUP_RATIO` of the updates.

  Args:
    batch_size: the micro-batch; `accumulation_steps` of them make one optimizer update
      (Hugging Face's `gradient_accumulation_steps`; 1: none).
    num_steps, eval_every: in optimizer updates, as Hugging Face counts them; the config's
      step counts are micro-batches (`x accumulation_steps`, see `spg_jax.config`).
  """
  k = accumulation_steps
  config = config_lib.base_config()
  config.model.name = "wav2vec2"
  config.model.kwargs = ml_collections.ConfigDict(dict(model_kwargs))
  config.dataset.name = dataset
  config.dataset.data_dir = config_dict.placeholder(str)
  for key, value in (preprocess or {}).items():
    config.dataset.preprocess[key] = value
  for key, value in task.items():
    config.task[key] = value
  config.batch_size = batch_size
  config.eval_batch_size = eval_batch_size
  config.log_every_steps = 50
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = learning_rate
  config.optimizer.weight_decay = 0.0
  config.optimizer.accumulation_steps = k
  config.schedule.name = "linear"
  config.schedule.warmup_steps = k * int(round(WARMUP_RATIO * num_steps))
  config.checkpoint.every_steps = 0
  config.progress_bar = False
  spg_settings(config, rate)
  config.num_steps = k * num_steps
  config.eval_every_steps = k * eval_every
  p = ml_collections.ConfigDict()
  p.seeds = seeds
  p.init_checkpoint = config_dict.placeholder(str)
  p.reference = "control"
  p.confidence = 0.95
  p.retrain = ml_collections.ConfigDict({"num_steps": k * num_steps,
                                         "eval_every_steps": k * eval_every})
  p.arms = arms()
  config.protocol = p
  return config


def quick(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The quick variant for CPU tests: a one-layer wav2vec2 32 wide with the tiny conv stack
  (`wav2vec2("tiny")`), batches of 4, one seed, a 4-step base stage from scratch and
  4-step arms; the same pipeline, optimiser, schedule shape, arms and SPG settings (a
  recipe with gradient accumulation keeps it, with 2 micro-batches per update)."""
  k = min(config.optimizer.accumulation_steps, 2)
  config.optimizer.accumulation_steps = k
  config.model.kwargs.size = "tiny"
  config.model.kwargs.num_hidden_layers = 1
  config.batch_size = 4
  config.eval_batch_size = 4
  config.num_devices = 1  # batches of 4: one device (tests may fake 8 CPU devices)
  config.log_every_steps = 2
  config.schedule.warmup_steps = k  # one update
  config.num_steps = 4
  config.eval_every_steps = 2
  p = config.protocol
  p.seeds = (0,)
  p.base = ml_collections.ConfigDict({"num_steps": 4, "eval_every_steps": 2,
                                      "optimizer": {"learning_rate": 1e-3}})
  p.retrain.num_steps = 4
  p.retrain.eval_every_steps = 2
  return config
