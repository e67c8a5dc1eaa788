"""Semantic segmentation on the procedurally drawn `shapes` set with the CPU-sized FCN
(`fcn_small`: a main and an auxiliary head, as torchvision's FCN), SPG-HPO (T=3) on both
heads: every labelled pixel is its own episode; checkpoints are selected on mIoU.

  python -m experiments.main --config=experiments/configs/shapes_fcn_spg.py --workdir=/tmp/shapes
  python -m experiments.main --config=experiments/configs/shapes_fcn_spg.py:quick ...  # CPU, s

Embedded data (drawn with numpy at first use, no download). The dropout rate is the
reference's segmentation rate (0.1, FCN-ResNet50).
"""
from spg_jax import config as config_lib


def get_config(arg: str | None = None):
  config = config_lib.base_config()
  config.model.name = "fcn_small"
  config.dataset.name = "shapes"
  config.task.name = "segmentation"
  config.batch_size = 32
  config.eval_batch_size = 200
  config.num_steps = 1500
  config.log_every_steps = 50
  config.eval_every_steps = 250
  config.optimizer.learning_rate = 0.05
  config.schedule.name = "cosine"
  config.spg.rate = 0.1
  if config_lib.variant(arg) == "quick":
    config_lib.quick(config, num_steps=8, batch_size=16)
    config.eval_batch_size = 200
  return config
