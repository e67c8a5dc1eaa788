"""Checkpoints and exported models; the only module that imports orbax (its API churns).

A checkpoint (one step directory under `workdir/checkpoints/`) holds three items:
  state: the `TrainState` (params, batch_stats, opt_state with its injected hyperparameters,
    controller state), saved with `StandardSave`;
  best: the best-on-validation variables so far (same structure as the model's);
  data: JSON: the train iterator's position, best step / accuracy and the logged history.
No RNG is saved: every step's key is `fold_in(base_key, step)`.

Resuming (`Checkpointer.restore_newest_readable`) never trusts the newest step blindly:
* a half-written save (orbax's `<step>.orbax-checkpoint-tmp-*` folder, left by a kill
  during an asynchronous save) and any step that fails to read (truncated file, missing
  part) are moved aside to `<checkpoints>_damaged/` with a logged warning naming them, and
  the next older step is tried. Nothing readable is ever deleted; moving the damaged ones
  out keeps orbax from skipping later saves at or below their step numbers.
* a readable step whose arrays do not match this run's model (another model or config
  wrote the workdir) raises `CheckpointMismatchError`, naming the first differing array,
  before anything is restored.

Exports (`export_variables` / `load_exported`) are plain `StandardSave` trees of host numpy
arrays, e.g. the stripped base model of a run under `workdir/export/`.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from spg_jax.train.health import path_name

# Marks orbax's in-progress save folders: `<step>.orbax-checkpoint-tmp-<timestamp>`.
TMP_MARKER = ".orbax-checkpoint-tmp"
DAMAGED_SUFFIX = "_damaged"


class CheckpointMismatchError(ValueError):
  """A readable checkpoint written by a different model or config than the run's."""


def _handlers() -> dict:
  """Item handlers, registered up front so that `item_metadata` can read the trees."""
  return {"state": ocp.StandardCheckpointHandler(), "best": ocp.StandardCheckpointHandler(),
          "data": ocp.JsonCheckpointHandler()}


def _shapes(tree: Any) -> dict[str, tuple]:
  """`{"params/head/kernel": shape, ...}` of a tree of arrays or array metadata."""
  tree = getattr(tree, "tree", tree)  # orbax's TreeMetadata wraps the tree
  return {path_name(path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def tree_difference(saved: Any, target: Any) -> str | None:
  """The first difference in array paths or shapes between two trees, or None."""
  have, want = _shapes(saved), _shapes(target)
  for name in sorted(set(have) | set(want)):
    if name not in want:
      return f"array {name!r} is in the checkpoint but not in this run's model"
    if name not in have:
      return f"array {name!r} of this run's model is not in the checkpoint"
    if have[name] != want[name]:
      return f"array {name!r} has shape {have[name]} in the checkpoint, {want[name]} here"
  return None


def _first_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0][:200] if text else ''}"


def without_empty(tree: Any) -> Any:
  """`tree` with zero-size leaves replaced by None (orbax refuses to save zero-size arrays;
  e.g. the controller's `[T]` rates when SPG is off and T = 0)."""
  return jax.tree.map(lambda x: None if np.size(x) == 0 else x, tree)


def refill_empty(target: Any, restored: Any) -> Any:
  """Puts back the zero-size leaves of `target` that `without_empty` removed."""
  def fill(t, r):
    if r is not None:
      return r
    empty = np.zeros(t.shape, t.dtype)
    sharding = getattr(t, "sharding", None)
    return empty if sharding is None else jax.device_put(empty, sharding)
  return jax.tree.map(fill, target, restored)


