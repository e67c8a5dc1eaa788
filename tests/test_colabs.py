"""The colabs: each runs end to end on CPU, draws its figures, and matches its jupytext twin.

Every notebook under `colabs/` is executed in a fresh "python3" kernel with nbclient; any cell
error fails the test. The kernel runs as after the Colab install cell: the library installed,
cwd an empty directory outside the repository (the notebooks need nothing but `spg_jax`),
JAX on one CPU device, matplotlib's inline backend. Two knobs make it quicker where the
numbers do not matter (nothing here checks them):
  * `SPG_JAX_COLAB_CI=1`: the "CI size" every notebook reads (fewer training steps, sparser
    validation; the same cells and figures), documented in each notebook;
  * `JAX_DISABLE_MOST_OPTIMIZATIONS=1`: XLA compiles with little optimisation, which pays
    on these tiny models (compilation and eager op-by-op dispatch dominate, not FLOPs).
The repository stores the notebooks without outputs, each paired with a percent-format `.py`
twin holding the same cells.
"""
import os
import pathlib

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLABS = ROOT / "colabs"
NOTEBOOKS = ("01_quickstart", "02_bring_your_own_model", "03_anatomy_of_a_trajectory")
# Per cell; generous because the CPU may be shared (each notebook runs in well under a minute
# at the CI size).
CELL_TIMEOUT_S = 300
INSTALL_GUARD = 'if "google.colab" in sys.modules:'
CI_SIZE_ENV = "SPG_JAX_COLAB_CI"


def _kernel_env() -> dict:
  """The test process's environment, but JAX on one CPU device (as on a laptop or in a CPU
  Colab: conftest forces 8 host devices for the sharding tests), no forced matplotlib
  backend (the kernel's inline backend is what renders image/png outputs), the notebooks'
  CI size and XLA's quick compilation (see the module docstring)."""
  env = dict(os.environ)
  env["JAX_PLATFORMS"] = "cpu"
  env[CI_SIZE_ENV] = "1"
  env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join(flags)
  env.pop("MPLBACKEND", None)
  return env


def _read(name: str) -> nbformat.NotebookNode:
  return nbformat.read(COLABS / f"{name}.ipynb", as_version=4)


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
  return [(cell.cell_type, cell.source.strip()) for cell in nb.cells]


def _images(nb: nbformat.NotebookNode) -> int:
  return sum("image/png" in output.get("data", {})
             for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs)


def test_colabs_folder_holds_exactly_the_paired_notebooks():
  notebooks = sorted(p.name for p in COLABS.glob("*.ipynb"))
  twins = sorted(p.name for p in COLABS.glob("*.py"))
  assert notebooks == [f"{name}.ipynb" for name in NOTEBOOKS]
  assert twins == [f"{name}.py" for name in NOTEBOOKS]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_matches_its_jupytext_twin_and_has_no_outputs(name):
  nb = _read(name)
  twin = jupytext.read(COLABS / f"{name}.py")
  assert _cells(nb) == _cells(twin), f"{name}: run `jupytext --sync colabs/{name}.py`"
  assert nb.metadata["kernelspec"]["name"] == "python3"
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, \
          f"{name}: stored outputs; strip them (jupytext --to ipynb colabs/{name}.py)"


def _code(name: str) -> list[str]:
  return [cell.source for cell in _read(name).cells if cell.cell_type == "code"]


def test_notebooks_share_one_install_cell_that_runs_only_in_colab():
  first = {_code(name)[0] for name in NOTEBOOKS}
  assert len(first) == 1
  (install,) = first
  assert INSTALL_GUARD in install and "pip install" in install
  # The library alone: no clone of the repository, no sys.path or cwd tricks.
  for repository_only in ("git clone", "sys.path", "chdir", " -e "):
    assert repository_only not in install, repository_only
  guarded = install.split(INSTALL_GUARD, 1)[1]
  assert all(line.startswith("  ") for line in guarded.splitlines()[1:] if line.strip()), \
      "everything after the Colab guard must be inside it (a no-op elsewhere)"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_uses_spg_jax(name):
  imports = [line for source in _code(name) for line in source.splitlines()
             if line.startswith(("import spg_jax", "from spg_jax"))]
  assert imports, f"{name}: imports nothing from spg_jax"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_needs_only_the_installed_library(name):
  code = "\n".join(_code(name))
  for line in code.splitlines():
    assert not line.startswith(("import experiments", "from experiments")), \
        f"{name}: {line!r}: the repository's experiments/ is not installed by pip"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_has_a_ci_size(name):
  assert CI_SIZE_ENV in "\n".join(_code(name)), \
      f"{name}: reads no {CI_SIZE_ENV}, so the tests run it at full size"


@pytest.mark.parametrize("name", ["01_quickstart", "03_anatomy_of_a_trajectory"])
def test_notebook_leaves_training_to_the_library(name):
  code = "\n".join(_code(name))
  for call in ("grad(", "apply_updates(", "optax."):
    assert call not in code, f"{name}: {call!r}: training belongs in spg_jax, not the notebook"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_on_cpu_and_renders_figures(name, tmp_path):
  nb = _read(name)
  client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}})
  client.execute(env=_kernel_env())  # raises CellExecutionError on any cell error
  shows = sum(cell.source.count("plt.show()") for cell in nb.cells if cell.cell_type == "code")
  assert shows >= 1
  assert _images(nb) >= shows, f"{name}: {_images(nb)} image/png outputs for {shows} figures"
