"""The retraining protocol on sklearn's 8x8 digits with the small BatchNorm CNN: base from
scratch, then control / SPG-HPO / SPG-NAS with the same budget, 5 seeds. Embedded data.

  python -m experiments.main --config=experiments/configs/digits_protocol.py --workdir=DIR
  python -m experiments.main --config=experiments/configs/digits_protocol.py:quick ...  # tests
  python -m experiments.main --config=experiments/configs/digits_protocol.py:ablation ...

Full variant: control, dropout at the SPG rate (on the head's input), SPG-HPO, SPG-HPO
unmasked, SPG-NAS. `:ablation`: a longer-trained (converged) base, the cumulative-rate
dropout arms too, 10 seeds.

Digits has 1797 images: 20% test (359), and 10% of the rest (144) for validation, so one
test image is 0.28 pp: expect coarse accuracies and wide intervals.
"""
import ml_collections

from spg_jax import config as config_lib
from spg_jax import protocol_arms
from experiments.configs import mnist1d_protocol


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = mnist1d_protocol.run_config("cnn_digits", "digits", batch_size=64,
                                       eval_batch_size=384)
  variant = config_lib.variant(arg, extra=("ablation",))
  if variant == "quick":
    return mnist1d_protocol.quick_protocol(config, batch_size=64)
  if variant == "ablation":
    config.protocol = mnist1d_protocol.protocol_section(
        seeds=tuple(range(10)), base_steps=2000, retrain_steps=400, eval_every=50,
        base_lr=0.05, retrain_lr=0.005, spg=config.spg, arms=protocol_arms.DEFAULT_ARMS,
        cumulative=True)
    return config
  config.protocol = mnist1d_protocol.protocol_section(
      seeds=(0, 1, 2, 3, 4), base_steps=800, retrain_steps=400, eval_every=100,
      base_lr=0.05, retrain_lr=0.01, spg=config.spg, arms=protocol_arms.DEFAULT_ARMS)
  return config
