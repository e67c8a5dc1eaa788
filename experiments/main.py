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
       checkpoint of another model, a workdir whose stored config.json differs from this
       config: pass --allow_config_change to continue it with the new config). Found
       before anything is written to the workdir (bad
       batches after the first one: without saving anything of theirs).
  3    diverged: one line `error: step N: non-finite <term> ...`; the last checkpoint is
       kept (`--config.skip_nonfinite=True` skips such steps instead; then more than
       `config.max_skipped_fraction` of the steps skipped is this error too).
  143  preempted: SIGTERM arrived; the same command resumes (128 + SIGTERM, so job systems
       see "terminated"). One line `stopped: preempted (SIGTERM) ...` says where: at any
       moment, any number of signals; the run finishes the step (evaluation, save, export)
       it is in, saves a checkpoint of the last finished step unless one is on disk, waits
       for it and exits; during start-up nothing is written; a protocol keeps its
       finished runs and does not retrain them.
  130  interrupted: SIGINT (Ctrl-C), handled like SIGTERM (128 + SIGINT).
Evaluate mode (nothing to save) exits at once on the first signal, with 143 / 130.
Forced exit: the third stop request exits at once with 143 / 130 (128 + that signal) and
  one line `stopped: forced exit ...`; signals less than 1 s apart are one request (make,
  launchers and job systems send copies at once), so press Ctrl-C three times, a second
  apart. Nothing is saved then, but only complete checkpoints remain (each is written to a
  temporary folder and renamed when whole; a rerun moves an unfinished one aside), so the
  same command resumes, losing the steps since the last checkpoint. The exit waits for a
  running XLA compilation or device call to return; SIGKILL is the instant stop.
