"""The converters' shared parts: reading files, the transforms, the key/shape plan and its
one-line errors, and the seeded stand-in state dicts. Shapes come from the stored
torchvision manifests; no torch is needed (one test makes sure it is not used)."""
import json
import pathlib
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from spg_jax.models import convert
from spg_jax.models.convert import common, seeded

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden" / "torchvision"


def manifest(name: str) -> list:
  return json.loads((GOLDEN / f"{name}.json").read_text())["manifest"]


def shapes(rows) -> dict:
  return common.shapes_from_manifest(rows)


def one_line(error: pytest.ExceptionInfo) -> str:
  text = str(error.value)
  assert "\n" not in text and text
  return text


# ------------------------------------------------------------------------------------------
# Transforms, on small arrays with hand-checked results.

def test_conv_kernel_is_torch_to_flax_layout():
  weight = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)  # [O, I, kh, kw]
  source = common.conv_kernel("c.weight", (2, 2, 3, 2))  # the Flax leaf [kh, kw, I, O]
  assert source.shape == (2, 3, 2, 2)
  kernel = source.to_flax(weight)
  assert kernel.shape == (2, 2, 3, 2)
  # kernel[h, w, i, o] == weight[o, i, h, w]: two entries by hand.
  assert kernel[0, 1, 2, 1] == weight[1, 2, 0, 1] == 12 + 8 + 1
  assert kernel[1, 0, 0, 0] == weight[0, 0, 1, 0] == 2


def test_dense_and_attention_layouts():
  weight = np.arange(6, dtype=np.float32).reshape(2, 3)  # torch Linear [out=2, in=3]
  np.testing.assert_array_equal(common.dense_kernel("l.weight", (3, 2)).to_flax(weight),
                                [[0, 3], [1, 4], [2, 5]])
  # Packed q, k, v: [3 * H * hd, D] with H = 2 heads of hd = 1, D = 2; rows q0 q1 k0 k1 v0 v1.
  packed = np.arange(12, dtype=np.float32).reshape(6, 2)
  key = common.packed_kernel("a.in_proj_weight", (2, 2, 1), index=1, parts=3)
  assert key.shape == (6, 2) and key.parts == 3
  # key rows are packed[2:4] = [[4, 5], [6, 7]]; kernel[d, h, 0] = row h, column d.
  np.testing.assert_array_equal(key.to_flax(packed)[:, :, 0], [[4, 6], [5, 7]])
  bias = common.packed_bias("a.in_proj_bias", (2, 1), index=2, parts=3)
  np.testing.assert_array_equal(bias.to_flax(np.arange(6, dtype=np.float32)), [[4], [5]])
  # Output projection [D=3, H*hd=2] -> [H=2, hd=1, D=3].
  out = common.heads_out_kernel("a.out_proj.weight", (2, 1, 3))
  assert out.shape == (3, 2)
  np.testing.assert_array_equal(out.to_flax(np.arange(6, dtype=np.float32).reshape(3, 2)),
                                [[[0, 2, 4]], [[1, 3, 5]]])


# ------------------------------------------------------------------------------------------
# The plan's errors, through the public entry points (resnet18's real manifest).

def test_missing_key_names_key_and_shapes():
  rows = [r for r in manifest("resnet18") if r[0] != "layer2.1.conv1.weight"]
  with pytest.raises(ValueError) as error:
    convert.check_shapes("torchvision", "resnet18", shapes(rows))
  text = one_line(error)
  assert text.startswith("missing key 'layer2.1.conv1.weight' (expected shape "
                         "(128, 128, 3, 3), for Flax leaf "
                         "params/backbone/layer2_1/conv1/conv/kernel (3, 3, 128, 128))")


def test_missing_head_names_the_key():
  rows = [r for r in manifest("resnet18") if not r[0].startswith("fc.")]
  with pytest.raises(ValueError, match=r"^missing key 'fc.weight'"):
    convert.check_shapes("torchvision", "resnet18", shapes(rows))


