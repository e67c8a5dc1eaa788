r"""Runs one experiment config: training, or the evaluation protocol if the config has one,
or (`--config.mode=evaluate`) only an evaluation of a saved model.

  python -m experiments.main --config=experiments/configs/mnist1d_spg.py:quick \
      --workdir=/tmp/mnist1d --config.seed=1 --config.spg.enabled=False
  python -m experiments.main --config=experiments/configs/imagenet_resnet50_protocol.py \
      --workdir=/tmp/r50_eval --config.mode=evaluate \
      --config.protocol.init_checkpoint=/ckpt/resnet50_tv   # top-1/top-5, nothing trained

Evaluate mode evaluates `config.protocol.init_checkpoint` (protocol configs) or
`config.init_checkpoint` on the validation and test splits, prints one line per split with
the task's metrics and writes them to `<workdir>/evaluation.json`.

Flags live here only. Exit status:
  0    finished.
  2    bad input: one line `error: ...` naming the cause (a flag or override that does not
       parse or does not exist, a config value, an unknown model or
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
import json
import os
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


def evaluate_only(config, workdir: str) -> dict:
  """`--config.mode=evaluate`: the metrics of the configured checkpoint on validation and
  test, printed and written to `<workdir>/evaluation.json` (written whole, or not at all)."""
  from spg_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from spg_jax.train import checkpoint_eval  # pylint: disable=g-import-not-at-top
  config_lib.validate_mode(config)  # names the protocol's field when it is the one set
  if "protocol" in config:
    from spg_jax import protocol  # pylint: disable=g-import-not-at-top
    field, checkpoint = "config.protocol.init_checkpoint", config.protocol.init_checkpoint
    config = protocol.base_stage_config(config, config.protocol.seeds[0])
    config.init_checkpoint = checkpoint
  else:
    field, checkpoint = "config.init_checkpoint", config.init_checkpoint
  config_lib.validate_config(config)
  results = checkpoint_eval.evaluate_checkpoint(config, checkpoint, field=field)
  for split, metrics in results.items():
    print(f"{split}: " + " ".join(f"{k}={v:.6g}" for k, v in sorted(metrics.items())
                                  if isinstance(v, (int, float))))
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "evaluation.json")
  with open(path + ".tmp", "w") as f:
    json.dump({"checkpoint": checkpoint, "model": config.model.name,
               "dataset": config.dataset.name, "metrics": results}, f, indent=1,
              default=lambda v: getattr(v, "tolist", lambda: str(v))())
  os.replace(path + ".tmp", path)
  return results


def run(config, workdir: str):
  """Validates `config`, then dispatches to evaluate-only, the protocol or
  `train_and_evaluate`."""
  start_distributed(config)
  if config.get("mode", "train") == "evaluate":
    return evaluate_only(config, workdir)
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
  if isinstance(result, dict):  # evaluate mode: already printed
    pass
  elif hasattr(result, "selection_metric"):  # a TrainResult: summarise, skip the arrays
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


def parse_flags(argv):
  """absl's flag parsing, with its errors (unknown flag, bad value, an override of a config
  field that does not exist) as one line `error: ...` and exit 2, like every bad input."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, (AttributeError, KeyError)):  # ml_collections' unknown override
      message = (f"--config.<field> override names no field of the config "
                 f"({message.strip(chr(34))}); see the config file for the fields")
    print(f"error: command line: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
