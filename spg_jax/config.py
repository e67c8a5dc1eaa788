"""The config schema of a run, its defaults and its validation: one place.

`base_config()` gives every field with its default; experiment configs start from it and
change what they need. `validate_config(config)` raises a one-line `ValueError` for the
first bad field, naming the field, the value and what is allowed, before anything is built
or compiled. Fields (all read by `spg_jax.train.train_and_evaluate`):

  mode: "train" (default: train, validate, keep the best checkpoint, test it) or
    "evaluate" (no training: experiments/main.py evaluates the exported checkpoint
    `protocol.init_checkpoint`, or else `init_checkpoint`, on the validation and test
    splits and prints the task's metrics; one of them must be set).
  init_checkpoint: None, or the directory of an exported `{"params", "batch_stats"}` tree
    (as `spg_jax.train.checkpointing.export_variables` writes it) that `mode="evaluate"`
    evaluates; a training run does not read it.
  seed: int, fixes the initialisation, the data order and every dropout mask.
  model.name: a `spg_jax.models.names()` entry; model.kwargs: its constructor arguments
    (`num_classes` is taken from the dataset unless given).
  task.name: a `spg_jax.tasks.names()` entry, or None for the dataset's own task; task.<field>:
    that task's fields (`spg_jax.tasks.fields(name)`, e.g. `top_k`, `metric`, `threshold`,
    CTC's `zero_infinity`: False (default, torch's): an impossible alignment's loss is +inf
    and stops the run; True: 0 with no gradient); the classes (and segmentation's ignore
    label) come from the dataset.
  dataset.name: a `spg_jax.data.names()` entry; dataset.data_dir: TFDS data directory
    (None: $TFDS_DATA_DIR or ~/tensorflow_datasets); dataset.validation_fraction: share of
    the training data held out for model selection, in (0, 1); dataset.preprocess: the
    dataset's preprocessing options (`spg_jax.data.catalog.PREPROCESS_OPTIONS`, e.g.
    ImageNet's `eval_resize_size` / `eval_crop_size`; empty or None values: the defaults).
  batch_size / eval_batch_size: global batch sizes (multiples of the device count); with
    gradient accumulation batch_size is the micro-batch.
  num_steps: training steps (train-step calls, one batch each: micro-batches with
    accumulation); log_every_steps: train-metric logging interval; eval_every_steps:
    validation interval (validation also runs at the last step); the checkpoint best on
    the task's selection metric is kept. Every step count of the config (these,
    schedule.*, checkpoint.every_steps, controller.every_steps) counts micro-batches.
  optimizer.name: "sgd" (momentum, the reference default) or "adamw"; learning_rate (peak),
    momentum (SGD), weight_decay, nesterov (SGD).
  optimizer.accumulation_steps: k >= 1 micro-batches per optimizer update (1, default: no
    accumulation). The mean of k micro-batch gradients is applied every k-th step
    (`optax.MultiSteps`; the update of one batch of k * batch_size with a mean-reduced
    loss); num_steps, eval_every_steps, schedule.warmup_steps and (step schedule)
    schedule.decay_every_steps must be multiples of k, so that every validation sees a
    finished update and the schedule, which counts updates, gets whole numbers of them.
    The accumulator costs one float32 copy of the trainable parameters.
    Logged train metrics are means over micro-batches (train/learning_rate: that of the
    last update); checkpoints keep the accumulated gradient, so a resumed run continues
    mid-cycle. BatchNorm statistics are updated per micro-batch (not those of the big
    batch), and SPG's masked loss normalises each micro-batch's replica terms by its own
    survivors (as Hugging Face's accumulation does), so it equals the big batch only where
    the micro-batches have the same survivors; a micro-batch skipped by skip_nonfinite is
    left out of its cycle (the update comes one step later; a run's last, unfinished
    cycle is then never applied).
  schedule.name: "constant", "step" (x decay_factor every decay_every_steps steps),
    "cosine" or "linear" (to 0 at num_steps, Hugging Face's default); warmup_steps: linear
    warm-up (0: none).
  spg.enabled: train with SPG replicas (False: the base model alone, plain cross-entropy).
    kind: "hpo" (adaptive dropout) or "nas" (extra depth); num_replicas: T; rate: one
    dropout rate or T of them (HPO); lambdas: T replica weights; depth: layers/blocks per
    replica; form: "masked" (reference HPO), "reinforce" (return-weighted, reference
    NAS) or "unmasked" (ablation: the masked form with every step counted for every
    sample); label_smoothing: for every step's cross-entropy (soft mixup/cutmix targets
    keep their mixture; the authors' code takes their argmax first).
    Where the authors' code differs from the paper or from its own intent, one field per
    behaviour (docs/FAITHFULNESS.md; the paper-recipe configs set the authors' values):
    use_relu: False (default): the paper's HPO replica, a residual Linear that learns
      (default because it is the method as published, and a replica that can adapt).
      True: the authors' replica (Linear then ReLU, zero-initialised), whose branch can
      never receive a gradient: it is built as parameter-free dropout.
    normalize: "none" (default: what the authors' runs did in effect, their factor being
      always 1), "loss" (what they intended: scale the loss by stop_gradient(exp(L_base -
      L_total))) or "lr" (the same factor on the step size through the optimizer's
      injected `lr_scale`; SGD only, where it equals "loss"). Default "none" because it is
      what the published numbers were trained with.
    base_denominator: "valid" (default) or "all": the base term's mean over real episodes,
      or over every pixel / token with ignored ones adding 0 (the authors' segmentation and
      seq2seq code). Default "valid": ignored pixels carry no label, and counting them
      shrinks the base term by the batch's ignored fraction against the replica terms
      (which average over real episodes in both).
    head_batch_stats: "base" (default) or "every_step": which train-mode applications of a
      shared head with BatchNorm (FCN's) update its running statistics: the base pass
      only, or each of the 1+T steps in order, base first (the authors' code). Default
      "base": the running statistics are what the deployed head normalises with, and it
      sees base features, not dropout-perturbed (HPO) or deeper (NAS) replica features.
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
  xla_cpu_conv: "default" (jaxlib's own CPU kernels) or "eigen" (on the CPU, convolutions
    and matrix products on XLA's Eigen kernels, YNNPACK for reductions only:
    `spg_jax.xla_cpu.CPU_OPTIONS`, passed to the jitted steps; jaxlib 0.10's YNNPACK
    convolution kernel gradient is several times slower, and with "eigen" the ResNet-18
    train step took 0.43-0.87 of the default's time here, experiments/RESULTS.md
    `cpu_profile` / `side_by_side`). No effect off the CPU. The results differ from the
    default's in float32 rounding (about 1e-6).
  skip_nonfinite: False (default): a non-finite loss, gradient or update stops the run
    with an error naming the step and the first non-finite term, keeping the last
    checkpoint. True: such steps are skipped inside the compiled step (params and
    optimizer state unchanged) and counted in the logged `train/skipped_steps`.
  max_skipped_fraction: with skip_nonfinite, the run fails (`NonFiniteError`; exit 3 from
    experiments/main.py) as soon as more than this fraction of the steps so far were
    skipped, counted at each log/eval point after at least 10 steps (default 0.1): a
    diverging run is an error, not a quiet success.
  progress_bar: tqdm console progress bar (steps/s, ETA).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import ml_collections
from ml_collections import config_dict

from spg_jax import losses
from spg_jax import models
from spg_jax import spg_model
from spg_jax import tasks
from spg_jax import validation
from spg_jax import xla_cpu
from spg_jax.train import optim


def base_config() -> ml_collections.ConfigDict:
  """Defaults: the MNIST-1D CNN with SPG-HPO (T=3, reference lambdas and rate), the
  paper's replica, no loss normalisation (see the module docstring for every field)."""
  config = ml_collections.ConfigDict()
  config.mode = "train"
  config.init_checkpoint = config_dict.placeholder(str)
  config.seed = 0

  config.model = ml_collections.ConfigDict()
  config.model.name = "cnn1d_mnist1d"
  config.model.kwargs = ml_collections.ConfigDict()

  # Not type-safe: a task's fields differ in type from task to task.
  config.task = ml_collections.ConfigDict(type_safe=False)
  config.task.name = config_dict.placeholder(str)  # None: the dataset's own task

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "mnist1d"
  config.dataset.data_dir = config_dict.placeholder(str)
  config.dataset.validation_fraction = 0.1
  # Not type-safe: options are dataset-specific (all positive integers today).
  config.dataset.preprocess = ml_collections.ConfigDict(type_safe=False)

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
  config.optimizer.accumulation_steps = 1

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
  config.spg.form = "masked"
  config.spg.label_smoothing = 0.0
  # Where the authors' code differs (see the docstring and docs/FAITHFULNESS.md).
  config.spg.use_relu = False
  config.spg.normalize = "none"
  config.spg.base_denominator = "valid"
  config.spg.head_batch_stats = "base"

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
  config.xla_cpu_conv = "default"
  config.skip_nonfinite = False
  config.max_skipped_fraction = 0.1
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