def abstract_like(tree: Any) -> Any:
  """`jax.ShapeDtypeStruct` leaves carrying each leaf's sharding (a restore target)."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      tree)


class Checkpointer:
  """A `CheckpointManager` over `directory` keeping the last `keep` checkpoints.

  Saves are asynchronous (written to a temporary folder, renamed when complete, so a step
  folder is either whole or absent); `wait()` blocks until the last one is on disk.
  """

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    self.damaged_directory = self.directory + DAMAGED_SUFFIX
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_handlers=_handlers())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, best: Any, data: dict) -> None:
    """Starts saving `state`, `best` (pytrees of arrays) and `data` (JSON-able) at `step`."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(without_empty(state)),
        best=ocp.args.StandardSave(without_empty(best)), data=ocp.args.JsonSave(data)))

  def check_matches(self, step: int, state_target: Any, best_target: Any) -> None:
    """Raises `CheckpointMismatchError` if step `step` holds other arrays than the targets
    (orbax's own errors if its metadata cannot be read)."""
    metadata = self._manager.item_metadata(step)
    for item, target in (("state", state_target), ("best", best_target)):
      if metadata[item] is None:
        raise FileNotFoundError(f"item {item!r} missing")
      problem = tree_difference(metadata[item], without_empty(target))
      if problem:
        raise CheckpointMismatchError(
            f"checkpoint {os.path.join(self.directory, str(step))}: {problem}: it was "
            "written by a different model or config; use another workdir, or the config "
            "that wrote it")

  def restore(self, step: int, state_target: Any, best_target: Any) -> tuple[Any, Any, dict]:
    """Restores checkpoint `step` against targets (concrete trees or `abstract_like` ones):
    shapes, dtypes and shardings come from the targets. Returns (state, best, data).

    Raises:
      CheckpointMismatchError: the step holds other arrays than the targets.
    """
    self.check_matches(step, state_target, best_target)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(without_empty(abstract_like(state_target))),
        best=ocp.args.StandardRestore(without_empty(abstract_like(best_target))),
        data=ocp.args.JsonRestore()))
    return (refill_empty(state_target, restored["state"]),
            refill_empty(best_target, restored["best"]), restored["data"])

  def restore_newest_readable(self, state_target: Any, best_target: Any
                              ) -> tuple[int, Any, Any, dict] | None:
    """Restores the newest step that reads back whole; None if there is none.

    Half-written saves and unreadable steps are moved to `damaged_directory` with a
    warning naming them (see the module docstring). Returns (step, state, best, data).

    Raises:
      CheckpointMismatchError: the newest readable step belongs to another model/config.
    """
    for name in sorted(os.listdir(self.directory)):
      if TMP_MARKER in name:
        self._move_aside(name, "a save that never finished (orbax temporary folder)")
    self._manager.reload()
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        return (step,) + self.restore(step, state_target, best_target)
      except CheckpointMismatchError:
        raise
      except Exception as e:  # pylint: disable=broad-except  (orbax/tensorstore raise many types)
        self._move_aside(str(step), f"unreadable ({_first_line(e)})")
        self._manager.reload()
    return None

  def _move_aside(self, name: str, reason: str) -> None:
    """Moves `directory/name` into `damaged_directory` (process 0; all processes wait)."""
    source = os.path.join(self.directory, name)
    target = os.path.join(self.damaged_directory, name)
    suffix = 1
    while os.path.exists(target):  # damaged twice at the same step: keep both
      target, suffix = os.path.join(self.damaged_directory, f"{name}.{suffix}"), suffix + 1
    logging.getLogger(__name__).warning(
        "checkpoint %s: %s; moved to %s; resuming from an older checkpoint if one is "
        "readable", source, reason, target)
    if jax.process_index() == 0:
      os.makedirs(self.damaged_directory, exist_ok=True)
      os.replace(source, target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"spg_jax checkpoint moved aside: {name}")

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def export_variables(path: str, variables: Any) -> None:
  """Writes a pytree of arrays (e.g. `{"params", "batch_stats"}`) to `path`, replacing it.
  `path` is whole or absent at every moment: orbax writes `<path>.orbax-checkpoint-tmp`
  (removing one left by a process killed while exporting) and renames it when complete."""
  host = jax.tree.map(np.asarray, jax.device_get(variables))
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.abspath(path), host, force=True)
    checkpointer.wait_until_finished()


def load_state(directory: str, step: int | None = None) -> tuple[int, Any]:
  """Reads the `state` item of checkpoint `step` (default: the newest) under `directory` as
  host numpy arrays in a plain nested dict (for inspection and tests; training restores
  with `Checkpointer`). Returns (step, state)."""
  manager = ocp.CheckpointManager(os.path.abspath(directory), item_handlers=_handlers(),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  try:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {directory}")
    metadata = manager.item_metadata(step)["state"]
    tree = getattr(metadata, "tree", metadata)
    target = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree)
    state = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target)))["state"]
  finally:
    manager.close()
  return step, jax.tree.map(np.asarray, state)


def load_exported(path: str) -> Any:
  """Reads an `export_variables` tree back as host numpy arrays."""
  path = os.path.abspath(path)
  with ocp.StandardCheckpointer() as checkpointer:
    metadata = checkpointer.metadata(path)
    tree = getattr(metadata, "item_metadata", metadata)
    target = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree)
    return jax.tree.map(np.asarray, checkpointer.restore(path, target))
