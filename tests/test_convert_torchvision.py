"""torchvision checkpoints -> spg_jax, against golden outputs recorded with torch.

`experiments/golden/torchvision_models.py` (run by hand, with torch) filled each torchvision
model with `seeded_state_dict(manifest, seed)` and stored the manifest, the seeds and the
outputs under tests/golden/torchvision/. Here the same state dict is regenerated with numpy,
written to a `.safetensors` file, converted through `convert.convert`, and the Flax model run
in float32: eval logits (FCN: both heads), train-mode logits and the updated BatchNorm
statistics must match torch's, and every key of the full-size model's manifest must map.
torch is not needed.
"""
import json
import pathlib

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from spg_jax.models import convert
from spg_jax.models.convert import common, seeded

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden" / "torchvision"
# torchvision names with golden fixtures; eval outputs (logits O(1-10)) within TOLERANCE.
MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v2", "vit_b_16",
          "fcn_resnet50", "efficientnet_v2_m")
TOLERANCE = 1e-4
# Running statistics are O(1) and follow one forward pass; the same bound. In train mode
# both bounds grow to twice torch's own float32 error where that is larger (see below).
STATS_TOLERANCE = 1e-4
# Models whose train pass also runs with Flax's BatchNorm rule (one compile more per model;
# the rule is the same code for every model).
BOTH_RULES = ("resnet18", "fcn_resnet50")


def load_fixture(name: str):
  fixture = json.loads((GOLDEN / f"{name}.json").read_text())
  with np.load(GOLDEN / f"{name}.npz") as data:
    arrays = {k: data[k] for k in data.files}
  return fixture, arrays


