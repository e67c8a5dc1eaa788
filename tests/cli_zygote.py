"""A warm `python -m experiments.main` (or another module) for the command-line tests.

Each bad-input case of tests/test_cli_errors.py is a whole program run (flag parsing, config
checks, exit status, stderr); as a fresh interpreter each costs about 2 s of CPU, nearly all
of it importing JAX, Flax and the library. This process imports those once (no device is
touched: JAX starts no backend and no thread at import) and then, per request, forks a
child that runs `experiments.main` as `__main__` exactly as `python -m` does (its flags are
defined fresh in every child, which is the first to execute the module), with stdout and
stderr sent to files. Only the imports are shared; the program's code path is the real one.

Protocol (one JSON object per line): in `{"module": name (default "experiments.main"),
"args": [...], "cwd": dir, "stdout": path, "stderr": path, "timeout": seconds}`; out `{"returncode": int}` (a child past its timeout is
killed: -9).
"""
import importlib
import json
import os
import runpy
import signal
import sys
import time
import traceback

# What experiments.main imports while it runs (all free of import-time side effects).
PRELOADED = ("absl.app", "absl.flags", "absl.logging", "jax", "flax.linen", "optax",
             "orbax.checkpoint", "ml_collections.config_flags", "spg_jax", "spg_jax.config",
             "spg_jax.protocol", "spg_jax.train.loop")


def _run_child(request: dict) -> None:
  """In the forked child: becomes `python -m MODULE ARGS`; never returns."""
  code = 1
  try:
    out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.chdir(request["cwd"])
    sys.path[0] = request["cwd"]  # as `python -m` puts the working directory first
    module = request.get("module", "experiments.main")
    sys.argv = [os.path.join(request["cwd"], *module.split(".")) + ".py", *request["args"]]
    for signum in (signal.SIGTERM, signal.SIGINT):
      signal.signal(signum, signal.SIG_DFL)
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    code = 0
  except SystemExit as e:  # what `python -m` turns into its exit status
    if e.code is None:
      code = 0
    elif isinstance(e.code, int):
      code = e.code
    else:
      print(e.code, file=sys.stderr)
      code = 1
  except BaseException:  # pylint: disable=broad-except  (as the interpreter reports it)
    traceback.print_exc()
    code = 1
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access  (no atexit of the parent's state)


def _wait(pid: int, timeout: float) -> int:
  deadline = time.monotonic() + timeout
  while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
      return os.waitstatus_to_exitcode(status)
    if time.monotonic() > deadline:
      os.kill(pid, signal.SIGKILL)
      os.waitpid(pid, 0)
      return -signal.SIGKILL
    time.sleep(0.01)


def main() -> None:
  for name in PRELOADED:  # the heavy imports, once
    importlib.import_module(name)
  print(json.dumps({"ready": True}), flush=True)
  for line in sys.stdin:
    request = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
      _run_child(request)
    code = _wait(pid, float(request.get("timeout", 120)))
    print(json.dumps({"returncode": code}), flush=True)


if __name__ == "__main__":
  main()