def variant(arg: str | None, extra: tuple = ()) -> str:
  """Validates the `--config=path:ARG` variant name ("" / None: full, "quick", or one of
  the config's own `extra` variants, e.g. the protocol configs' "ablation")."""
  arg = arg or ""
  if arg not in ("", "quick") + tuple(extra):
    more = "".join(f", {e!r}" for e in extra)
    raise ValueError(f"config variant {arg!r}: must be '' (full){more} or 'quick'")
  return arg


# ---------------------------------------------------------------------------- validation
KINDS = ("hpo", "nas")
MODES = ("train", "evaluate")


def _fail(field: str, value: Any, allowed: str) -> None:
  raise ValueError(f"config.{field}={value!r}: {allowed}")


def _choice(config: Any, field: str, allowed: Sequence[Any]) -> None:
  value = _get(config, field)
  if value not in allowed:
    _fail(field, value, f"must be one of {list(allowed)}")


def _get(config: Any, field: str) -> Any:
  value = config
  for part in field.split("."):
    try:
      value = value[part]
    except (KeyError, AttributeError, TypeError):
      raise ValueError(f"config.{field}: missing (see spg_jax.config.base_config)") \
          from None
  return value


def _int(config: Any, field: str, minimum: int) -> int:
  value = _get(config, field)
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    _fail(field, value, f"must be an integer >= {minimum}")
  return value


