"""`pip install spg_jax` without extras is enough to train: pyproject's core dependencies
(with what they require in turn, read from the installed packages' metadata) cover every
module the training stack imports, and every other third-party import of the library is
declared in an extra. Nothing is installed and the network is never used: a subprocess
blocks every importable top-level module outside the core set and imports the stack."""
import ast
import importlib
import importlib.metadata as metadata
import json
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

from packaging.requirements import Requirement

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Imported only by the explicit `.pth` conversion path, when the user has it installed.
OPTIONAL_BY_DESIGN = {"torch"}
# Imported inside functions that every training run (or run_protocol) calls, so they must
# be core even though they are not imported at import time.
ALWAYS_USED_FILES = ("train/metrics_writer.py", "data/embedded.py", "data/pipeline.py",
                     "report.py", "tasks/metrics.py", "train/preemption.py")


def _canon(name):
  return re.sub(r"[-_.]+", "-", name).lower()


def _closure(requirements):
  """Distribution names (canonical) reachable from `requirements` through installed
  metadata, markers evaluated without extras."""
  todo, seen = [Requirement(r) for r in requirements], set()
  while todo:
    req = todo.pop()
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
      continue
    name = _canon(req.name)
    if name in seen:
      continue
    seen.add(name)
    try:
      todo.extend(Requirement(r) for r in (metadata.requires(req.name) or []))
    except metadata.PackageNotFoundError:  # an extra's package not installed here
      pass
  return seen


def _import_names(dists):
  """Top-level import names provided by the installed distributions `dists`."""
  names, installed = set(), set()
  for module, owners in metadata.packages_distributions().items():
    installed |= {_canon(o) for o in owners}
    if any(_canon(o) in dists for o in owners):
      names.add(module)
  # An extra's distribution that is not installed here: its module by the usual convention
  # (soundfile -> soundfile).
  return names | {d.replace("-", "_") for d in dists if d not in installed}


def _hidden():
  """Installed top-level modules that no core distribution provides (spg_jax aside)."""
  installed = set(metadata.packages_distributions())
  return sorted(installed - _import_names(CORE) - set(sys.stdlib_module_names)
                - {"spg_jax"})


CORE = _closure(PYPROJECT["dependencies"])
EXTRAS = {extra: _closure(reqs) for extra, reqs in PYPROJECT["optional-dependencies"].items()}

# Run in a subprocess: `argv[1]` the installed top-level modules outside the core, which
# are made unimportable (as in an environment without them), `argv[2]` further modules
# to import.
_HOOK = r"""
import importlib.abc, json, sys
hidden = set(json.loads(sys.argv[1]))
blocked = []

class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    top = name.partition(".")[0]
    if top not in hidden:
      return None
    blocked.append(top)
    raise ModuleNotFoundError(f"No module named {name!r} (blocked: not a core dependency)")

sys.meta_path.insert(0, Block())
import spg_jax, spg_jax.train, spg_jax.protocol, spg_jax.config, spg_jax.nnx
import spg_jax.train.loop, spg_jax.train.checkpointing, spg_jax.data
for name in spg_jax.__all__:
  getattr(spg_jax, name)
for name in json.loads(sys.argv[2]):
  __import__(name)
print(json.dumps(sorted(set(blocked))))
"""


def _deferred_imports(path):
  """Top-level names imported inside functions of `path` (not at module level)."""
  tree = ast.parse(path.read_text())
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      for sub in ast.walk(node):
        if isinstance(sub, ast.Import):
          names.update(a.name.partition(".")[0] for a in sub.names)
        elif isinstance(sub, ast.ImportFrom) and sub.level == 0 and sub.module:
          names.add(sub.module.partition(".")[0])
  return {n for n in names if n not in sys.stdlib_module_names and n != "spg_jax"}


def test_core_dependencies_cover_the_training_stack():
  deferred = set()
  for rel in ALWAYS_USED_FILES:
    deferred |= _deferred_imports(ROOT / "spg_jax" / rel)
  assert {"tensorboardX", "tqdm", "sklearn", "mnist1d", "matplotlib"} <= deferred, deferred
  hidden = _hidden()
  assert {"tensorflow_datasets", "tokenizers", "pycocotools"} <= set(hidden)
  out = subprocess.run([sys.executable, "-c", _HOOK, json.dumps(hidden),
                        json.dumps(sorted(deferred))],
                       capture_output=True, text=True, timeout=300, cwd=str(ROOT))
  assert out.returncode == 0, out.stderr[-3000:]
  # What was blocked was imported optionally (inside try/except) by some library; the
  # extras' packages never load: the core is enough.
  blocked = set(json.loads(out.stdout.strip().splitlines()[-1]))
  assert not blocked & {"tensorflow_datasets", "tensorflow", "pycocotools", "tokenizers",
                        "torch"}, blocked


def test_the_hook_blocks_what_is_not_core():
  """The check above can fail: with an extra's module required, the subprocess fails."""
  out = subprocess.run([sys.executable, "-c", _HOOK.split("import spg_jax,")[0]
                        + "import tokenizers\n", json.dumps(_hidden()), "[]"],
                       capture_output=True, text=True, timeout=60, cwd=str(ROOT))
  assert out.returncode != 0 and "No module named 'tokenizers'" in out.stderr


def test_every_third_party_import_is_declared():
  """Each non-stdlib module that any file of the library imports comes from a core
  dependency or an extra (or is torch, used only by the explicit .pth conversion)."""
  declared = _import_names(CORE)
  for dists in EXTRAS.values():
    declared |= _import_names(dists)
  missing = {}
  for path in sorted((ROOT / "spg_jax").rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        tops = {a.name.partition(".")[0] for a in node.names}
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        tops = {node.module.partition(".")[0]}
      else:
        continue
      for top in tops - declared - OPTIONAL_BY_DESIGN - set(sys.stdlib_module_names):
        if top != "spg_jax":
          missing.setdefault(top, str(path.relative_to(ROOT)))
  assert not missing, f"imported but not in pyproject (core or an extra): {missing}"
  # The extras the README names exist, and none of them duplicates the core.
  assert {"tfds", "coco", "text"} <= set(EXTRAS)
  for extra in ("tfds", "coco", "text"):
    own = {_canon(Requirement(r).name) for r in PYPROJECT["optional-dependencies"][extra]}
    assert not own & {_canon(Requirement(r).name) for r in PYPROJECT["dependencies"]}, extra


@pytest.mark.parametrize("module, extra", [("tensorflow_datasets", "tfds"),
                                           ("pycocotools.mask", "coco"),
                                           ("tokenizers", "text")])
def test_a_missing_extra_is_one_line_naming_it(monkeypatch, module, extra):
  """Without the extra's package, first use says which extra to install (one line)."""
  from spg_jax import validation  # pylint: disable=import-outside-toplevel
  real = importlib.import_module
  def blocked(name, *args, **kwargs):
    if name == module:
      raise ModuleNotFoundError(f"No module named {name!r}")
    return real(name, *args, **kwargs)
  monkeypatch.setattr(importlib, "import_module", blocked)
  with pytest.raises(ValueError) as error:
    validation.require_extra(module, extra)
  assert str(error.value) == (f"{module} is not installed: this needs the [{extra}] extra "
                              f"(pip install 'spg_jax[{extra}]')")
