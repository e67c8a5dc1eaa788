"""sklearn's 8x8 digits with a small BatchNorm CNN, SPG-HPO (T=3). Embedded data.

  python -m experiments.main --config=experiments/configs/digits_spg.py[:quick] --workdir=DIR
"""
from spg_jax import config as config_lib


def get_config(arg: str | None = None):
  config = config_lib.base_config()
  config.model.name = "cnn_digits"
  config.dataset.name = "digits"
  config.batch_size = 64
  config.num_steps = 1500
  config.eval_every_steps = 250
  config.optimizer.learning_rate = 0.05
  config.schedule.name = "cosine"
  # SPG settings, named explicitly (spg_jax.config.base_config documents each): the paper's
  # replica and no loss normalisation, this library's defaults.
  config.spg.use_relu = False
  config.spg.normalize = "none"
  if config_lib.variant(arg) == "quick":
    config_lib.quick(config, num_steps=60)
  return config