def _number(config: Any, field: str, low: float, high: float, *, low_open: bool = False,
            high_open: bool = False) -> float:
  value = _get(config, field)
  ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  if ok:
    ok = (value > low if low_open else value >= low) and \
        (value < high if high_open else value <= high)
  if not ok:
    _fail(field, value, f"must be a number in {'(' if low_open else '['}{low}, {high}"
          f"{')' if high_open else ']'}")
  return value


def _bool(config: Any, field: str) -> None:
  value = _get(config, field)
  if not isinstance(value, bool):
    _fail(field, value, "must be True or False")


def _optional_int(config: Any, field: str, minimum: int) -> int | None:
  return None if _get(config, field) is None else _int(config, field, minimum)


def validate_distributed(config: Any) -> None:
  """Checks `multihost` and `distributed.*` without touching JAX's devices, so that it can
  run before `experiments.distributed.initialize` (which must come before any device use)."""
  _bool(config, "multihost")
  address = _get(config, "distributed.coordinator_address")
  num_processes = _optional_int(config, "distributed.num_processes", 1)
  process_id = _optional_int(config, "distributed.process_id", 0)
  _optional_int(config, "distributed.local_device_count", 1)
  explicit = (address, num_processes, process_id)
  if any(v is None for v in explicit) and any(v is not None for v in explicit):
    _fail("distributed", explicit, "give coordinator_address, num_processes and "
          "process_id together, or none of them (auto-detection on TPU/Slurm/MPI)")
  if address is not None and (not isinstance(address, str) or ":" not in address):
    _fail("distributed.coordinator_address", address, "must be 'host:port'")
  if process_id is not None and process_id >= num_processes:
    _fail("distributed.process_id", process_id, f"must be < num_processes "
          f"({num_processes})")
  set_fields = [f for f in ("coordinator_address", "num_processes", "process_id",
                            "local_device_count") if _get(config, f"distributed.{f}") is not None]
  if set_fields and not config.multihost:
    _fail(f"distributed.{set_fields[0]}", _get(config, f"distributed.{set_fields[0]}"),
          "only read with multihost=True")


