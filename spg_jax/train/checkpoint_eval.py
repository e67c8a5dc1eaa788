"""Evaluate a saved base model without training: the first check after converting a
checkpoint (a converted torchvision ResNet-50 should give its published 76.13 % top-1).

`evaluate_checkpoint(config, checkpoint)` loads an export (`{"params", "batch_stats"}`, as
written by `checkpointing.export_variables` or `experiments/convert.py`), checks that it fits
`config.model`, and returns the task's metrics (top-1/top-5 accuracy, mIoU and pixel
accuracy, ...) on each requested split. SPG plays no part: the base model alone is run, in
evaluation mode, over every example of the split (padded batches are masked).
"""
from __future__ import annotations

import copy
import os
from typing import Any, Sequence

import jax
import numpy as np

from spg_jax import data
from spg_jax import sharding
from spg_jax import spg_model
from spg_jax.train import checkpointing
from spg_jax.train import engine as engine_lib
from spg_jax.train import loop

__all__ = ["evaluate_checkpoint", "load_checkpoint"]

EVAL_SPLITS = ("validation", "test")


def load_checkpoint(path: Any, field: str = "checkpoint") -> dict:
  """The exported variables at directory `path` as host numpy trees.

  Raises:
    ValueError (one line naming `field`) if `path` is not a string naming a directory.
  """
  if not isinstance(path, str) or not path:
    raise ValueError(f"{field}={path!r}: must be the directory of an exported model "
                     f"(written by experiments/convert.py or a training run's export/)")
  if not os.path.isdir(path):
    raise ValueError(f"{field}={path!r}: no such directory (an export written by "
                     f"experiments/convert.py or checkpointing.export_variables)")
  return checkpointing.load_exported(path)


def _check_splits(splits: Sequence[str]) -> tuple[str, ...]:
  splits = tuple(splits)
  if not splits or any(s not in data.SPLITS for s in splits):
    raise ValueError(f"splits={splits!r}: must be a non-empty subset of {data.SPLITS}")
  return splits


def evaluate_checkpoint(config: Any, checkpoint: Any, *,
                        splits: Sequence[str] = EVAL_SPLITS, model: Any = None,
                        dataset: Any = None, field: str = "checkpoint"
                        ) -> dict[str, dict[str, float]]:
  """The task's metrics of a base model's variables on each of `splits`.

  Args:
    config: a run config (`spg_jax.config.base_config()` layout); its model, dataset, task,
      dtype, eval batch size and mesh settings are used, its SPG settings are not.
    checkpoint: an export directory, or the variables themselves
      (`{"params": ..., "batch_stats": ...}` of the base model).
    splits: which splits to evaluate, in order.
    model / dataset: a user's own Flax model or `spg_jax.data.ArrayDataset`, as for
      `train_and_evaluate`.
    field: the config field named in error messages.
  Returns:
    `{split: {metric: value}}`.
  Raises:
    ValueError (one line) for a missing directory, a split name outside
    `spg_jax.data.SPLITS`, or variables that do not fit the model (another architecture or
    number of classes), before anything is compiled.
  """
  splits = _check_splits(splits)
  variables = (load_checkpoint(checkpoint, field) if not isinstance(checkpoint, dict)
               else checkpoint)
  stage = copy.deepcopy(config)
  with stage.unlocked():
    stage.spg.enabled = False
  info = loop.dataset_info(stage, dataset)
  mesh = sharding.make_mesh(stage.num_devices or None)
  engine = engine_lib.get_engine(engine_lib.spec_from_config(stage, mesh, info, model))
  # Shapes only (nothing runs): a checkpoint of another model fails here, in one line.
  expected = jax.eval_shape(engine.init, jax.random.key(0))
  variables = spg_model.nonempty_collections(variables)
  spg_model.check_same_structure(spg_model.nonempty_collections(expected), variables, field)
  variables = jax.tree.map(lambda e, v: np.asarray(v, e.dtype),
                           spg_model.nonempty_collections(expected), variables)
  state = engine.create_state(jax.device_put(variables, sharding.replicated(mesh)),
                              engine_lib.optimizer_hparams(stage),
                              np.zeros((0,), np.float32))
  return {split: loop.evaluate_split(engine, state, stage, split, dataset)
          for split in splits}