def nhwc(images: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(images.transpose(0, 2, 3, 1))


class Converted:
  """One model's fixture, its regenerated state dict, the conversion and jitted applies."""

  def __init__(self, name: str, directory: pathlib.Path):
    self.name = name
    self.fixture, self.golden = load_fixture(name)
    self.state = seeded.seeded_state_dict(self.fixture["manifest"], self.fixture["seed"],
                                          self.fixture["batch_norm_weight"])
    path = directory / f"{name}.safetensors"
    save_file(self.state, str(path))
    self.variables, self.info = convert.convert(source="torchvision", model=name,
                                                weights=str(path))
    path.unlink()  # up to 350 MB (ViT-B/16); everything is in memory now
    self.plan = convert.plan("torchvision", name, common.shapes_of(self.state))[0]
    self.model = self.info.build()
    self.eval_apply = jax.jit(lambda v, x: self.model.apply(v, x, train=False))

  def eval_outputs(self, variables) -> dict:
    """{name: NHWC / [B, C] outputs on the golden eval input, as the fixture stores them}."""
    spec = self.fixture["eval_input"]
    with jax.default_matmul_precision("float32"):
      logits, aux = self.eval_apply(variables, nhwc(seeded.seeded_input(spec["seed"],
                                                                        spec["shape"])))
    return self._select({"logits": logits, "out": logits, "aux": aux.get("aux_logits")},
                        self.fixture["eval_outputs"])

  def _select(self, outputs: dict, names) -> dict:
    step = self.fixture["pixel_stride"]
    selected = {}
    for name in names:
      value = np.asarray(outputs[name])
      selected[name] = value[:, ::step, ::step] if value.ndim == 4 else value
    return selected

  def golden_outputs(self, mode: str, names) -> dict:
    return {name: (nhwc(g) if g.ndim == 4 else g)
            for name, g in ((n, self.golden[f"{mode}:{n}"]) for n in names)}


@pytest.fixture(scope="module", params=MODELS)
def converted(request, tmp_path_factory) -> Converted:
  return Converted(request.param, tmp_path_factory.mktemp(request.param))


def max_diff(a: dict, b: dict) -> dict:
  assert set(a) == set(b)
  return {k: float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a}


def test_eval_outputs_match_torch(converted):
  diffs = max_diff(converted.eval_outputs(converted.variables),
                   converted.golden_outputs("eval", converted.fixture["eval_outputs"]))
  print(f"{converted.name} eval max abs diff: {diffs}")
  assert max(diffs.values()) <= TOLERANCE, diffs
  # The comparison can fail: the first convolution's kernel with its spatial axes swapped
  # (a transposition mistake) moves the outputs far beyond the tolerance.
  first_conv = next(k for k, shape, _ in converted.fixture["manifest"] if len(shape) == 4)
  path = next(p for p, (key, _) in converted.plan.leaves.items() if key == first_conv)
  wrong = jax.tree.map(lambda x: x, converted.variables)
  node = wrong
  for name in path[:-1]:
    node = node[name]
  node[path[-1]] = np.ascontiguousarray(np.swapaxes(node[path[-1]], 0, 1))
  wrong_diffs = max_diff(converted.eval_outputs(wrong),
                         converted.golden_outputs("eval", converted.fixture["eval_outputs"]))
  assert min(wrong_diffs.values()) > 100 * TOLERANCE, (path, wrong_diffs)


def test_conversion_reads_every_key(converted):
  info, manifest = converted.info, converted.fixture["manifest"]
  counters = [k for k, _, _ in manifest if k.endswith(".num_batches_tracked")]
  assert info.num_tensors == len(manifest)
  assert info.num_ignored == len(counters)
  assert set(converted.plan.used) | set(converted.plan.ignored) == {k for k, _, _ in manifest}
  params = sum(int(np.prod(s)) for k, s, _ in manifest
               if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
  assert info.num_parameters == params
  leaves = jax.tree_util.tree_leaves(converted.variables)
  assert len(leaves) == info.num_variables
  assert all(leaf.dtype == np.float32 and leaf.flags.c_contiguous for leaf in leaves)


def _train_model(converted: Converted, bn_running_var: str):
  """The converted model with torch's random masks off, as in the golden train pass."""
  kwargs = dict(converted.info.model_kwargs, bn_running_var=bn_running_var)
  if converted.info.model in ("mobilenet_v2", "efficientnet_v2_m"):
    kwargs["dropout_rate"] = 0.0
  if converted.info.model == "efficientnet_v2_m":
    kwargs["stochastic_depth_rate"] = 0.0
  from spg_jax import models  # pylint: disable=g-import-not-at-top
  return models.get(converted.info.model, **kwargs)


def _train_pass(converted: Converted, bn_running_var: str):
  """(logits, {torch BatchNorm name: (new running mean, new running var)[:channels]})."""
  fixture = converted.fixture
  model = _train_model(converted, bn_running_var)
  spec = fixture["train_input"]
  images = nhwc(seeded.seeded_input(spec["seed"], spec["shape"]))
  # FCN's head dropout (0.1) stays on in spg_jax's train mode; it comes after every
  # BatchNorm, so the statistics are still deterministic, and only they are compared.
  rngs = {"dropout": jax.random.key(0)}
  with jax.default_matmul_precision("float32"):
    (logits, _), updated = jax.jit(lambda v, x: model.apply(
        v, x, train=True, mutable=["batch_stats"], rngs=rngs))(converted.variables, images)
  leaf_of = {key: path for path, (key, _) in converted.plan.leaves.items()}
  def new(key):
    node = updated
    for name in leaf_of[key]:
      node = node[name]
    return np.asarray(node)[:fixture["bn_channels"]]
  stats = {layer: (new(f"{layer}.running_mean"), new(f"{layer}.running_var"))
           for layer in fixture["bn_layers"]}
  return logits, stats


def test_train_mode_matches_torch(converted):
  """Train mode (batch statistics) and the BatchNorm updates with torch's variance rule
  (`bn_running_var="unbiased"`); for `BOTH_RULES` also with Flax's (the default)."""
  fixture = converted.fixture
  if "train_input" not in fixture:
    assert converted.info.model == "vit_b16" and "batch_stats" not in converted.variables
    return  # no BatchNorm, no dropout at torchvision's defaults: train mode == eval mode
  # Deep networks in train mode are ill-conditioned in float32 (torch's own float32 logits
  # differ from float64 by up to 6e-4 for ResNet-101): allow twice torch's own error.
  tolerance = max(TOLERANCE, 2 * fixture["fp32_error"]["train"])
  stats_tolerance = max(STATS_TOLERANCE, 2 * fixture["fp32_error"]["running_stats"])
  channels, momentum = fixture["bn_channels"], fixture["bn_momentum"]
  torch_mean, torch_var = converted.golden["running_mean"], converted.golden["running_var"]
  old_var = np.stack([converted.state[f"{layer}.running_var"][:channels]
                      for layer in fixture["bn_layers"]])
  counts = np.asarray(fixture["bn_counts"], np.float64)[:, None]
  measured = {}
  rules = ("unbiased", "biased") if converted.name in BOTH_RULES else ("unbiased",)
  for rule in rules:
    logits, stats = _train_pass(converted, rule)
    if fixture["train_outputs"]:
      diffs = max_diff({"logits": logits}, converted.golden_outputs("train", ["logits"]))
      measured[f"{rule} logits"] = diffs["logits"]
      assert diffs["logits"] <= tolerance, (rule, diffs, tolerance)
    mean = np.stack([stats[layer][0] for layer in fixture["bn_layers"]])
    var = np.stack([stats[layer][1] for layer in fixture["bn_layers"]])
    measured[f"{rule} mean"] = float(np.max(np.abs(mean - torch_mean)))
    measured[f"{rule} var"] = float(np.max(np.abs(var - torch_var)))
    assert measured[f"{rule} mean"] <= stats_tolerance, measured
    if rule == "unbiased":  # torch's rule: the statistics as torch stores them
      assert measured["unbiased var"] <= stats_tolerance, measured
    else:
      # Flax's rule takes the biased batch variance; undo torch's n / (n - 1) and compare.
      unbiased = (torch_var - (1 - momentum) * old_var) / momentum  # torch's batch variance
      flax_rule = (1 - momentum) * old_var + momentum * unbiased * (counts - 1) / counts
      measured["biased var, torch's factor undone"] = float(np.max(np.abs(var - flax_rule)))
      assert measured["biased var, torch's factor undone"] <= stats_tolerance, measured
      # ... and the two rules differ measurably, so these comparisons can tell them apart.
      assert measured["biased var"] > 10 * stats_tolerance, measured
  print(f"{converted.name} train mode max abs diffs (tolerances: logits {tolerance:.1e}, "
        f"statistics {stats_tolerance:.1e}): "
        + ", ".join(f"{k} {v:.2e}" for k, v in measured.items()))


@pytest.mark.parametrize("name", MODELS)
def test_full_size_manifest_maps(name):
  fixture, _ = load_fixture(name)
  manifest = fixture["manifest"] if fixture["full_size"] else fixture["full_manifest"]
  info = convert.check_shapes("torchvision", name, common.shapes_from_manifest(manifest))
  assert info.num_tensors == len(manifest)
  params = sum(int(np.prod(s)) for k, s, _ in manifest
               if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
  assert info.num_parameters == params


def test_full_size_vit_is_built_at_224():
  fixture, _ = load_fixture("vit_b_16")
  info = convert.check_shapes("torchvision", "vit_b_16",
                              common.shapes_from_manifest(fixture["full_manifest"]))
  assert dict(info.model_kwargs) == {"num_classes": 1000, "image_size": 224}
  assert info.num_parameters == 86_567_656  # torchvision's vit_b_16


def test_vit_legacy_mlp_names():
  """Older ViT files name the MLP's Linear layers `mlp.linear_{1,2}` (torchvision renames
  them on load); those names fill the same leaves, and a file with both is refused."""
  fixture, _ = load_fixture("vit_b_16")
  rename = {".mlp.0.": ".mlp.linear_1.", ".mlp.3.": ".mlp.linear_2."}
  def legacy(key):
    for new, old in rename.items():
      key = key.replace(new, old)
    return key
  manifest = fixture["full_manifest"]
  renamed = [[legacy(k), s, d] for k, s, d in manifest]
  assert sum(".mlp.linear_" in k for k, _, _ in renamed) == 4 * 12
  the_plan, _, info = convert.plan("torchvision", "vit_b_16",
                                   common.shapes_from_manifest(renamed))
  keys = {common.leaf_name(p): key for p, (key, _) in the_plan.leaves.items()}
  layer = "encoder.layers.encoder_layer_7.mlp"
  assert keys["params/encoder_layer_7/mlp_0/kernel"] == f"{layer}.linear_1.weight"
  assert keys["params/encoder_layer_7/mlp_1/bias"] == f"{layer}.linear_2.bias"
  assert info.num_parameters == 86_567_656
  # The legacy tensor goes through the same transform: values as with the current name.
  current = dict(convert.plan("torchvision", "vit_b_16",
                              common.shapes_from_manifest(manifest))[0].leaves)
  path = ("params", "encoder_layer_7", "mlp_0", "kernel")
  weight = np.arange(3072 * 768, dtype=np.float32).reshape(3072, 768)
  np.testing.assert_array_equal(the_plan.leaves[path][1].to_flax(weight),
                                current[path][1].to_flax(weight))
  both = manifest + [[f"{layer}.linear_1.weight", [3072, 768], "float32"]]
  with pytest.raises(ValueError, match=r"'encoder.layers.encoder_layer_7.mlp.0.weight' and "
                     r"'encoder.layers.encoder_layer_7.mlp.linear_1.weight' are the same "
                     r"tensor"):
    convert.check_shapes("torchvision", "vit_b_16", common.shapes_from_manifest(both))


def test_num_classes_and_heads_come_from_the_file():
  fixture, _ = load_fixture("resnet18")
  rows = [[k, [10] + s[1:] if k.startswith("fc.") else s, d] for k, s, d in fixture["manifest"]]
  info = convert.check_shapes("torchvision", "resnet18", common.shapes_from_manifest(rows))
  assert info.num_classes == 10 and info.num_parameters == 11_689_512 - 990 * 513
  # FCN without its auxiliary head (torchvision's aux_loss=False) builds the model without it.
  fixture, _ = load_fixture("fcn_resnet50")
  rows = [row for row in fixture["manifest"] if not row[0].startswith("aux_classifier.")]
  info = convert.check_shapes("torchvision", "fcn_resnet50", common.shapes_from_manifest(rows))
  assert dict(info.model_kwargs) == {"num_classes": 21, "aux_loss": False}


def test_vit_position_embeddings_must_be_a_square_grid():
  fixture, _ = load_fixture("vit_b_16")
  rows = [[k, [1, 51, 768] if k == "encoder.pos_embedding" else s, d]
          for k, s, d in fixture["full_manifest"]]
  with pytest.raises(ValueError, match=r"^key 'encoder.pos_embedding': 51 positions in the "
                     r"file, expected 1 \+ a square number"):
    convert.check_shapes("torchvision", "vit_b_16", common.shapes_from_manifest(rows))