def validate_mode(config: Any) -> None:
  """Checks `mode` and `init_checkpoint`; `mode="evaluate"` needs an existing exported
  checkpoint: `protocol.init_checkpoint` when the config has a protocol section and sets
  it, else `init_checkpoint`."""
  _choice(config, "mode", MODES)
  checkpoint = _get(config, "init_checkpoint")
  if checkpoint is not None and not isinstance(checkpoint, str):
    _fail("init_checkpoint", checkpoint, "must be None or the path of an exported "
          "checkpoint directory (a string)")
  if config.mode != "evaluate":
    return
  field = "init_checkpoint"
  if "protocol" in config and config.protocol.get("init_checkpoint") is not None:
    field = "protocol.init_checkpoint"
  path = _get(config, field)
  if path is None:
    _fail("mode", "evaluate", "needs init_checkpoint (or protocol.init_checkpoint): the "
          "exported checkpoint directory to evaluate")
  if not isinstance(path, str) or not os.path.isdir(path):
    _fail(field, path, "no such directory (an export written by "
          "spg_jax.train.checkpointing.export_variables)")


def validate_accumulation(config: Any) -> None:
  """Checks `optimizer.accumulation_steps` (absent: 1) and that the step counts it divides
  (num_steps, eval_every_steps, the schedule's warm-up and decay period) are multiples."""
  k = config.optimizer.get("accumulation_steps", 1)
  try:
    optim.check_accumulation_steps(k)
  except ValueError as e:
    raise ValueError(f"config.{e}") from None
  if k == 1:
    return
  fields = ["num_steps", "eval_every_steps", "schedule.warmup_steps"]
  if _get(config, "schedule.name") == "step":
    fields.append("schedule.decay_every_steps")
  for field in fields:
    value = _get(config, field)
    if isinstance(value, int) and value % k:
      _fail(field, value, f"must be a multiple of optimizer.accumulation_steps ({k}): "
            f"step counts are micro-batches, {k} per optimizer update")


def validate_task(config: Any, info: Any) -> None:
  """Checks `config.task` against the task registry, the task's own fields and the dataset
  `info` (its task and features)."""
  declared = _get(config, "task.name")
  if declared is not None:
    _choice(config, "task.name", tasks.names())
    if declared != info.task:
      _fail("task.name", declared, f"dataset {info.name!r} is a {info.task!r} dataset; use "
            f"task.name={info.task!r} (or None: the dataset's own task)")
  kwargs = _get(config, "model.kwargs")
  num_classes = kwargs.get("num_classes", info.num_classes)
  task = tasks.build(config.task, num_classes, info.ignore_label, default_name=info.task)
  task.check_features(info.features, info.name)


