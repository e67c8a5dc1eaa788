"""MNIST-1D with the paper's CNN, SPG-HPO (T=3). Embedded data, no download.

  python -m experiments.main --config=experiments/configs/mnist1d_spg.py --workdir=/tmp/m1d
  python -m experiments.main --config=experiments/configs/mnist1d_spg.py:quick ...  # CPU, s
"""
from spg_jax import config as config_lib


def get_config(arg: str | None = None):
  config = config_lib.base_config()
  config.model.name = "cnn1d_mnist1d"
  config.dataset.name = "mnist1d"
  config.num_steps = 3000
  config.optimizer.learning_rate = 0.05
  config.schedule.name = "cosine"
  # SPG settings, named explicitly (spg_jax.config.base_config documents each): the paper's
  # replica and no loss normalisation, this library's defaults.
  config.spg.use_relu = False
  config.spg.normalize = "none"
  if config_lib.variant(arg) == "quick":
    config_lib.quick(config, num_steps=100)
  return config
