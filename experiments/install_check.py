"""Checks a plain `pip install` of this repository: in a throwaway virtual environment,
`pip install <repo>` (no extras), then the README's functional-API and NNX examples and a
short `train_and_evaluate` on the embedded MNIST-1D, run from outside the repository so
that only the installed package is importable. Needs the package registry (it downloads
JAX and the rest), so it is a command to run by hand, not a test:

  python -m experiments.install_check            # prints each stage and its time
  python -m experiments.install_check --keep=/tmp/spg_venv
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

_TRAIN = """
import spg_jax
from spg_jax import config as config_lib
config = config_lib.quick(config_lib.base_config(), num_steps=20)
config.progress_bar = False
result = spg_jax.train_and_evaluate(config, {workdir!r})
print("train_and_evaluate: steps", result.num_steps, "test accuracy", result.test_score)
"""


def readme_block(heading: str) -> str:
  """The first python block after `heading` in the README."""
  section = (ROOT / "README.md").read_text().split(heading, 1)[1]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _stage(name: str, command: list[str], cwd: str) -> None:
  start = time.time()
  done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
  if done.returncode != 0:
    sys.exit(f"error: {name} failed (exit {done.returncode}): "
             f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
  print(f"{name}: ok in {time.time() - start:.0f} s")
  for line in done.stdout.strip().splitlines()[-2:]:
    print(f"  {line}")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--keep", default=None, help="create the venv here and keep it")
  args = parser.parse_args(argv)
  with tempfile.TemporaryDirectory() as tmp:
    venv = args.keep or os.path.join(tmp, "venv")
    python = os.path.join(venv, "bin", "python")
    _stage("venv", [sys.executable, "-m", "venv", venv], tmp)
    _stage("pip install <repo> (no extras)", [python, "-m", "pip", "install", "-q",
                                               str(ROOT)], tmp)
    scripts = {"README functional example": readme_block("## SPG on your own model"),
               "README NNX example": readme_block("## SPG on a Flax NNX model"),
               "train_and_evaluate on mnist1d": _TRAIN.format(
                   workdir=os.path.join(tmp, "run"))}
    for name, code in scripts.items():
      path = os.path.join(tmp, "check.py")
      pathlib.Path(path).write_text(code + "\nprint('done')\n")
      _stage(name, [python, path], tmp)


if __name__ == "__main__":
  main()
