"""MNIST-1D with the paper's CNN, SPG-HPO (T=3). Embedded data, no download.

  python -m experiments.main --config=experiments/configs/mnist1d_spg.py --workdir=/tmp/m1d
  python -m experiments.main --config=experiments/configs/mnist1d_spg.py:quick ...  # CPU, s
"""
from experiments.configs import common


def get_config(arg: str | None = None):
  config = common.base_config()
  config.model.name = "cnn1d_mnist1d"
  config.dataset.name = "mnist1d"
  config.num_steps = 3000
  config.optimizer.learning_rate = 0.05
  config.schedule.name = "cosine"
  if common.variant(arg) == "quick":
    common.quick(config, num_steps=100)
  return config