def validate_config(config: Any, *, custom_model: bool = False, custom_dataset: Any = None
                    ) -> None:
  """Raises a one-line ValueError naming the first invalid field; returns None if valid.

  Args:
    custom_model: the run gets its own model (`config.model.name` is then only a label).
    custom_dataset: the run's own dataset (a `spg_jax.data.ArrayDataset`), used instead of
      `config.dataset.name`.
  """
  # Imported here: the data pipeline needs the `data` extra (grain, tfds); building a
  # config does not.
  from spg_jax import data  # pylint: disable=g-import-not-at-top
  validate_distributed(config)
  validate_mode(config)
  _int(config, "seed", 0)
  if _get(config, "seed") >= 2**32:
    _fail("seed", config.seed, "must be < 2**32")
  if not custom_model:
    _choice(config, "model.name", models.names())
  if custom_dataset is None:
    _choice(config, "dataset.name", data.names())
  preprocess = config.dataset.get("preprocess")
  preprocess = None if preprocess is None else dict(preprocess)
  try:
    info = data.dataset_info(config.dataset.name if custom_dataset is None
                             else custom_dataset, preprocess)
  except ValueError as e:
    if str(e).startswith("preprocess."):
      raise ValueError(f"config.dataset.{e}") from None
    raise
  validate_task(config, info)
  _number(config, "dataset.validation_fraction", 0.0, 1.0, low_open=True, high_open=True)
  for field in ("batch_size", "eval_batch_size", "num_steps", "log_every_steps",
                "eval_every_steps"):
    _int(config, field, 1)
  num_devices = _int(config, "num_devices", 0)
  if num_devices > jax.device_count():
    _fail("num_devices", num_devices, f"must be <= the {jax.device_count()} visible devices "
          f"(0: all)")
  devices = num_devices or jax.device_count()
  for field in ("batch_size", "eval_batch_size"):
    if _get(config, field) % devices:
      _fail(field, _get(config, field), f"must be a multiple of the number of devices "
            f"({devices})")

  _choice(config, "optimizer.name", optim.OPTIMIZERS)
  _number(config, "optimizer.learning_rate", 0.0, float("inf"), high_open=True)
  _number(config, "optimizer.momentum", 0.0, 1.0, high_open=True)
  _number(config, "optimizer.weight_decay", 0.0, float("inf"), high_open=True)
  _bool(config, "optimizer.nesterov")
  validate_accumulation(config)

  _choice(config, "schedule.name", optim.SCHEDULES)
  if config.schedule.name == "step":
    _int(config, "schedule.decay_every_steps", 1)
  _number(config, "schedule.decay_factor", 0.0, 1.0, low_open=True)
  _int(config, "schedule.warmup_steps", 0)
  if config.schedule.warmup_steps >= config.num_steps and config.schedule.warmup_steps:
    _fail("schedule.warmup_steps", config.schedule.warmup_steps,
          f"must be < num_steps ({config.num_steps})")

  _bool(config, "spg.enabled")
  _choice(config, "spg.kind", KINDS)
  num_replicas = _int(config, "spg.num_replicas", 1)
  for name in ("rate", "lambdas"):
    try:
      if name == "rate":
        validation.validate_rates(_get(config, "spg.rate"), num_replicas)
      else:
        validation.validate_lambdas(_get(config, "spg.lambdas"), num_replicas)
    except ValueError as e:
      raise ValueError(f"config.spg.{e}") from None
  _int(config, "spg.depth", 1)
  _bool(config, "spg.use_relu")
  _choice(config, "spg.form", losses.LOSS_FORMS)
  _choice(config, "spg.normalize", losses.NORMALIZE_MODES)
  if config.spg.normalize == "lr" and config.optimizer.name != "sgd":
    _fail("spg.normalize", "lr", "needs optimizer.name='sgd' (the learning-rate form equals "
          "loss scaling only for SGD); use 'loss'")
  _number(config, "spg.label_smoothing", 0.0, 1.0, high_open=True)
  _choice(config, "spg.base_denominator", losses.BASE_DENOMINATORS)
  _choice(config, "spg.head_batch_stats", spg_model.HEAD_BATCH_STATS)

  _bool(config, "controller.enabled")
  _int(config, "controller.every_steps", 1)
  _number(config, "controller.target_survival", 0.0, 1.0)
  _number(config, "controller.step_size", 0.0, float("inf"), high_open=True)
  lo = _number(config, "controller.min_rate", 0.0, 1.0, high_open=True)
  _number(config, "controller.max_rate", lo, 1.0, high_open=True)
  if config.controller.enabled and (not config.spg.enabled or config.spg.kind != "hpo"):
    _fail("controller.enabled", True, "needs spg.enabled=True and spg.kind='hpo' (it "
          "moves the HPO replicas' dropout rates)")

  _int(config, "checkpoint.every_steps", 0)
  _int(config, "checkpoint.keep", 1)
  for field in ("eval_test", "skip_nonfinite", "progress_bar"):
    _bool(config, field)
  if "xla_cpu_conv" in config:  # configs stored before the field existed lack it
    _choice(config, "xla_cpu_conv", xla_cpu.CONV_BACKENDS)
  _number(config, "max_skipped_fraction", 0.0, 1.0)
