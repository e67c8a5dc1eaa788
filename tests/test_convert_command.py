"""`python -m experiments.convert` end to end: a seeded ResNet-18 safetensors file becomes an
export that `load_exported` reads back equal to the direct conversion; bad inputs exit 2 with
one `error:` line and write nothing."""
import json
import os
import pathlib

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from experiments import convert as convert_command
from spg_jax.models import convert
from spg_jax.models.convert import seeded
from spg_jax.train import checkpointing

ROOT = pathlib.Path(__file__).resolve().parents[1]
MANIFEST = json.loads((ROOT / "tests" / "golden" / "torchvision" / "resnet18.json")
                      .read_text())["manifest"]


@pytest.fixture(scope="module")
def state():
  return seeded.seeded_state_dict(MANIFEST, 0)


@pytest.fixture(scope="module")
def weights(state, tmp_path_factory) -> pathlib.Path:
  path = tmp_path_factory.mktemp("weights") / "resnet18.safetensors"
  save_file(state, str(path))
  return path


@pytest.fixture
def command(run_module):
  """`command(*args)`: `python -m experiments.convert ARGS` in the warm zygote (conftest)."""
  return lambda *args: run_module("experiments.convert", *args, timeout=300)


def test_converts_and_exports(command, weights, tmp_path):
  out = tmp_path / "exports" / "resnet18"  # the parent is created
  result = command("--source=torchvision", "--model=resnet18", f"--weights={weights}",
                   f"--out={out}")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"wrote {out}: torchvision resnet18 -> ")
  assert "num_classes=1000, 122 tensors (20 dropped), 102 variables, 11,689,512 parameters" \
      in lines[0]
  assert sorted(os.listdir(out.parent)) == ["resnet18"]  # no temporary folder left

  exported = checkpointing.load_exported(str(out))
  direct, info = convert.convert("torchvision", "resnet18", str(weights))
  assert set(exported) == {"params", "batch_stats"}
  assert jax.tree.structure(exported) == jax.tree.structure(direct)
  assert jax.tree.all(jax.tree.map(np.array_equal, exported, direct))
  model = info.build()
  images = seeded.seeded_input(0, (2, 3, 32, 32)).transpose(0, 2, 3, 1)
  apply = jax.jit(lambda v: model.apply(v, images, train=False)[0])
  np.testing.assert_array_equal(np.asarray(apply(exported)), np.asarray(apply(direct)))


def _bad_file(state, directory: pathlib.Path, name: str, change) -> pathlib.Path:
  tensors = dict(state)
  change(tensors)
  path = directory / f"{name}.safetensors"
  save_file(tensors, str(path))
  return path


def _drop(key):
  return lambda t: t.pop(key)


def _add(key, value):
  return lambda t: t.__setitem__(key, value)


def _reshape(key, shape):
  return lambda t: t.__setitem__(key, np.zeros(shape, np.float32))


@pytest.mark.parametrize("name, change, message", [
    ("missing", _drop("layer3.0.downsample.0.weight"),
     "error: missing key 'layer3.0.downsample.0.weight' (expected shape (256, 128, 1, 1), "
     "for Flax leaf params/backbone/layer3_0/downsample/conv/kernel (1, 1, 128, 256))"),
    ("extra", _add("fc2.weight", np.zeros((3, 4), np.float32)),
     "error: unexpected key 'fc2.weight' (3, 4) in the weights file"),
    ("shape", _reshape("layer1.1.bn2.running_var", (65,)),
     "error: key 'layer1.1.bn2.running_var': shape (65,) in the file, expected (64,) (for "
     "Flax leaf batch_stats/backbone/layer1_1/conv2/bn/var (64,)"),
], ids=["missing_key", "extra_key", "wrong_shape"])
def test_bad_weights_exit_2_and_write_nothing(command, state, tmp_path, name, change, message):
  path = _bad_file(state, tmp_path, name, change)
  out = tmp_path / "out"
  result = command("--model=resnet18", f"--weights={path}", f"--out={out}")
  assert result.returncode == 2
  assert result.stdout == ""
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(message), lines
  assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.safetensors"]


@pytest.mark.parametrize("args, message", [
    (("--model=resnet152",), "error: model='resnet152': not a torchvision model this "
     "converter knows; allowed: resnet18, "),
    (("--model=resnet18", "--source=timm"), "error: source='timm': must be one of "
     "torchvision"),
    (("--model=resnet18", "--bogus=1"), "error: unrecognized arguments: --bogus=1"),
    (("--mod=resnet18",), "error: the following arguments are required: --model"),
], ids=["unknown_model", "unknown_source", "unknown_flag", "abbreviated_flag"])
def test_bad_flags_exit_2_and_write_nothing(command, weights, tmp_path, args, message):
  out = tmp_path / "out"
  result = command(*args, f"--weights={weights}", f"--out={out}")
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(message), lines
  assert not out.exists()


def test_missing_weights_flag_and_file(command, tmp_path):
  out = tmp_path / "out"
  result = command("--model=resnet18", f"--out={out}")
  assert (result.returncode, result.stderr) == (
      2, "error: the following arguments are required: --weights\n")
  # In process from here on (same code path, no new interpreter).
  assert convert_command.main(["--model=resnet18", f"--weights={tmp_path / 'no.safetensors'}",
                               f"--out={out}"]) == 2
  assert not out.exists()


def test_existing_out_needs_overwrite(weights, tmp_path, capsys):
  out = tmp_path / "out"
  args = ["--model=resnet18", f"--weights={weights}", f"--out={out}"]
  out.mkdir()
  (out / "notes.txt").write_text("mine")
  assert convert_command.main(args) == 2
  assert capsys.readouterr().err == f"error: --out={out}: exists; pass --overwrite to replace it\n"
  # --overwrite replaces exports only, never other folders.
  assert convert_command.main(args + ["--overwrite"]) == 2
  assert "is not an spg_jax export; not replaced" in capsys.readouterr().err
  assert (out / "notes.txt").read_text() == "mine"
  (out / "notes.txt").unlink()
  assert convert_command.main(args + ["--overwrite"]) == 0  # an empty folder may be replaced
  first = checkpointing.load_exported(str(out))
  assert convert_command.main(args + ["--overwrite"]) == 0  # and so may an export
  assert capsys.readouterr().out.count("wrote ") == 2
  assert jax.tree.all(jax.tree.map(np.array_equal, checkpointing.load_exported(str(out)),
                                   first))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
