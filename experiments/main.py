r"""Runs one experiment config: training, or the evaluation protocol if the config has one.

  python -m experiments.main --config=experiments/configs/mnist1d_spg.py:quick \
      --workdir=/tmp/mnist1d --config.seed=1 --config.spg.enabled=False

Flags live here only. Exit status:
  0    finished.
  2    bad input: one line `error: ...` naming the cause (a config value, an unknown model or
       dataset, data not prepared, an unwritable workdir, a batch size that does not split
       over the devices, labels outside the classes, non-finite inputs, a workdir holding a
       checkpoint of another model). Found before anything is written to the workdir (bad
       batches after the first one: without saving anything of theirs).
  3    diverged: one line `error: step N: non-finite <term> ...`; the last checkpoint is
       kept (`--config.skip_nonfinite=True` skips such steps instead).
  143  preempted: SIGTERM arrived; a checkpoint of the current step is on disk and the same
       command resumes from it (128 + SIGTERM, so job systems see "terminated").
  130  interrupted: SIGINT (Ctrl-C), handled like SIGTERM (128 + SIGINT).
A SIGKILL loses only the steps since the last checkpoint (`--config.checkpoint.every_steps`).
"""
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file "
                                          "(path[:variant]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, "
                               "export); an existing checkpoint there is resumed.")
flags.mark_flags_as_required(["config", "workdir"])


def start_distributed(config) -> None:
  """Joins the JAX cluster if `config.multihost`, before anything touches a device."""
  if not config.get("multihost", False):
    return
  from experiments import distributed  # pylint: disable=g-import-not-at-top
  from spg_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  config_lib.validate_distributed(config)
  d = config.distributed
  distributed.initialize(d.coordinator_address, d.num_processes, d.process_id,
                         local_device_count=d.local_device_count)


def run(config, workdir: str):
  """Validates `config`, then dispatches to the protocol or to `train_and_evaluate`."""
  start_distributed(config)
  if "protocol" in config:
    from spg_jax import protocol  # pylint: disable=g-import-not-at-top  (only when needed)
    return protocol.run_protocol(config, workdir)
  from spg_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from spg_jax.train import loop  # pylint: disable=g-import-not-at-top
  config_lib.validate_config(config)
  return loop.train_and_evaluate(config, workdir)


def run_and_exit(config, workdir: str) -> None:
  """`run`, a one-line summary or error, and `sys.exit` with the status documented above."""
  from spg_jax.train import preemption  # pylint: disable=g-import-not-at-top  (after flags)
  try:
    result = run(config, workdir)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)
  except FloatingPointError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(EXIT_DIVERGED)
  except preemption.Preempted as e:
    print(f"stopped: {e}", file=sys.stderr)
    sys.exit(e.exit_code)
  if hasattr(result, "selection_metric"):  # a TrainResult: summarise, skip the arrays
    metric = result.selection_metric
    print(f"steps={result.num_steps} best_step={result.best_step} "
          f"best_val_{metric}={result.best_val_score:.4f} "
          f"test_{metric}={result.test_score} skipped_steps={result.skipped_steps} "
          f"wall_time_s={result.wall_time_s:.1f}")
  else:
    print(result)
  sys.exit(0)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    # orbax logs every save at INFO (thousands of lines per protocol run); warnings (e.g. a
    # damaged checkpoint moved aside) still show. `--verbosity=0` brings INFO back.
    logging.set_verbosity(logging.WARNING)
  run_and_exit(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
