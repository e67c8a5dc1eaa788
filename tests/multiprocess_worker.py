"""One process of a sharded SPG training run, launched by tests/test_multiprocess.py.

  python tests/multiprocess_worker.py --out=DIR --workdir=DIR [--num_processes=2
      --process_id=I --coordinator=127.0.0.1:PORT --local_devices=4]

Without --coordinator it is a plain single-process run on whatever CPU devices XLA_FLAGS
gives it. With it, the process joins the cluster through `experiments.distributed.initialize`
(gloo CPU collectives, coordinator bound to the same loopback address) before touching any
array.

Two parts, both on the global 8-device 'data' mesh:
1. Engine: every process builds the trainer's real jitted train step (`spg_jax.train.step`),
   initialises it from the same key, generates the same global batches from a seed and
   hands `shard_batch` only its own rows (`local_batch_slice`); NUM_STEPS steps (dropout
   key of step s = fold_in(key, s), inside the step).
2. Trainer: `spg_jax.loop.train_and_evaluate` for NUM_STEPS steps on MNIST-1D (its own
   per-process data pipeline, validation/test evaluation, orbax checkpoint and export, in a
   workdir the processes share). It reuses part 1's compiled steps (same static spec).

Writes DIR/process_<id>.npz: part 1's initial and final params (`init:`, `param:`) and
losses, part 2's final base params (`trainer:`), logged train losses and accuracies, and
the layout (process/device counts, this process's rows).
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

NUM_STEPS = 3
GLOBAL_BATCH = 32  # 4 rows per device on the 8-device mesh
SEED = 0


def _parse() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="directory for process_<id>.npz")
  parser.add_argument("--workdir", required=True, help="train_and_evaluate's run directory")
  parser.add_argument("--coordinator", default=None, help="host:port of process 0")
  parser.add_argument("--num_processes", type=int, default=1)
  parser.add_argument("--process_id", type=int, default=0)
  parser.add_argument("--local_devices", type=int, default=None)
  return parser.parse_args()


def _config():
  """experiments/configs/mnist1d_spg.py:quick (MNIST-1D CNN, SPG-HPO T=3 with dropout 0.2,
  masked loss with loss normalisation, SGD with momentum, cosine schedule), cut to
  NUM_STEPS steps with one evaluation and one checkpoint at the end.

  use_relu=False: with the reference ReLU the zero-initialised replica Linears get exactly
  zero gradient (see spg_jax/replicas.py), and the comparison should cover params that move.
  """
  from experiments.configs import mnist1d_spg  # pylint: disable=import-outside-toplevel
  config = mnist1d_spg.get_config("quick")
  config.seed = SEED
  config.num_steps = NUM_STEPS
  config.batch_size = GLOBAL_BATCH
  config.log_every_steps = 1
  config.eval_every_steps = NUM_STEPS
  config.progress_bar = False
  config.spg.use_relu = False
  return config


def _global_batches(input_shape, num_classes) -> list[dict[str, np.ndarray]]:
  """NUM_STEPS fixed global batches, identical in every process (same seed)."""
  rng = np.random.default_rng(SEED)
  return [{"input": rng.standard_normal((GLOBAL_BATCH,) + tuple(input_shape)).astype(
              np.float32),
           "label": rng.integers(0, num_classes, GLOBAL_BATCH).astype(np.int32)}
          for _ in range(NUM_STEPS)]


def _host_params(params) -> dict[str, np.ndarray]:
  """Replicated global params -> {path: numpy}: every process holds the full value on its
  first local device (np.asarray of the global array works only because it is fully
  replicated; a sharded one would need multihost_utils.process_allgather)."""
  import jax  # pylint: disable=import-outside-toplevel
  return {jax.tree_util.keystr(path): np.asarray(leaf.addressable_data(0))
          for path, leaf in jax.tree_util.tree_leaves_with_path(params)}


def main() -> None:
  args = _parse()
  # Imported here so that nothing JAX-related runs before the cluster is joined.
  import jax  # pylint: disable=import-outside-toplevel
  from experiments import distributed as startup  # pylint: disable=import-outside-toplevel
  from spg_jax import distributed  # pylint: disable=import-outside-toplevel
  if args.coordinator is not None:
    startup.initialize(args.coordinator, args.num_processes, args.process_id,
                           local_device_count=args.local_devices,
                           bind_address=args.coordinator, timeout_s=60)
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import spg_jax  # pylint: disable=import-outside-toplevel
  from spg_jax import data  # pylint: disable=import-outside-toplevel
  from spg_jax.train import engine as engine_lib  # pylint: disable=import-outside-toplevel
  from spg_jax.train import loop  # pylint: disable=import-outside-toplevel

  if jax.process_count() != args.num_processes:
    raise RuntimeError(f"joined {jax.process_count()} processes, expected "
                       f"{args.num_processes}")
  config = _config()
  info = data.dataset_info(config.dataset.name)

  # Part 1: the engine's train step on fixed synthetic batches.
  mesh = spg_jax.make_mesh(config.num_devices or None)  # the trainer's mesh: cache hit
  spec = engine_lib.spec_from_config(config, mesh, info)
  engine = engine_lib.get_engine(spec)
  key = jax.random.key(config.seed)
  state = engine.create_state(engine.init(key), engine_lib.optimizer_hparams(config),
                              jnp.asarray(spec.rates, jnp.float32))
  init_params = _host_params(state.params)  # now: train_step donates the state's buffers
  rows = distributed.local_batch_slice(GLOBAL_BATCH, mesh)
  losses = []
  for batch in _global_batches(info.input_shape, info.num_classes):
    local = {k: v[rows] for k, v in batch.items()}
    state, metrics = engine.train_step(state, spg_jax.shard_batch(local, mesh), key)
    losses.append(np.asarray(metrics["loss"].addressable_data(0)))
  params = _host_params(state.params)

  # Part 2: the whole training loop.
  result = loop.train_and_evaluate(config, args.workdir)
  train_logs = [h for h in result.history if "train/loss" in h]
  trained = {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in
             jax.tree_util.tree_leaves_with_path(result.final_variables)}

  layout = {"process_count": jax.process_count(), "device_count": jax.device_count(),
            "local_device_count": jax.local_device_count(), "rows": [rows.start, rows.stop],
            "step": int(np.asarray(state.step.addressable_data(0))),
            "trainer_steps": result.num_steps}
  os.makedirs(args.out, exist_ok=True)
  np.savez(os.path.join(args.out, f"process_{jax.process_index()}.npz"),
           losses=np.stack(losses), layout=json.dumps(layout),
           trainer_losses=np.array([h["train/loss"] for h in train_logs]),
           trainer_accuracy=np.array([h["train/accuracy"] for h in train_logs]),
           val_accuracy=np.array(result.best_val_score),
           **{f"param:{k}": v for k, v in params.items()},
           **{f"init:{k}": v for k, v in init_params.items()},
           **{f"trainer:{k}": v for k, v in trained.items()})
  if args.coordinator is not None:
    # Leave together: process 0 hosts the coordination service, which must outlive the
    # other process's last collective.
    jax.distributed.shutdown()


if __name__ == "__main__":
  main()