A signal that arrives after the work is done (the run's results are complete) ends with 0;
  once the exit status is decided, stop signals are ignored while the process exits.
A SIGKILL loses only the steps since the last checkpoint (`--config.checkpoint.every_steps`).
"""
import signal
import sys


def record_stop_signals() -> list[int]:
  """Makes SIGTERM and SIGINT append their number to the returned list and nothing else (no
  lock, no I/O), until `run_and_exit` installs the trainer's handler and takes them over:
  a stop signal during start-up (imports, flag parsing) then stops the run cleanly
  instead of killing the process (SIGTERM) or raising KeyboardInterrupt (SIGINT)."""
  received: list[int] = []
  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, lambda number, frame: received.append(number))
  return received


# Run as a program: from the first line, before the heavy imports below.
_STARTUP_SIGNALS = record_stop_signals() if __name__ == "__main__" else []

import json  # pylint: disable=g-import-not-at-top,wrong-import-position
import os  # pylint: disable=g-import-not-at-top,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import logging  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file "
                                          "(path[:variant]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, "
                               "export); an existing checkpoint there is resumed.")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "Continue the run in --workdir although its stored "
    "config.json differs from this config (the change is recorded in "
    "config_changes.json); without it such a rerun is refused.")
flags.mark_flags_as_required(["config", "workdir"])

# `--config.<field>=(a,b,...)` or `[a,b,...]`: a tuple for a field whose default is a number
# (per-replica `spg.rate`); ml_collections would parse it with the field's float parser.
_SEQUENCE_OPENERS = ("(", "[")


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


def run(config, workdir: str, allow_config_change: bool = False):
  """Validates `config`, then dispatches to evaluate-only, the protocol or
  `train_and_evaluate`. A training or protocol workdir stores its config
  (`spg_jax.train.workdir_config`): a rerun with another config is refused unless
  `allow_config_change`."""
  start_distributed(config)
  if config.get("mode", "train") == "evaluate":
    return evaluate_only(config, workdir)
  from spg_jax.train import workdir_config  # pylint: disable=g-import-not-at-top
  if "protocol" in config:
    from spg_jax import protocol  # pylint: disable=g-import-not-at-top  (only when needed)
    protocol.validate_protocol(config)
    with workdir_config.recorded(config, workdir, allow_change=allow_config_change):
      return protocol.run_protocol(config, workdir)
  from spg_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from spg_jax.train import loop  # pylint: disable=g-import-not-at-top
  config_lib.validate_config(config)
  with workdir_config.recorded(config, workdir, allow_change=allow_config_change):
    return loop.train_and_evaluate(config, workdir)


def run_and_exit(config, workdir: str, startup_signals=(),
                 allow_config_change: bool = False) -> None:
  """`run`, a one-line summary or error, and `sys.exit` with the status documented above.

  SIGTERM and SIGINT only request a stop while inside (`spg_jax.train.preemption`);
  `startup_signals`: those `record_stop_signals` received before."""
  from spg_jax.train import preemption  # pylint: disable=g-import-not-at-top  (after flags)
  # Evaluate mode writes nothing before its last rename, so a stop signal exits at once.
  force_after = 1 if config.get("mode", "train") == "evaluate" else preemption.FORCE_AFTER
  # sys.exit inside: the status is decided here, the request is never passed on.
  with preemption.stop_requests(pending=startup_signals, force_after=force_after) as stop:
    try:
      if stop.is_set() and not config.get("multihost", False):
        # Before anything is built (with several processes, the library's first stop
        # point decides, in agreement).
        raise stop.preempted(detail="during start-up; nothing was written")
      result = run(config, workdir, allow_config_change)
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
    if stop.is_set():
      print(f"note: {signal.Signals(stop.signum).name} arrived after the work was done; "
            f"nothing to resume", file=sys.stderr)
    sys.exit(0)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    # orbax logs every save at INFO (thousands of lines per protocol run); warnings (e.g. a
    # damaged checkpoint moved aside) still show. `--verbosity=0` brings INFO back.
    logging.set_verbosity(logging.WARNING)
  try:
    run_and_exit(_CONFIG.value, _WORKDIR.value, _STARTUP_SIGNALS,
                 _ALLOW_CONFIG_CHANGE.value)
  finally:
    # The exit status is decided: later stop signals must not turn it into a death by
    # signal while the interpreter shuts down (Python resets its handlers to the default
    # action late in shutdown; ignored signals stay ignored).
    for signum in (signal.SIGTERM, signal.SIGINT):
      signal.signal(signum, signal.SIG_IGN)


def _root_cause(error: BaseException) -> BaseException:
  """The innermost exception of a chain (absl wraps a config file's own error)."""
  while error.__cause__ is not None or (error.__context__ is not None
                                        and not error.__suppress_context__):
    error = error.__cause__ or error.__context__
  return error


def _unknown_field_message(error: BaseException, argv) -> str:
  """ml_collections' unknown-override error (`'ratee'` + "Did you mean ...") as one line
  naming the flag that was given."""
  text = error
  while isinstance(text, BaseException):  # AttributeError(KeyError("'ratee'\nDid you...")
    text = text.args[0] if text.args else ""
  lines = [l.strip() for l in str(text).splitlines() if l.strip()]
  key = lines[0].strip("'\"") if lines else "?"
  given = [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")
           and a.split("=", 1)[0].rsplit(".", 1)[-1] == key]
  flag = given[0] if given else f"--config...{key}"
  hint = next((l for l in lines[1:] if l.lower().startswith("did you mean")), "")
  return (f"{flag}: the config has no field {key!r} there"
          + (f" ({hint[0].lower() + hint[1:]})" if hint else "")
          + "; overrides can only set fields the config file defines")


def _check_config_loaded(spec: str) -> None:
  """config_flags defers a config file's load error to the first use of the config: surface
  it now, naming the file (`spec`: the `--config` value)."""
  try:
    _CONFIG.value.keys()
  except Exception as e:  # pylint: disable=broad-except
    path = spec.split(":", 1)[0]
    if path and not os.path.isfile(path):
      raise ValueError(f"--config={spec}: no such config file") from None
    raise ValueError(f"--config={spec}: the config file does not load: "
                     f"{' '.join(str(_root_cause(e)).split())}") from None


def _split_sequence_overrides(argv) -> tuple[list[str], list[tuple[str, str]]]:
  """`argv` without the `--config.<field>=(...)`/`[...]` overrides, and those overrides as
  `(field path, value text)`, applied after the config is loaded."""
  rest, sequences = [], []
  for arg in argv:
    name, eq, value = arg.partition("=")
    if (eq and name.startswith("--config.") and value.strip().startswith(_SEQUENCE_OPENERS)):
      sequences.append((name[len("--config."):], value))
    else:
      rest.append(arg)
  return rest, sequences


def _apply_sequence_override(config, path: str, text: str) -> None:
  """Sets `config.<path>` to the tuple `text` spells (one-line ValueError otherwise)."""
  import ast  # pylint: disable=g-import-not-at-top
  flag = f"--config.{path}={text}"
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    raise ValueError(f"{flag}: not a tuple of numbers, e.g. (0.1,0.2,0.3)") from None
  if not isinstance(value, (tuple, list)) or not all(
      isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
    raise ValueError(f"{flag}: not a tuple of numbers, e.g. (0.1,0.2,0.3)")
  *parents, field = path.split(".")
  node = config
  for i, key in enumerate(parents + [field]):
    if not hasattr(node, "keys") or key not in node.keys():
      where = ".".join((parents + [field])[:i]) or "the top level"
      raise ValueError(f"--config.{path}: the config has no field {key!r} there (at "
                       f"{where}); overrides can only set fields the config file defines")
    if key != field:
      node = node[key]
  try:  # an existing field: allowed in a locked config; type-safe fields check the type
    node[field] = tuple(value)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{flag}: {' '.join(str(e).split())}") from None


def parse_flags(argv):
  """absl's flag parsing, with every error it raises (unknown flag, a config file that does
  not exist or fails to build, a bad variant, a value that does not parse, an override of a
  field that does not exist) as one line `error: ...` and exit 2, like every bad input.
  Tuple overrides (`--config.spg.rate=(0.1,0.2,0.3)`) are set after the config loads."""
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "")
  try:
    plain, sequences = _split_sequence_overrides(argv)
    rest = flags.FLAGS(plain)
    _check_config_loaded(spec)
    for path, text in sequences:
      _apply_sequence_override(_CONFIG.value, path, text)
    return rest
  except Exception as e:  # pylint: disable=broad-except  (any parse error: one line, exit 2)
    if isinstance(e, (AttributeError, KeyError)):  # ml_collections' unknown override
      message = _unknown_field_message(e, argv)
    else:
      outer = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      cause = _root_cause(e)
      inner = " ".join(str(cause).split()) if cause is not e else ""
      message = f"{outer} {inner}".strip() if inner and inner not in outer else outer
      if not isinstance(e, (flags.Error, ValueError)) and spec:  # raised by the config file
        message = f"--config={spec}: building the config failed: {type(e).__name__}: {message}"
    print(f"error: command line: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
