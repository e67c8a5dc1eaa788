"""Tasks: what the engine asks of a problem (batch features and checks, SPG terms, eval
metrics, checkpoint selection). One module per task; `spg_jax.tasks.base.Task` is the seam.

  names()                        the task names a config may give (`config.task.name`).
  build(task_config, info)       a Task from `config.task` and the dataset's facts.
  Classification, Segmentation, SequenceClassification, SequenceRegression, ExtractiveQA,
  CTC, Seq2Seq                   the task classes (frozen dataclasses).

A new task is one module with a `Task` subclass plus its entry in `_TASKS`.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Any

from spg_jax.tasks.base import BatchCheck, Task
from spg_jax.tasks.classification import Classification
from spg_jax.tasks.ctc import CTC
from spg_jax.tasks.qa import ExtractiveQA
from spg_jax.tasks.segmentation import Segmentation
from spg_jax.tasks.seq2seq import Seq2Seq
from spg_jax.tasks.sequence import SequenceClassification, SequenceRegression

__all__ = ["BatchCheck", "CTC", "Classification", "ExtractiveQA", "Segmentation", "Seq2Seq",
           "SequenceClassification", "SequenceRegression", "Task", "build", "fields",
           "get", "names"]

# Read-only: a constant table.
_TASKS: types.MappingProxyType = types.MappingProxyType({
    cls.name: cls for cls in (Classification, Segmentation, SequenceClassification,
                              SequenceRegression, ExtractiveQA, CTC, Seq2Seq)})
# Fields filled from the dataset, not from `config.task`.
_FROM_DATASET = ("num_classes", "ignore_label")


def names() -> tuple[str, ...]:
  """The known task names, in the order above."""
  return tuple(_TASKS)


def get(name: str) -> type[Task]:
  """The task class of `name`; one-line ValueError listing the known names otherwise."""
  if name not in _TASKS:
    raise ValueError(f"config.task.name={name!r}: must be one of {list(names())}")
  return _TASKS[name]


def fields(name: str) -> tuple[str, ...]:
  """The fields `config.task` may set for task `name` (besides `name`)."""
  return tuple(f.name for f in dataclasses.fields(get(name)) if f.name not in _FROM_DATASET)


def _as_dict(task_config: Any) -> dict[str, Any]:
  if hasattr(task_config, "to_dict"):
    return dict(task_config.to_dict())
  return dict(task_config)


def _normalise(value: Any) -> Any:
  """Lists from configs and command lines become tuples (tasks are hashable)."""
  return tuple(value) if isinstance(value, list) else value


def build(task_config: Any, num_classes: int, ignore_label: int | None = None,
          default_name: str | None = None) -> Task:
  """The task of `config.task` (`name` plus its fields) for a dataset with `num_classes`
  classes (and `ignore_label`, when it has one); a `name` of None means `default_name`
  (the dataset's own task).

  Raises a one-line ValueError naming the field for an unknown task, an unknown field or a
  bad value.
  """
  given = _as_dict(task_config)
  name = given.pop("name", None)
  if name is None:
    name = default_name
  cls = get(name)
  allowed = fields(name)
  for key in given:
    if key not in allowed:
      raise ValueError(f"config.task.{key}: not a field of task {name!r} (its fields: "
                       f"{list(allowed)})")
  kwargs = {k: _normalise(v) for k, v in given.items()}
  names_of_fields = {f.name for f in dataclasses.fields(cls)}
  kwargs["num_classes"] = int(num_classes)
  if "ignore_label" in names_of_fields and ignore_label is not None:
    kwargs["ignore_label"] = int(ignore_label)
  try:
    return cls(**kwargs)
  except TypeError as e:
    raise ValueError(f"config.task: {e}") from None
