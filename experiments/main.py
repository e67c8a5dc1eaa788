r"""Runs one experiment config: training, or the evaluation protocol if the config has one.

  python -m experiments.main --config=experiments/configs/mnist1d_spg.py:quick \
      --workdir=/tmp/mnist1d --config.seed=1 --config.spg.enabled=False

Flags live here only. A bad config value exits non-zero with a one-line error before any
compilation and before anything is written to the workdir.
"""
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file "
                                          "(path[:variant]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, "
                               "export); an existing checkpoint there is resumed.")
flags.mark_flags_as_required(["config", "workdir"])


def run(config, workdir: str):
  """Validates `config`, then dispatches to the protocol or to `train_and_evaluate`."""
  import jax  # pylint: disable=g-import-not-at-top  (after flag parsing)
  if config.get("multihost", False):
    jax.distributed.initialize()  # before any computation
  if "protocol" in config:
    from spg_jax import protocol  # pylint: disable=g-import-not-at-top  (only when needed)
    return protocol.run_protocol(config, workdir)
  from spg_jax import config_validation, trainer  # pylint: disable=g-import-not-at-top
  config_validation.validate_config(config)
  return trainer.train_and_evaluate(config, workdir)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    result = run(_CONFIG.value, _WORKDIR.value)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if hasattr(result, "best_val_accuracy"):  # a TrainResult: summarise, skip the arrays
    print(f"steps={result.num_steps} best_step={result.best_step} "
          f"best_val_accuracy={result.best_val_accuracy:.4f} "
          f"test_accuracy={result.test_accuracy} wall_time_s={result.wall_time_s:.1f}")
  else:
    print(result)


if __name__ == "__main__":
  app.run(main)
