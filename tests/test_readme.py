"""The README's code stays true: its functional-API example runs and produces a loss."""
import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_functional_example_runs():
  text = README.read_text()
  section = text.split("## SPG on your own model", 1)[1]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  namespace = {}
  exec(compile(code, str(README), "exec"), namespace)  # pylint: disable=exec-used
  assert np.isfinite(float(namespace["loss"]))
  grads_params, grads_replicas = namespace["grads"]
  assert set(grads_replicas) == {"replicas_0", "replicas_1", "replicas_2"}
  assert float(np.abs(grads_params["head"]["kernel"]).sum()) > 0
  assert namespace["metrics"]["survival"].shape == (4,)
