"""The full config schema with defaults; every experiment config starts from `base_config()`.

Fields (all read by `spg_jax.trainer.train_and_evaluate`; checked by
`spg_jax.config_validation.validate_config` before anything compiles):

  seed: int, fixes the initialisation, the data order and every dropout mask.
  model.name: a `spg_jax.models.names()` entry; model.kwargs: its constructor arguments
    (`num_classes` is taken from the dataset unless given).
  dataset.name: a `spg_jax.data.names()` entry; dataset.data_dir: TFDS data directory
    (None: $TFDS_DATA_DIR or ~/tensorflow_datasets); dataset.validation_fraction: share of
    the training data held out for model selection, in (0, 1).
  batch_size / eval_batch_size: global batch sizes (multiples of the device count).
  num_steps: training steps; log_every_steps: train-metric logging interval;
    eval_every_steps: validation interval (validation also runs at the last step).
  optimizer.name: "sgd" (momentum, the reference default) or "adamw"; learning_rate (peak),
    momentum (SGD), weight_decay, nesterov (SGD).
  schedule.name: "constant", "step" (x decay_factor every decay_every_steps steps) or
    "cosine"; warmup_steps: linear warm-up (0: none).
  spg.enabled: train with SPG replicas (False: the base model alone, plain cross-entropy).
    kind: "hpo" (adaptive dropout) or "nas" (extra depth); num_replicas: T; rate: one
    dropout rate or T of them (HPO); lambdas: T replica weights; depth: layers/blocks per
    replica; use_relu: ReLU after each replica Linear (reference); form: "masked"
    (reference HPO) or "reinforce" (return-weighted, reference NAS); normalize: "none",
    "loss" (scale the loss by stop_gradient(exp(L_base - L_total)), the reference for
    vision) or "lr" (write the same factor into the optimizer's injected `lr_scale`);
    label_smoothing: for every step's cross-entropy.
  controller.enabled: move the replicas' dropout rates online (spg_jax.controller);
    every_steps; target_survival: wanted fraction of episodes that survive each replica;
    step_size; min_rate / max_rate: bounds of the rates.
  checkpoint.every_steps: save interval (0: only at the end); keep: checkpoints kept.
  eval_test: evaluate the test split once, with the best-on-validation params, at the end.
  num_devices: devices on the 'data' mesh axis (0: all visible).
  multihost: join a multi-process JAX cluster first (experiments/main.py calls
    `experiments.distributed.initialize` with the `distributed` fields).
  distributed.coordinator_address ("host:port" of process 0), num_processes, process_id:
    all three, or none (None: JAX detects the cluster on TPU pods, Slurm, Open MPI);
    distributed.local_device_count: CPU devices per process (None: JAX's default).
  skip_nonfinite: False (default): a non-finite loss, gradient or update stops the run
    with an error naming the step and the first non-finite term, keeping the last
    checkpoint. True: such steps are skipped inside the compiled step (params and
    optimizer state unchanged) and counted in the logged `train/skipped_steps`.
  progress_bar: tqdm console progress bar (steps/s, ETA).
"""
import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
  """Defaults: the MNIST-1D CNN with SPG-HPO (T=3, reference lambdas and rate)."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.model = ml_collections.ConfigDict()
  config.model.name = "cnn1d_mnist1d"
  config.model.kwargs = ml_collections.ConfigDict()

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "mnist1d"
  config.dataset.data_dir = config_dict.placeholder(str)
  config.dataset.validation_fraction = 0.1

  config.batch_size = 128
  config.eval_batch_size = 512
  config.num_steps = 2000
  config.log_every_steps = 100
  config.eval_every_steps = 500

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.05
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 0.0
  config.optimizer.nesterov = False

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = "constant"
  config.schedule.decay_every_steps = 0
  config.schedule.decay_factor = 0.5
  config.schedule.warmup_steps = 0

  # Not type-safe so that `rate` may be one shared float or a per-replica tuple.
  config.spg = ml_collections.ConfigDict(type_safe=False)
  config.spg.enabled = True
  config.spg.kind = "hpo"
  config.spg.num_replicas = 3
  config.spg.rate = 0.2
  config.spg.lambdas = (0.4, 0.2, 0.1)
  config.spg.depth = 1
  config.spg.use_relu = True
  config.spg.form = "masked"
  config.spg.normalize = "loss"
  config.spg.label_smoothing = 0.0

  config.controller = ml_collections.ConfigDict()
  config.controller.enabled = False
  config.controller.every_steps = 100
  config.controller.target_survival = 0.9
  config.controller.step_size = 0.05
  config.controller.min_rate = 0.0
  config.controller.max_rate = 0.5

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 0
  config.checkpoint.keep = 2

  config.eval_test = True
  config.num_devices = 0
  config.multihost = False
  config.distributed = ml_collections.ConfigDict()
  config.distributed.coordinator_address = config_dict.placeholder(str)
  config.distributed.num_processes = config_dict.placeholder(int)
  config.distributed.process_id = config_dict.placeholder(int)
  config.distributed.local_device_count = config_dict.placeholder(int)
  config.skip_nonfinite = False
  config.progress_bar = True
  return config


def quick(config: ml_collections.ConfigDict, *, num_steps: int = 100,
          batch_size: int = 64) -> ml_collections.ConfigDict:
  """Shrinks a config for a CPU run of seconds (the "quick" variant of every config)."""
  config.num_steps = num_steps
  config.batch_size = batch_size
  config.eval_batch_size = 256
  config.log_every_steps = max(num_steps // 4, 1)
  config.eval_every_steps = max(num_steps // 2, 1)
  config.checkpoint.every_steps = 0
  return config


def quick_tiny_model(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Quick variant of a large-model config: the same data pipeline, optimizer, schedule and
  SPG settings with the tiny `cnn_digits` CNN (global pooling, any image size), 4 steps of
  batch 8: a CPU check of the plumbing (tests run it under `tfds.testing.mock_data`)."""
  config.model.name = "cnn_digits"
  config.model.kwargs = ml_collections.ConfigDict()
  quick(config, num_steps=4, batch_size=8)
  config.eval_batch_size = 8
  return config


def variant(arg: str | None) -> str:
  """Validates the `--config=path:ARG` variant name ("" / None: full, or "quick")."""
  arg = arg or ""
  if arg not in ("", "quick"):
    raise ValueError(f"config variant {arg!r}: must be '' (full) or 'quick'")
  return arg
