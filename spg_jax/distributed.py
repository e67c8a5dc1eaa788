"""Multi-process data placement: which rows of a global batch this process feeds.

Joining a cluster (`jax.distributed.initialize` plus the CPU backend settings it needs) is
process-level start-up and lives in `experiments/distributed.py`; this module only reads
the mesh.
"""
from __future__ import annotations

from jax.sharding import Mesh

from spg_jax import sharding as sharding_lib


def local_batch_slice(global_batch_size: int, mesh: Mesh) -> slice:
  """The rows of a global batch whose data this process must pass to `shard_batch`.

  `shard_batch` (jax.make_array_from_process_local_data) places each process's local rows
  on that process's devices in mesh order, so the data pipeline must read exactly these
  rows; with `make_mesh()` they are contiguous (process p: the p-th block).

  Raises:
    ValueError: the batch does not split over the mesh, or this process's rows are not one
      contiguous block (a mesh whose device order interleaves processes).
  """
  sharding_lib.check_batch_divisible(global_batch_size, mesh)
  index_map = sharding_lib.batch_sharding(mesh).addressable_devices_indices_map(
      (global_batch_size,))
  starts = sorted({idx[0].indices(global_batch_size)[:2] for idx in index_map.values()})
  for (_, stop), (start, _) in zip(starts, starts[1:]):
    if stop != start:
      raise ValueError(f"this process's rows of the batch are not contiguous: {starts}; "
                       "build the mesh with make_mesh() (devices in process order)")
  return slice(starts[0][0], starts[-1][1])
