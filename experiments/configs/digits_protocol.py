"""The retraining protocol on sklearn's 8x8 digits with the small BatchNorm CNN: base from
scratch, then control / SPG-HPO / SPG-NAS with the same budget, 5 seeds. Embedded data.

  python -m experiments.main --config=experiments/configs/digits_protocol.py --workdir=DIR
  python -m experiments.main --config=experiments/configs/digits_protocol.py:quick ...  # tests

Digits has 1797 images: 20% test (359), and 10% of the rest (144) for validation, so one
test image is 0.28 pp: expect coarse accuracies and wide intervals.
"""
import ml_collections

from spg_jax import config as config_lib
from experiments.configs import mnist1d_protocol


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = mnist1d_protocol.run_config("cnn_digits", "digits", batch_size=64,
                                       eval_batch_size=384)
  if config_lib.variant(arg) == "quick":
    return mnist1d_protocol.quick_protocol(config, batch_size=64)
  config.protocol = mnist1d_protocol.protocol_section(
      seeds=(0, 1, 2, 3, 4), base_steps=800, retrain_steps=400, eval_every=100,
      base_lr=0.05, retrain_lr=0.01)
  return config
