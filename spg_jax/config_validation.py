"""Checks a training config before anything is built or compiled.

`validate_config(config)` raises a one-line `ValueError` for the first bad field, naming the
field, the value and what is allowed (schema: experiments/configs/common.py).
"""
from __future__ import annotations

from typing import Any, Sequence

import jax

from spg_jax import core
from spg_jax import data
from spg_jax import models
from spg_jax import optim
from spg_jax.steps import NORMALIZE_MODES

KINDS = ("hpo", "nas")


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
      raise ValueError(f"config.{field}: missing (see experiments/configs/common.py)") \
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


def validate_config(config: Any) -> None:
  """Raises a one-line ValueError naming the first invalid field; returns None if valid."""
  validate_distributed(config)
  _int(config, "seed", 0)
  if _get(config, "seed") >= 2**32:
    _fail("seed", config.seed, "must be < 2**32")
  _choice(config, "model.name", models.names())
  _choice(config, "dataset.name", data.names())
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
        core.validate_rates(_get(config, "spg.rate"), num_replicas)
      else:
        core.validate_lambdas(_get(config, "spg.lambdas"), num_replicas)
    except ValueError as e:
      raise ValueError(f"config.spg.{e}") from None
  _int(config, "spg.depth", 1)
  _bool(config, "spg.use_relu")
  _choice(config, "spg.form", core.LOSS_FORMS)
  _choice(config, "spg.normalize", NORMALIZE_MODES)
  if config.spg.normalize == "lr" and config.optimizer.name != "sgd":
    _fail("spg.normalize", "lr", "needs optimizer.name='sgd' (the learning-rate form equals "
          "loss scaling only for SGD); use 'loss'")
  _number(config, "spg.label_smoothing", 0.0, 1.0, high_open=True)

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
