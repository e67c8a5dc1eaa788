"""Multi-process training on CPU: 2 processes x 4 devices == 1 process x 8 devices.

Two local processes join with `experiments.distributed.initialize` on 127.0.0.1 (gloo CPU
collectives) and build one 8-device 'data' mesh; a single 8-device process does the same
work. Each worker (tests/multiprocess_worker.py) runs, on MNIST-1D's CNN with SPG-HPO
(dropout on):
1. 3 steps of the trainer's jitted train step (`spg_jax.train.step`), every process feeding
   `shard_batch` its own rows of fixed global batches;
2. `loop.train_and_evaluate` for 3 steps (per-process data pipeline, evaluation, orbax
   checkpoint and export in a shared workdir).
Params, losses and the exported variables agree to 1e-5. They are NOT bitwise equal (~1e-8
apart: gloo's cross-process all-reduce sums gradients in another order than the in-process
one); the two processes' own replicated copies are bitwise identical.

The workers are subprocesses with their own XLA_FLAGS (conftest forces 8 devices in this
process), run concurrently under one hard deadline and killed on failure, so the test
cannot hang.
"""
import json
import os
import re
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import spg_jax
from experiments import distributed as startup
from spg_jax import distributed
from spg_jax.train import checkpointing, loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "multiprocess_worker.py")
DEADLINE_S = 300  # generous for a loaded 2-core machine; a normal run takes well under 60 s
ATOL = 1e-5


def _free_port() -> int:
  """A loopback port free right now (the OS picks it; tiny race until the worker binds)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(device_count: int) -> dict:
  """This environment with XLA_FLAGS' CPU device count replaced by `device_count`."""
  env = dict(os.environ)
  flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "",
                 env.get("XLA_FLAGS", "")).split()
  env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={device_count}"])
  env["JAX_PLATFORMS"] = "cpu"
  # The worker imports experiments.configs (not an installed package) from the repo root.
  env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
  return env


def _run_all(jobs, log_dir) -> None:
  """Starts every `(name, argv, env)` job at once, waits for all under DEADLINE_S, and on
  a timeout or a failure kills the rest and fails with each job's log tail."""
  procs = []
  try:
    for name, argv, env in jobs:
      log = open(os.path.join(log_dir, f"{name}.log"), "wb")  # pylint: disable=consider-using-with
      procs.append((name, log, subprocess.Popen(argv, cwd=REPO, env=env, stdout=log,
                                                stderr=subprocess.STDOUT)))
    deadline = time.monotonic() + DEADLINE_S
    failed = None
    while failed is None and any(p.poll() is None for _, _, p in procs):
      if time.monotonic() > deadline:
        failed = f"timed out after {DEADLINE_S} s"
      elif any(p.poll() not in (None, 0) for _, _, p in procs):
        failed = "a worker failed"  # its peer would wait for it until its own timeout
      else:
        time.sleep(0.2)
    if failed is None and any(p.returncode != 0 for _, _, p in procs):
      failed = "a worker failed"
  finally:
    for _, log, proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
      log.close()
  if failed is not None:
    report = []
    for name, _, proc in procs:
      with open(os.path.join(log_dir, f"{name}.log"), errors="replace") as f:
        tail = "".join(line for line in f.readlines() if "[Gloo]" not in line)[-3000:]
      report.append(f"--- {name} (exit {proc.returncode}):\n{tail}")
    pytest.fail(f"{failed}\n" + "\n".join(report))


def _load(path) -> dict:
  """A worker's npz -> {"layout", array fields, "param"/"init"/"trainer": {path: array}}."""
  data = np.load(path)
  out = {"layout": json.loads(str(data["layout"]))}
  out.update({k: data[k] for k in data.files if ":" not in k and k != "layout"})
  for group in ("param", "init", "trainer"):
    out[group] = {k.split(":", 1)[1]: data[k] for k in data.files
                  if k.startswith(group + ":")}
  return out


def _assert_trees_close(got: dict, want: dict, what: str) -> None:
  assert got.keys() == want.keys(), what
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=0, atol=ATOL, err_msg=f"{what} {k}")


