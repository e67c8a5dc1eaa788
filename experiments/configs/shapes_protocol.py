"""The retraining protocol on semantic segmentation: `fcn_small` on the procedurally drawn
`shapes` set, base from scratch, then control / SPG-HPO / SPG-NAS with the same budget,
selected on validation mIoU, 5 seeds. Embedded data, no download.

  python -m experiments.main --config=experiments/configs/shapes_protocol.py --workdir=DIR
  python -m experiments.main --config=experiments/configs/shapes_protocol.py:quick ...  # tests

SPG acts per pixel on both of the model's heads (main and auxiliary, loss out + 0.5 aux as
torchvision's FCN recipe); the dropout rate is the reference's segmentation rate, 0.1. The
full variant also runs plain dropout 0.1 on the main head's input map and SPG-HPO unmasked.
"""
import ml_collections

from experiments.configs import mnist1d_protocol
from spg_jax import config as config_lib
from spg_jax import protocol_arms


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = mnist1d_protocol.run_config("fcn_small", "shapes", batch_size=16,
                                       eval_batch_size=200)
  config.task.name = "segmentation"
  config.spg.rate = 0.1
  # AdamW: within a CPU budget it learns the shapes faster than SGD with momentum here (300
  # steps of batch 32 from scratch, validation mIoU: SGD lr 0.05 0.17, lr 0.2 0.18; AdamW lr
  # 3e-3 0.21, lr 1e-2 0.21).
  config.optimizer.name = "adamw"
  config.optimizer.weight_decay = 1e-4
  if config_lib.variant(arg) == "quick":
    return mnist1d_protocol.quick_protocol(config, batch_size=16, eval_batch_size=200)
  # Sized to finish in under 10 minutes on 2 CPU cores (measured in experiments/RESULTS.md):
  # the base is far from converged (a 900-step AdamW run of batch 32 reached about 0.45
  # validation mIoU); the comparison is between arms retrained from the same checkpoint.
  config.protocol = mnist1d_protocol.protocol_section(
      seeds=(0, 1, 2, 3, 4), base_steps=500, retrain_steps=150, eval_every=50,
      base_lr=3e-3, retrain_lr=3e-4, spg=config.spg, arms=protocol_arms.DEFAULT_ARMS)
  return config
