"""The public API: one import path, help() lists it, the core import stays light."""
import pydoc
import subprocess
import sys

import spg_jax


def test_help_lists_every_public_name():
  text = pydoc.render_doc(spg_jax, renderer=pydoc.plaintext)
  for name in spg_jax.__all__:
    assert name in text, name
    assert getattr(spg_jax, name) is not None


def test_import_does_not_load_training_stack():
  code = ("import sys, spg_jax; heavy = [m for m in ('orbax', 'tensorboardX', 'tqdm', "
          "'tensorflow', 'grain') if m in sys.modules]; print(heavy)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, timeout=120)
  assert out.stdout.strip() == "[]"


def test_no_legacy_parallel_apis_in_sources():
  out = subprocess.run(["grep", "-rnE", r"jax\.pmap|experimental\.shard_map", "spg_jax",
                        "experiments", "tests", "--include=*.py", "--exclude=test_api.py"],
                       capture_output=True, text=True,
                       cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
  assert out.returncode == 1, out.stdout  # grep exits 1 when nothing matches