def test_two_processes_of_4_devices_train_like_one_of_8(tmp_path):
  coordinator = f"127.0.0.1:{_free_port()}"
  jobs = [("single", [sys.executable, WORKER, f"--out={tmp_path / 'single'}",
                      f"--workdir={tmp_path / 'single_run'}"], _env(8))]
  jobs += [(f"process_{i}",
            [sys.executable, WORKER, f"--out={tmp_path / 'multi'}",
             f"--workdir={tmp_path / 'multi_run'}", f"--coordinator={coordinator}",
             "--num_processes=2", f"--process_id={i}", "--local_devices=4"], _env(4))
           for i in range(2)]
  _run_all(jobs, tmp_path)

  ref = _load(tmp_path / "single" / "process_0.npz")
  assert ref["layout"] == {"process_count": 1, "device_count": 8, "local_device_count": 8,
                           "rows": [0, 32], "step": 3, "trainer_steps": 3}
  # Non-trivial comparison: 3 steps moved every param by far more than the tolerance.
  moved = min(float(np.max(np.abs(ref["param"][k] - ref["init"][k]))) for k in ref["param"])
  assert moved > 10 * ATOL
  assert len(ref["trainer_losses"]) == 3

  runs = [_load(tmp_path / "multi" / f"process_{i}.npz") for i in range(2)]
  for i, run in enumerate(runs):
    # One global mesh of 8 devices, 4 per process, each process owning its half.
    assert run["layout"] == {"process_count": 2, "device_count": 8, "local_device_count": 4,
                             "rows": [16 * i, 16 * (i + 1)], "step": 3, "trainer_steps": 3}
    # Same key, same init: bitwise before any collective.
    assert run["init"].keys() == ref["init"].keys()
    for k in ref["init"]:
      np.testing.assert_array_equal(run["init"][k], ref["init"][k], err_msg=k)
    _assert_trees_close(run["param"], ref["param"], f"process {i} engine params")
    _assert_trees_close(run["trainer"], ref["trainer"], f"process {i} trainer params")
    for field in ("losses", "trainer_losses", "trainer_accuracy", "val_accuracy"):
      np.testing.assert_allclose(run[field], ref[field], rtol=0, atol=ATOL, err_msg=field)
  # The replicated state stays bitwise identical across the two processes.
  for group in ("param", "trainer"):
    for k in ref[group]:
      np.testing.assert_array_equal(runs[0][group][k], runs[1][group][k], err_msg=k)
  # The export the two processes wrote together reads back like the single process's.
  exported = [checkpointing.load_exported(str(tmp_path / run / loop.EXPORT_DIR))
              for run in ("single_run", "multi_run")]
  assert jax.tree.leaves(exported[0])
  assert jax.tree.structure(exported[0]) == jax.tree.structure(exported[1])
  for a, b in zip(jax.tree.leaves(exported[1]), jax.tree.leaves(exported[0])):
    np.testing.assert_allclose(a, b, rtol=0, atol=ATOL)


def test_local_batch_slice_single_process_owns_every_row():
  mesh = spg_jax.make_mesh()
  assert jax.process_count() == 1 and mesh.devices.size == 8
  assert distributed.local_batch_slice(32, mesh) == slice(0, 32)
  assert distributed.local_batch_slice(8, spg_jax.make_mesh(2)) == slice(0, 8)


def test_local_batch_slice_rejects_indivisible_batch():
  with pytest.raises(ValueError, match="batch_size=12"):
    distributed.local_batch_slice(12, spg_jax.make_mesh())


@pytest.mark.parametrize("kwargs, match", [
    ({"coordinator_address": "127.0.0.1:1234"}, "give all three or none"),
    ({"coordinator_address": "127.0.0.1:1234", "num_processes": 2}, "give all three"),
    ({"coordinator_address": "127.0.0.1:1", "num_processes": 2, "process_id": 0,
      "cpu_collectives": "nccl"}, "cpu_collectives='nccl'"),
    ({"coordinator_address": "127.0.0.1:1", "num_processes": 2, "process_id": 0,
      "local_device_count": 0}, "local_device_count=0"),
])
def test_initialize_rejects_bad_arguments_before_starting_anything(kwargs, match):
  with pytest.raises(ValueError, match=match):
    startup.initialize(**kwargs)
  assert not jax.distributed.is_initialized()
