"""The paper's vision recipes as retraining protocols (shared by experiments/configs/*_paper.py).

Each recipe starts from a public torchvision checkpoint converted with experiments/convert.py
(`config.protocol.init_checkpoint`, required: these protocols have no base stage) and
retrains it three ways with the same budget: continued training without SPG ("control",
the standard fine-tuning the paper compares with), SPG-HPO and SPG-NAS. SPG runs as the
authors' code ran it ("reference" settings: no effective loss normalisation, the
reference's ReLU replica, T = 3, lambdas 0.4/0.2/0.1); the per-recipe files say where each
value comes from and what is not known.
"""
from __future__ import annotations

import ml_collections

from spg_jax import config as config_lib

IMAGENET_TRAIN_IMAGES = 1_281_167
IMAGENET_VALIDATION_FRACTION = 0.01  # held out of train for selection; val2012 = test
REFERENCE_LAMBDAS = (0.4, 0.2, 0.1)


def imagenet_steps_per_epoch(batch_size: int) -> int:
  """Training steps per epoch on the 99 % of ImageNet's train split that is trained on."""
  return int(IMAGENET_TRAIN_IMAGES * (1 - IMAGENET_VALIDATION_FRACTION)) // batch_size


def reference_spg(config: ml_collections.ConfigDict, rate: float, *,
                  base_denominator: str = "all", head_batch_stats: str = "every_step") -> None:
  """SPG as the authors' code ran it: T = 3, lambdas (0.4, 0.2, 0.1), one dropout rate,
  the reference replica (zero-initialised Linear then ReLU: pure dropout), the masked loss
  (the NAS arm overrides it with the return-weighted one), no loss normalisation (the
  reference's normalisation multiplies by exactly 1), the base term averaged over every
  pixel (ignored ones included), and a BatchNorm in the shared head updated by every
  trajectory step, as torch's 1 + T calls of the head do. `base_denominator` /
  `head_batch_stats`: these vision defaults; the text and audio recipes pass "valid" and
  "base" (no pixels, no BatchNorm in their heads)."""
  config.spg.num_replicas = 3
  config.spg.lambdas = REFERENCE_LAMBDAS
  config.spg.rate = rate
  config.spg.depth = 1
  config.spg.use_relu = True
  config.spg.form = "masked"
  config.spg.normalize = "none"
  config.spg.base_denominator = base_denominator
  config.spg.head_batch_stats = head_batch_stats


def arms() -> ml_collections.ConfigDict:
  """control (continued training), spg_hpo (masked loss) and spg_nas (reinforce loss)."""
  out = ml_collections.ConfigDict()
  out.control = ml_collections.ConfigDict({"spg": {"enabled": False}})
  out.spg_hpo = ml_collections.ConfigDict({"spg": {"enabled": True, "kind": "hpo"}})
  out.spg_nas = ml_collections.ConfigDict({"spg": {"enabled": True, "kind": "nas",
                                                   "form": "reinforce"}})
  return out


def set_protocol(config: ml_collections.ConfigDict, seeds: tuple, num_steps: int,
                 eval_every_steps: int) -> None:
  """Gives `config` a protocol section without a base stage (`init_checkpoint` must be
  given) whose arms train `num_steps`; the run-level budget equals it, so the evaluation of
  the checkpoint uses the same settings."""
  config.num_steps = num_steps
  config.eval_every_steps = eval_every_steps
  config.protocol = protocol(seeds, num_steps, eval_every_steps)


def protocol(seeds: tuple, num_steps: int, eval_every_steps: int
             ) -> ml_collections.ConfigDict:
  """A protocol section without a base stage: `init_checkpoint` must be given."""
  p = ml_collections.ConfigDict()
  p.seeds = seeds
  p.init_checkpoint = ml_collections.config_dict.placeholder(str)
  p.reference = "control"
  p.confidence = 0.95
  p.retrain = ml_collections.ConfigDict({"num_steps": num_steps,
                                         "eval_every_steps": eval_every_steps})
  p.arms = arms()
  return p


def imagenet_recipe(model: str, *, batch_size: int, epochs: int, learning_rate: float,
                    weight_decay: float, rate: float, decay_every_epochs: int = 10,
                    decay_factor: float = 0.5, label_smoothing: float = 0.0,
                    seeds: tuple = (0, 1, 2), model_kwargs: dict | None = None,
                    preprocess: dict | None = None) -> ml_collections.ConfigDict:
  """An ImageNet-1K retraining protocol: SGD with momentum 0.9 (torchvision's reference
  script), step decay, validation every epoch, a checkpoint every epoch.

  `model_kwargs`: the model's constructor arguments (e.g. torch's BatchNorm running-variance
  rule, the reference attachment); `preprocess`: `config.dataset.preprocess` values (e.g.
  EfficientNet-V2-M's 480 evaluation size)."""
  steps_per_epoch = imagenet_steps_per_epoch(batch_size)
  config = config_lib.base_config()
  config.model.name = model
  config.model.kwargs = ml_collections.ConfigDict(model_kwargs or {})
  config.dataset.name = "imagenet2012"
  for key, value in (preprocess or {}).items():
    config.dataset.preprocess[key] = value
  config.dataset.validation_fraction = IMAGENET_VALIDATION_FRACTION
  config.batch_size = batch_size
  config.eval_batch_size = 1000
  config.log_every_steps = 200
  config.optimizer.name = "sgd"
  config.optimizer.momentum = 0.9
  config.optimizer.learning_rate = learning_rate
  config.optimizer.weight_decay = weight_decay
  config.schedule.name = "step"
  config.schedule.decay_every_steps = decay_every_epochs * steps_per_epoch
  config.schedule.decay_factor = decay_factor
  config.checkpoint.every_steps = steps_per_epoch
  config.checkpoint.keep = 2
  config.progress_bar = False
  reference_spg(config, rate)
  config.spg.label_smoothing = label_smoothing
  set_protocol(config, seeds, epochs * steps_per_epoch, steps_per_epoch)
  return config


def quick(config: ml_collections.ConfigDict, tiny_model: str = "cnn_digits"
          ) -> ml_collections.ConfigDict:
  """The recipe's quick variant for CPU tests under `tfds.testing.mock_data`: the same data
  pipeline, optimizer, schedule shape and SPG settings, with a tiny model, one seed, a
  4-step base stage trained from scratch (so no checkpoint is needed) and 4-step arms."""
  config.model.name = tiny_model
  config.model.kwargs = ml_collections.ConfigDict()
  config.batch_size = 8
  config.eval_batch_size = 8
  config.log_every_steps = 2
  config.checkpoint.every_steps = 0
  config.dataset.validation_fraction = 0.25  # 1 % of a mock split is empty
  if config.schedule.name == "step":
    config.schedule.decay_every_steps = 2
  config.schedule.warmup_steps = min(config.schedule.warmup_steps, 1)
  p = config.protocol
  p.seeds = (0,)
  p.base = ml_collections.ConfigDict({"num_steps": 4, "eval_every_steps": 2,
                                      "optimizer": {"learning_rate": 0.05}})
  p.retrain.num_steps = 4
  p.retrain.eval_every_steps = 2
  return config
