"""The public API: one import path, help() lists it briefly, docs/API.md lists every name,
the core import stays light."""
import pathlib
import pydoc
import subprocess
import sys

import spg_jax


def test_help_lists_every_public_name():
  text = pydoc.render_doc(spg_jax, renderer=pydoc.plaintext)
  for name in spg_jax.__all__:
    assert name in text, name
    assert getattr(spg_jax, name) is not None


def test_help_is_the_index_not_inherited_text():
  """help(spg_jax) was 5,767 lines (every linen class's inherited Flax methods)."""
  text = pydoc.render_doc(spg_jax, renderer=pydoc.plaintext)
  assert len(text.splitlines()) < 150, len(text.splitlines())
  assert "Public API" in text and "flax.linen.module" not in text


def test_api_page_lists_every_public_name():
  page = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "API.md").read_text()
  import spg_jax.nnx  # pylint: disable=g-import-not-at-top
  names = list(spg_jax.__all__) + ["SPGReplicas", "spg_step_logits", "SPGTrainable",
                                   "spg_optimizer"]
  missing = [n for n in names if f"`{n}" not in page and f"/ `{n}" not in page]
  assert not missing, missing
  for name in ("SPGReplicas", "spg_step_logits", "SPGTrainable", "spg_optimizer"):
    assert callable(getattr(spg_jax.nnx, name))


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
