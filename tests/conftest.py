"""Test set-up, before JAX starts: 8 host CPU devices (so sharding is exercised on CPU) and
XLA's fast-compile mode."""
import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Compile time dominates the suite (hundreds of small programs, each run a few steps): XLA's
# fast compile mode roughly halves it. Tests compare runs made under the same setting (and
# subprocesses inherit it), so every bitwise and tolerance check still means the same.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")


# ----------------------------------------------------------------- command-line programs
import json  # noqa: E402  (after the environment set-up above, which must come first)
import subprocess  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402

import pytest  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def cli_zygote():
  """tests/cli_zygote.py: `python -m <module>` with JAX and the library already imported
  (each run is a forked child executing the real program; ~2 s of CPU less per run). One
  per pytest worker."""
  proc = subprocess.Popen([sys.executable, os.path.join(_REPO, "tests", "cli_zygote.py")],
                          cwd=_REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  assert json.loads(proc.stdout.readline()) == {"ready": True}
  yield proc
  proc.stdin.close()
  proc.wait(timeout=60)


@pytest.fixture
def run_module(cli_zygote, tmp_path_factory):
  """`run_module(module, *args, cwd=repo, timeout=180)` -> an object with `returncode`,
  `stdout`, `stderr` of `python -m module ARGS` (run in the zygote)."""
  logs = tmp_path_factory.mktemp("cli_logs")
  count = iter(range(10**6))

  def run(module, *args, cwd=_REPO, timeout=180):
    n = next(count)
    out, err = logs / f"stdout_{n}", logs / f"stderr_{n}"
    cli_zygote.stdin.write(json.dumps({"module": module, "args": [str(a) for a in args],
                                       "cwd": str(cwd), "stdout": str(out),
                                       "stderr": str(err), "timeout": timeout}) + "\n")
    cli_zygote.stdin.flush()
    code = json.loads(cli_zygote.stdout.readline())["returncode"]
    return types.SimpleNamespace(returncode=code, stdout=out.read_text(),
                                 stderr=err.read_text())
  return run
