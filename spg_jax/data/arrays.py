"""Your own in-memory data, for `train_and_evaluate(..., dataset=...)` and `run_protocol`.

  dataset = spg_jax.data.ArrayDataset(
      "my_data", {"train": {"input": x_train, "label": y_train},
                  "validation": {...}, "test": {...}}, num_classes=10)

Every split is a dict of equal-length arrays, one entry per batch feature (any names, shapes
and dtypes the task reads: `input`/`label` for classification, `label` maps for
segmentation, `input_ids`/`attention_mask`/... for text). The three splits are given, so
`config.dataset.validation_fraction` is not used; the pipeline (seeded order, sharding,
padding of the last eval batch, checkpointable position) is the same as for the catalog's
datasets.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from spg_jax.data import catalog
from spg_jax.data import sources


class ArrayDataset:
  """Named splits of in-memory arrays with the facts a task needs.

  Args:
    name: a label for messages and results.
    splits: "train", "validation" and "test", each `{feature: array [N, ...]}` with the same
      features (names, per-example shapes, dtypes) in every split.
    num_classes: classes of the task (the model's outputs; 1 for regression).
    task: the task the data is for (`spg_jax.tasks.names()`; `config.task.name` must agree
      or be None).
    ignore_label: the label that counts for no class (segmentation), or None.
  """

  def __init__(self, name: str, splits: Mapping[str, Mapping[str, Any]], num_classes: int,
               task: str = "classification", ignore_label: int | None = None):
    missing = [s for s in catalog.SPLITS if s not in splits]
    if missing:
      raise ValueError(f"splits: needs {list(catalog.SPLITS)} (missing {missing})")
    self.splits = {s: {k: np.asarray(v) for k, v in splits[s].items()}
                   for s in catalog.SPLITS}
    features = None
    for split, arrays in self.splits.items():
      if not arrays:
        raise ValueError(f"splits[{split!r}]: has no features")
      lengths = {k: len(v) for k, v in arrays.items()}
      if len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise ValueError(f"splits[{split!r}]: features need the same non-zero length "
                         f"(got {lengths})")
      spec = catalog.Features({k: catalog.Feature(v.shape[1:], v.dtype.name)
                               for k, v in arrays.items()})
      if features is None:
        features = spec
      elif spec != features:
        raise ValueError(f"splits[{split!r}]: features {dict(spec)} differ from the "
                         f"train split's {dict(features)}")
    self.info = catalog.DatasetInfo(name, int(num_classes), features, "arrays", task=task,
                                    ignore_label=ignore_label)

  def source(self, split: str) -> sources.ArraySource:
    """The examples of `split` as a random-access source."""
    catalog.check_split(split)
    return sources.ArraySource(self.splits[split])

  def __repr__(self) -> str:
    sizes = {s: len(next(iter(a.values()))) for s, a in self.splits.items()}
    return f"ArrayDataset({self.info.name!r}, {sizes}, features={dict(self.info.features)})"