def test_extra_key_names_key_and_shape():
  rows = manifest("resnet18") + [["layer5.0.conv1.weight", [8, 8, 3, 3], "float32"],
                                 ["extra.bias", [8], "float32"]]
  with pytest.raises(ValueError) as error:
    convert.check_shapes("torchvision", "resnet18", shapes(rows))
  assert one_line(error) == (
      "unexpected key 'layer5.0.conv1.weight' (8, 8, 3, 3) in the weights file: no Flax "
      "leaf of resnet18(num_classes=1000) reads it (also 'extra.bias')")


def test_counter_of_an_unknown_batch_norm_is_an_extra_key():
  rows = manifest("resnet18") + [["bn9.num_batches_tracked", [], "int64"]]
  with pytest.raises(ValueError, match=r"^unexpected key 'bn9.num_batches_tracked' \(\)"):
    convert.check_shapes("torchvision", "resnet18", shapes(rows))


def test_wrong_shape_names_key_and_both_shapes():
  rows = [[k, [64, 3, 5, 5] if k == "conv1.weight" else s, d] for k, s, d in manifest("resnet18")]
  with pytest.raises(ValueError) as error:
    convert.check_shapes("torchvision", "resnet18", shapes(rows))
  assert one_line(error) == (
      "key 'conv1.weight': shape (64, 3, 5, 5) in the file, expected (64, 3, 7, 7) (for Flax "
      "leaf params/backbone/stem/conv/kernel (7, 7, 3, 64) of resnet18(num_classes=1000))")


def test_integer_tensor_is_refused():
  rows = [[k, s, "int64" if k == "fc.bias" else d] for k, s, d in manifest("resnet18")]
  with pytest.raises(ValueError, match=r"^key 'fc.bias': dtype int64 in the file"):
    convert.check_shapes("torchvision", "resnet18", shapes(rows))


def test_leaf_no_key_fills_and_key_read_twice():
  leaves = {("params", "a", "kernel"): (2, 3), ("params", "b", "kernel"): (2, 3)}
  file_shapes = {"a.weight": ((3, 2), "float32")}
  def only_a(collection, names, shape):
    return common.dense_kernel("a.weight", shape) if names[0] == "a" else None
  with pytest.raises(ValueError) as error:
    common.make_plan(leaves, only_a, file_shapes, what="toy")
  assert one_line(error).startswith("Flax leaf params/b/kernel (2, 3) of toy: no key of the "
                                    "weights file maps to it")
  def both_a(collection, names, shape):
    return common.dense_kernel("a.weight", shape)
  with pytest.raises(ValueError, match=r"^key 'a.weight' would fill 2 Flax leaves "
                     r"\(params/a/kernel, params/b/kernel\), expected 1"):
    common.make_plan(leaves, both_a, file_shapes, what="toy")


def test_fill_builds_nested_float32_variables():
  leaves = {("params", "a", "kernel"): (2, 3), ("batch_stats", "n", "mean"): (3,)}
  def source(collection, names, shape):
    if names == ("a", "kernel"):
      return common.dense_kernel("a.weight", shape)
    return common.batch_norm(collection, names[1:], shape, "n")
  tensors = {"a.weight": np.arange(6, dtype=np.float64).reshape(3, 2),
             "n.running_mean": np.ones(3, np.float16), "n.num_batches_tracked": np.int64(7)}
  plan = common.make_plan(leaves, source, common.shapes_of(tensors), what="toy")
  assert plan.used == ("a.weight", "n.running_mean")
  assert plan.ignored == ("n.num_batches_tracked",)
  variables = common.fill(plan, tensors, leaves)
  np.testing.assert_array_equal(variables["params"]["a"]["kernel"], [[0, 2, 4], [1, 3, 5]])
  assert variables["params"]["a"]["kernel"].dtype == np.float32
  assert variables["batch_stats"]["n"]["mean"].dtype == np.float32


# ------------------------------------------------------------------------------------------
# Files and names.

def test_unknown_source_and_model():
  with pytest.raises(ValueError) as error:
    convert.check_shapes("timm", "resnet18", {})
  assert one_line(error) == "source='timm': must be one of torchvision, huggingface"
  with pytest.raises(ValueError) as error:
    convert.check_shapes("torchvision", "resnet152", {})
  text = one_line(error)
  assert text.startswith("model='resnet152': not a torchvision model this converter knows; "
                         "allowed: resnet18, resnet34")
  assert "vit_b_16" in text and "efficientnet_v2_m" in text


