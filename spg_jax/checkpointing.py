"""Checkpoints and exported models; the only module that imports orbax (its API churns).

A checkpoint (one step directory under `workdir/checkpoints/`) holds three items:
  state: the `TrainState` (params, batch_stats, opt_state with its injected hyperparameters,
    controller state), saved with `StandardSave`;
  best: the best-on-validation variables so far (same structure as the model's);
  data: JSON: the train iterator's position, best step / accuracy and the logged history.
No RNG is saved: every step's key is `fold_in(base_key, step)`.

Exports (`export_variables` / `load_exported`) are plain `StandardSave` trees of host numpy
arrays, e.g. the stripped base model of a run under `workdir/export/`.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

_ITEMS = ("state", "best", "data")


def abstract_like(tree: Any) -> Any:
  """`jax.ShapeDtypeStruct` leaves carrying each leaf's sharding (a restore target)."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      tree)


class Checkpointer:
  """A `CheckpointManager` over `directory` keeping the last `keep` checkpoints.

  Saves are asynchronous; `wait()` blocks until the last one is on disk.
  """

  def __init__(self, directory: str, keep: int):
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options,
                                          item_names=_ITEMS)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, best: Any, data: dict) -> None:
    """Starts saving `state`, `best` (pytrees of arrays) and `data` (JSON-able) at `step`."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), best=ocp.args.StandardSave(best),
        data=ocp.args.JsonSave(data)))

  def restore(self, step: int, state_target: Any, best_target: Any) -> tuple[Any, Any, dict]:
    """Restores checkpoint `step` against targets (concrete trees or `abstract_like` ones):
    shapes, dtypes and shardings come from the targets. Returns (state, best, data)."""
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_like(state_target)),
        best=ocp.args.StandardRestore(abstract_like(best_target)),
        data=ocp.args.JsonRestore()))
    return restored["state"], restored["best"], restored["data"]

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def export_variables(path: str, variables: Any) -> None:
  """Writes a pytree of arrays (e.g. `{"params", "batch_stats"}`) to `path`, replacing it."""
  host = jax.tree.map(np.asarray, jax.device_get(variables))
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.abspath(path), host, force=True)
    checkpointer.wait_until_finished()


def load_exported(path: str) -> Any:
  """Reads an `export_variables` tree back as host numpy arrays."""
  path = os.path.abspath(path)
  with ocp.StandardCheckpointer() as checkpointer:
    metadata = checkpointer.metadata(path)
    tree = getattr(metadata, "item_metadata", metadata)
    target = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree)
    return jax.tree.map(np.asarray, checkpointer.restore(path, target))
