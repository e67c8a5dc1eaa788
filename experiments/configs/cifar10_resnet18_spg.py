"""CIFAR-10 with ResNet-18 (CIFAR stem), SPG-HPO (T=3). Needs the TFDS data prepared once:
`tfds build cifar10 --file_format=array_record --data_dir=DIR`, then `--config.dataset.data_dir=DIR`.

The quick variant keeps this config's data pipeline, optimizer, schedule and SPG settings but
swaps in the tiny `cnn_digits` CNN (it pools globally, so it takes 32x32x3 inputs) and runs a
few steps: it checks the plumbing on CPU (the tests run it under `tfds.testing.mock_data`).
"""
from spg_jax import config as config_lib

_STEPS_PER_EPOCH = 45_000 // 128  # 90% of the 50k training images; 10% is validation


def get_config(arg: str | None = None):
  config = config_lib.base_config()
  config.model.name = "resnet18"
  config.model.kwargs.stem = "cifar"
  config.dataset.name = "cifar10"
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.num_steps = 60 * _STEPS_PER_EPOCH
  config.log_every_steps = 100
  config.eval_every_steps = 5 * _STEPS_PER_EPOCH
  config.optimizer.learning_rate = 0.1
  config.optimizer.weight_decay = 5e-4
  config.schedule.name = "cosine"
  config.schedule.warmup_steps = _STEPS_PER_EPOCH
  config.checkpoint.every_steps = 5 * _STEPS_PER_EPOCH
  # SPG settings, named explicitly (spg_jax.config.base_config documents each): the paper's
  # replica and no loss normalisation, this library's defaults.
  config.spg.use_relu = False
  config.spg.normalize = "none"
  if config_lib.variant(arg) == "quick":
    config_lib.quick_tiny_model(config)
    config.schedule.warmup_steps = 1
  return config