def test_unsupported_suffix_and_missing_file(tmp_path):
  path = tmp_path / "weights.npz"
  path.write_bytes(b"not weights")
  with pytest.raises(ValueError) as error:
    convert.convert("torchvision", "resnet18", str(path))
  assert one_line(error) == (f"weights={str(path)!r}: unsupported file type '.npz'; allowed: "
                             ".safetensors, .pth, .pt, .bin")
  with pytest.raises(ValueError) as error:
    convert.convert("torchvision", "resnet18", str(tmp_path / "absent.safetensors"))
  assert one_line(error).endswith("absent.safetensors': no such file")


def test_corrupt_safetensors(tmp_path):
  path = tmp_path / "broken.safetensors"
  path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
  with pytest.raises(ValueError) as error:
    common.read_shapes(str(path))
  assert "not a readable safetensors file" in one_line(error)


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin"])
def test_torch_file_without_torch(tmp_path, monkeypatch, suffix):
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
  path = tmp_path / f"resnet18{suffix}"
  path.write_bytes(b"never unpickled")
  with pytest.raises(ValueError) as error:
    convert.convert("torchvision", "resnet18", str(path))
  text = one_line(error)
  assert text.startswith(f"weights={str(path)!r}: reading a torch file needs torch, which is "
                         "not installed; convert it to safetensors once")
  assert "torch.load(sys.argv[1], map_location='cpu', weights_only=True)" in text
  assert "st.save_file(" in text


def test_safetensors_shapes_without_reading(tmp_path):
  path = tmp_path / "two.safetensors"
  save_file({"a": np.zeros((2, 3), np.float32), "n": np.zeros((), np.int64)}, str(path))
  assert common.read_shapes(str(path)) == {"a": ((2, 3), "float32"), "n": ((), "int64")}
  back = common.read_state_dict(str(path))
  assert back["a"].shape == (2, 3) and back["n"].dtype == np.int64


# ------------------------------------------------------------------------------------------
# Seeded stand-ins.

def test_seeded_values_depend_on_seed_and_key_only():
  rows = manifest("resnet18")
  full = seeded.seeded_state_dict(rows, 3)
  reordered = seeded.seeded_state_dict(list(reversed(rows[:12])), 3)
  for key, value in reordered.items():
    np.testing.assert_array_equal(value, full[key])
  assert not np.array_equal(seeded.seeded_state_dict(rows[:1], 4)["conv1.weight"],
                            full["conv1.weight"])


def test_seeded_distributions():
  state = seeded.seeded_state_dict(manifest("resnet18"), 0, batch_norm_weight=(0.5, 1.0))
  counter = state["bn1.num_batches_tracked"]
  assert counter.dtype == np.int64 and counter.shape == ()
  var = state["layer1.0.bn1.running_var"]
  assert var.dtype == np.float32 and 0.5 <= var.min() and var.max() <= 1.5
  scale = state["layer1.0.bn1.weight"]
  assert 0.5 <= scale.min() and scale.max() <= 1.0
  assert abs(float(state["layer1.0.bn1.running_mean"].std()) - 0.1) < 0.05
  conv = state["layer4.0.conv1.weight"]  # [512, 256, 3, 3]: He variance 2 / (256 * 9)
  assert abs(float(conv.var()) / (2 / (256 * 9)) - 1) < 0.01
  fc = state["fc.weight"]  # [1000, 512]: variance 1 / 512
  assert abs(float(fc.var()) * 512 - 1) < 0.01
  inputs = seeded.seeded_input(5, (2, 3, 4, 4))
  assert inputs.dtype == np.float32
  np.testing.assert_array_equal(inputs, seeded.seeded_input(5, (2, 3, 4, 4)))


def test_seeded_bad_dtype():
  with pytest.raises(ValueError, match=r"^manifest key 'x': dtype 'complex64'; allowed:"):
    seeded.seeded_state_dict([["x", [2], "complex64"]], 0)
