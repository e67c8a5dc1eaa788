"""Device mesh and shardings: one `'data'` axis, batch split over it, params replicated.

Everything goes through `jax.jit` with `NamedSharding`s; no `pmap`, no `shard_map`.
Multi-host: each process passes its own slice of the global batch to `shard_batch`, which
assembles the global `jax.Array` with `jax.make_array_from_process_local_data`.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over `num_devices` devices (all by default) with the axis `'data'`.

  The axis type is Auto (not jax 0.10's Explicit default) so that shardings are
  propagated by the compiler and user models need no sharding annotations.
  """
  devices = jax.devices()
  n = len(devices) if num_devices is None else int(num_devices)
  if not 1 <= n <= len(devices):
    raise ValueError(f"num_devices={num_devices!r}: must be in [1, {len(devices)}] "
                     f"(the devices visible to JAX)")
  return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices[:n])


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of a batch: leading axis split over `'data'`, the rest replicated."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding that puts a full copy on every device of the mesh (params, opt state)."""
  return NamedSharding(mesh, P())


def check_batch_divisible(global_batch_size: int, mesh: Mesh) -> None:
  """Raise a one-line ValueError unless the global batch splits evenly over the devices."""
  n = mesh.shape[DATA_AXIS]
  if global_batch_size <= 0 or global_batch_size % n:
    raise ValueError(f"batch_size={global_batch_size}: must be a positive multiple of the "
                     f"number of devices on the 'data' axis ({n})")


def shard_batch(local_batch: Any, mesh: Mesh) -> Any:
  """Host arrays (this process's slice, leading axis = local batch) -> global sharded arrays.

  Args:
    local_batch: pytree of numpy arrays, each `[local_B, ...]`.
    mesh: the mesh whose `'data'` axis splits the global batch.
  Returns:
    The same pytree of `jax.Array`s, each `[global_B, ...]` with `batch_sharding(mesh)`.
  """
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), local_batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Place every leaf of `tree` fully replicated on the mesh."""
  return jax.device_put(tree, replicated(mesh))
