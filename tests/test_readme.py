"""The README's code stays true: its functional-API and NNX examples run and produce a
loss."""
import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _run_first_python_block(heading: str) -> dict:
  """Executes the first python block after `heading`; returns its namespace."""
  section = README.read_text().split(heading, 1)[1]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  namespace = {}
  exec(compile(code, str(README), "exec"), namespace)  # pylint: disable=exec-used
  return namespace


def test_readme_functional_example_runs():
  namespace = _run_first_python_block("## SPG on your own model")
  assert np.isfinite(float(namespace["loss"]))
  grads_params, grads_replicas = namespace["grads"]
  assert set(grads_replicas) == {"replicas_0", "replicas_1", "replicas_2"}
  assert float(np.abs(grads_params["head"]["kernel"]).sum()) > 0
  assert namespace["metrics"]["survival"].shape == (4,)


def test_readme_nnx_example_runs_and_drops_the_replicas():
  namespace = _run_first_python_block("## SPG on a Flax NNX model")
  assert np.isfinite(float(namespace["loss"]))
  assert type(namespace["model"]).__name__ == "CNN"
  assert namespace["metrics"]["survival"].shape == (4,)
