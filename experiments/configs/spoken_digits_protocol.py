"""The retraining protocol on the espeak-ng spoken digits with a small log-mel CNN: base from
scratch, then control / dropout / SPG-HPO / SPG-HPO unmasked / SPG-NAS with the same
budget, 5 seeds. The audio is synthesised locally (`apt-get install -y espeak-ng`; `make`
installs it), nothing is downloaded.

  python -m experiments.main --config=experiments/configs/spoken_digits_protocol.py --workdir=DIR
  python -m experiments.main --config=experiments/configs/spoken_digits_protocol.py:quick ...
  python -m experiments.main --config=experiments/configs/spoken_digits_protocol.py:ablation ...

`:ablation`: a converged base (300 steps: about 98 % test), the cumulative-rate dropout arms
too, 10 seeds.

The set (`spg_jax.data.spoken_digits`): "zero".."nine" in 8 espeak-ng voices at random
speeds and pitches, placed at random in 1 s of 16 kHz audio with white noise at 10-30 dB
SNR; 60 clips per word for training, 10 for validation, 20 for test (one test clip is
0.5 pp). The model (`audio_cnn`): log-mel front-end, three strided 1-D convs, mean pooling,
a 128-d feature layer (where SPG attaches), the head. The first run generates the clips
into `--config.dataset.data_dir` (default ~/.cache/spg_jax), about 25 s.
"""
import ml_collections

from spg_jax import config as config_lib
from spg_jax import protocol_arms
from experiments.configs import mnist1d_protocol

# The waveform and its sample mask (all ones here: fixed 1 s clips).
INPUTS = ("input_values", "attention_mask")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = config_lib.variant(arg, extra=("ablation",))
  config = mnist1d_protocol.run_config("audio_cnn", "spoken_digits", batch_size=32,
                                       eval_batch_size=100)
  config.task.inputs = INPUTS
  # Sized for under 10 minutes on 2 CPU cores: a 120-step base (6 epochs of the 600
  # training clips; about 94 % test accuracy: room left for the arms), then every arm
  # 120 steps at a 5x lower learning rate, validated every 40 steps.
  if variant == "quick":
    # 2 clips per word for training, 1 for validation and test: generated in ~1 s.
    config.dataset.preprocess.train_per_word = 2
    config.dataset.preprocess.validation_per_word = 1
    config.dataset.preprocess.test_per_word = 1
    config = mnist1d_protocol.quick_protocol(config, batch_size=8, eval_batch_size=8)
    config.protocol.seeds = (0,)
    config.num_devices = 1  # tests may fake 8 CPU devices; one is faster here
    return config
  if variant == "ablation":
    config.protocol = mnist1d_protocol.protocol_section(
        seeds=tuple(range(10)), base_steps=300, retrain_steps=120, eval_every=40,
        base_lr=0.05, retrain_lr=0.01, spg=config.spg, arms=protocol_arms.DEFAULT_ARMS,
        cumulative=True)
    return config
  config.protocol = mnist1d_protocol.protocol_section(
      seeds=(0, 1, 2, 3, 4), base_steps=120, retrain_steps=120, eval_every=40,
      base_lr=0.05, retrain_lr=0.01, spg=config.spg, arms=protocol_arms.DEFAULT_ARMS)
  return config
