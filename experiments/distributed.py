"""Multi-process start-up for the entry points: join a JAX cluster.

It changes process-wide JAX settings (`jax.config.update`), so it lives here, beside
`experiments/main.py`, not in the library. Call `initialize(...)` once, first thing, before
anything touches a JAX array (it configures the CPU backend, which JAX creates on first use).

On TPU pods, Slurm or Open MPI, `initialize()` with no arguments lets JAX detect the
cluster. Elsewhere (several local CPU processes, a hand-made cluster) pass the coordinator
address, the process count and this process's id. On CPU, cross-process collectives go
through gloo over TCP (`jax_cpu_collectives_implementation`); gloo binds to the address the
machine's hostname resolves to.

Checked with jax 0.10.2: two local processes with 4 CPU devices each on 127.0.0.1 run the
same sharded train step as one 8-device process (tests/test_multiprocess.py). Each process
feeds `spg_jax.distributed.local_batch_slice(...)` rows of every global batch.
"""
from __future__ import annotations

import jax

CPU_COLLECTIVES = ("gloo", "mpi")


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, local_device_count: int | None = None,
               bind_address: str | None = None, cpu_collectives: str = "gloo",
               timeout_s: int = 300) -> None:
  """Joins this process to the JAX cluster (`jax.distributed.initialize`).

  Args:
    coordinator_address: "host:port" of process 0's coordination service; None (with
      num_processes and process_id None too): detect the cluster (TPU, Slurm, MPI).
    num_processes: how many processes take part.
    process_id: this process's id in [0, num_processes).
    local_device_count: CPU devices this process exposes (`jax_num_cpu_devices`); None:
      JAX's default (one, or XLA_FLAGS' --xla_force_host_platform_device_count). Ignored
      by GPU/TPU backends.
    bind_address: "host:port" the coordinator (process 0) listens on; None: JAX's default,
      every interface ("[::]:port"). Pass e.g. "127.0.0.1:port" to stay on loopback.
    cpu_collectives: "gloo" (TCP, no extra software) or "mpi" (needs an MPI library).
    timeout_s: how long to wait for all processes to join before raising.

  Raises:
    ValueError: a bad argument (before anything is started).
    RuntimeError: called after JAX's backends were created (too late to configure them),
      or twice.
  """
  explicit = (coordinator_address, num_processes, process_id)
  if any(v is None for v in explicit) and any(v is not None for v in explicit):
    raise ValueError("coordinator_address, num_processes and process_id: give all three "
                     f"or none (auto-detection); got {explicit}")
  if cpu_collectives not in CPU_COLLECTIVES:
    raise ValueError(f"cpu_collectives={cpu_collectives!r}: must be one of {CPU_COLLECTIVES}")
  if local_device_count is not None and int(local_device_count) < 1:
    raise ValueError(f"local_device_count={local_device_count!r}: must be >= 1")
  if jax.distributed.is_initialized():
    raise RuntimeError("spg_jax.distributed.initialize: already initialized")
  # Both settings are read only when the CPU client is created. Called too late, the
  # device count update or jax.distributed.initialize raises (the mistake to surface).
  jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  if local_device_count is not None:
    jax.config.update("jax_num_cpu_devices", int(local_device_count))
  kwargs = {}
  if coordinator_address is not None:
    # All three given: skip cluster auto-detection, which could otherwise override them
    # from a stray Slurm/MPI environment.
    kwargs["cluster_detection_method"] = "deactivate"
  if bind_address is not None:
    kwargs["coordinator_bind_address"] = bind_address
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             initialization_timeout=int(timeout_s), **kwargs)
