"""Semantic segmentation on the procedurally drawn `shapes` set with the CPU-sized FCN
(`fcn_small`: a main and an auxiliary head, as torchvision's FCN), SPG-HPO (T=3) on both
heads: every labelled pixel is its own episode; checkpoints are selected on mIoU.

  python -m experiments.main --config=experiments/configs/shapes_fcn_spg.py --workdir=/tmp/shapes
  python -m experiments.main --config=experiments/configs/shapes_fcn_spg.py:quick ...  # CPU, s

Embedded data (drawn with numpy at first use, no download). The dropout rate is the
reference's segmentation rate (0.1, FCN-ResNet50), and the SPG settings are what the
authors' segmentation code ran.
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
  # What the authors' segmentation code ran (docs/FAITHFULNESS.md): their replica (Linear +
  # ReLU, which never learns: pure dropout), no normalisation in effect (their factor is
  # always 1), the base term averaged over every pixel (ignored ones add 0), and each of the
  # 1+T train-mode head applications updating the head's BatchNorm statistics.
  config.spg.use_relu = True
  config.spg.normalize = "none"
  config.spg.base_denominator = "all"
  config.spg.head_batch_stats = "every_step"
  if config_lib.variant(arg) == "quick":
    config_lib.quick(config, num_steps=8, batch_size=16)
    config.eval_batch_size = 200
  return config
