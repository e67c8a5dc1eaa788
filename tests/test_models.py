"""Vision base models: parameter counts, shapes and aux keys, SPG attachment, modes, dtypes.

Big models are checked abstractly with `jax.eval_shape` (the whole init/apply is traced, only
XLA compilation and execution are skipped); numbers are computed for the tiny models and for
small configurations of the same building blocks, so the file stays fast on 2 CPU cores.
"""
import functools

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spg_jax import models
# Names, not `from spg_jax import spg_model`: the package exports a function of that name.
from spg_jax.spg_model import (Attachment, SPGModel, head_variables, step_outputs,
                               strip_replicas)
from spg_jax.spg_model import build_spg_model as make_spg_model

# RBG keys: initialisers compile several times faster than with threefry on CPU.
RNGS = {"params": jax.random.key(0, impl="rbg"), "dropout": jax.random.key(1, impl="rbg")}

# torchvision's counts (1000 classes; FCN: 21 classes with the auxiliary head); ViT-Ti/S
# follow the same layout (timm's vit_tiny/small_patch16_224 have the same counts).
PARAM_COUNTS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "mobilenet_v2": 3_504_872, "efficientnet_v2_m": 54_139_356,
    "vit_ti16": 5_717_416,
    "vit_s16": 22_050_664, "vit_b16": 86_567_656, "fcn_resnet50": 35_322_218,
    "cnn1d_mnist1d": 5_210, "cnn_digits": 24_058,
    # Ours (6 classes, both heads): stem 464, stages 4,672 + 14,528 + 57,728, head 9,350,
    # aux head 2,374 (conv kernels, BatchNorm scales and biases, the 1x1 classifiers).
    "fcn_small": 89_116,
}
FULL_INPUTS = {"cnn1d_mnist1d": (1, 40, 1), "cnn_digits": (1, 8, 8, 1),
               "fcn_small": (1, 64, 64, 3)}

# name -> (constructor kwargs, small input shape, expected aux["features"] shape, head width)
SMALL = {
    "resnet18": (dict(num_classes=10), (2, 32, 32, 3), (2, 1, 1, 512), 512),
    "resnet18_cifar": (dict(num_classes=10, stem="cifar"), (2, 16, 16, 3), (2, 2, 2, 512),
                       512),
    "resnet34": (dict(num_classes=10), (2, 32, 32, 3), (2, 1, 1, 512), 512),
    "resnet50": (dict(num_classes=10), (2, 32, 32, 3), (2, 1, 1, 2048), 2048),
    "resnet101": (dict(num_classes=10, stem="cifar"), (2, 8, 8, 3), (2, 1, 1, 2048), 2048),
    "mobilenet_v2": (dict(num_classes=10), (2, 32, 32, 3), (2, 1, 1, 1280), 1280),
    "efficientnet_v2_m": (dict(num_classes=10), (2, 32, 32, 3), (2, 1, 1, 1280), 1280),
    "vit_ti16": (dict(num_classes=10, image_size=32), (2, 32, 32, 3), (2, 5, 192), 192),
    "vit_s16": (dict(num_classes=10, image_size=32), (2, 32, 32, 3), (2, 5, 384), 384),
    "vit_b16": (dict(num_classes=10, image_size=32), (2, 32, 32, 3), (2, 5, 768), 768),
    "cnn1d_mnist1d": (dict(), (2, 40, 1), (2, 5, 25), 125),
    "cnn1d_mnist1d_wide": (dict(), (2, 40, 1), (2, 128), 128),  # features: the 128-d layer
    "cnn_digits": (dict(), (2, 8, 8, 1), (2, 2, 2, 64), 64),
    "audio_cnn": (dict(), (2, 1600), (2, 128), 128),  # waveform in; features: the fc layer
}
CLASSIFIERS = sorted(SMALL)
TINY = ("cnn1d_mnist1d", "cnn_digits")  # cheap enough to run for real everywhere


def build(key: str, **overrides) -> nn.Module:
  kwargs, _, _, _ = SMALL[key]
  return models.get(key.removesuffix("_cifar"), **{**kwargs, **overrides})


def num_params(variables) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))


def spg_model(model: nn.Module, kind: str, rate: float = 0.2) -> SPGModel:
  """SPGModel with T = 3 replicas of `kind` on every head the model attaches them to."""
  return make_spg_model(model, model.spg_attachments(kind), kind, 3, rate=rate)


def init_with_output(model: nn.Module, x, *, train: bool, abstract: bool):
  """((logits, aux), variables), abstractly (shapes and dtypes only) or computed."""
  fn = functools.partial(model.init_with_output, RNGS, train=train)
  return jax.eval_shape(fn, x) if abstract else jax.jit(fn)(x)


# ------------------------------------------------------------------ parameter counts


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_parameter_count_matches_torchvision(name):
  kwargs = {"fcn_resnet50": dict(num_classes=21)}.get(name, {})
  shape = FULL_INPUTS.get(name, (1, 224, 224, 3))
  variables = jax.eval_shape(
      lambda: models.get(name, **kwargs).init(RNGS, jnp.zeros(shape), train=False))
  assert num_params(variables) == PARAM_COUNTS[name]


def test_cifar_stem_drops_maxpool_and_shrinks_first_conv():
  def count(stem):
    return num_params(jax.eval_shape(lambda: models.get("resnet18", stem=stem).init(
        RNGS, jnp.zeros((1, 32, 32, 3)), train=False)))
  # 7x7x3x64 stem kernel replaced by 3x3x3x64.
  assert count("imagenet") - count("cifar") == (49 - 9) * 3 * 64


# ------------------------------------------------------------------ shapes and aux


@pytest.mark.parametrize("key", ["resnet18", "resnet50", "resnet18_cifar"])
def test_resnet_exposes_layer3(key):
  _, shape, features_shape, _ = SMALL[key]
  (_, aux), _ = init_with_output(build(key), jnp.zeros(shape), train=False, abstract=True)
  assert aux["layer3"].shape[-1] == features_shape[-1] // 2
  assert aux["layer3"].shape[1] == 2 * features_shape[1]


@pytest.mark.parametrize("key", TINY)
def test_head_of_pre_logits_is_logits_and_pre_head_of_features_is_pre_logits(key):
  model = build(key)
  x = jax.random.normal(jax.random.key(2), SMALL[key][1])
  (logits, aux), variables = init_with_output(model, x, train=False, abstract=False)
  head_logits = model.spg_head().apply({"params": variables["params"]["head"]},
                                       aux["pre_logits"])
  np.testing.assert_allclose(head_logits, logits, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(model.spg_pre_head()(aux["features"]), aux["pre_logits"])


def test_fcn_shapes_aux_and_heads():
  model = models.get("fcn_resnet50", num_classes=5)
  (logits, aux), variables = init_with_output(model, jnp.zeros((2, 40, 24, 3)), train=False,
                                              abstract=True)
  assert logits.shape == aux["aux_logits"].shape == (2, 40, 24, 5)
  assert aux["features"].shape == aux["pre_logits"].shape == (2, 5, 3, 2048)
  assert aux["layer3"].shape == (2, 5, 3, 1024)  # output stride 8: layer3 is dilated too
  params = variables["params"]
  assert params["head"]["classifier"]["kernel"].shape == (1, 1, 512, 5)
  assert params["aux_head"]["classifier"]["kernel"].shape == (1, 1, 256, 5)
  without_aux = models.get("fcn_resnet50", num_classes=5, aux_loss=False)
  (_, aux), variables = init_with_output(without_aux, jnp.zeros((1, 16, 16, 3)), train=False,
                                         abstract=True)
  assert "aux_logits" not in aux and "aux_head" not in variables["params"]


def test_fcn_head_spg_copy_matches_head_then_upsampling():
  # FCN's `head` then bilinear x8 (what FCN does at H = 8h) equals the SPG copy of the head.
  head = models.FCNHead(num_classes=3, inter_channels=4)
  features = jax.random.normal(jax.random.key(3), (1, 2, 3, 16))
  spg_copy = head.clone(upsample_factor=models.fcn.OUTPUT_STRIDE, train=False, parent=None)

  @jax.jit
  def run(features):
    variables = head.init(RNGS, features, train=False)
    expected = models.fcn.upsample_to(head.apply(variables, features, train=False), 16, 24)
    return spg_copy.apply(variables, features), expected

  actual, expected = run(features)
  np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
  fcn = models.get("fcn_resnet50")
  assert fcn.spg_head().train and fcn.spg_aux_head().train  # replicas run in train mode only
  assert fcn.spg_head().inter_channels == 512 and fcn.spg_aux_head().inter_channels == 256


def test_vit_rejects_other_image_sizes():
  with pytest.raises(ValueError, match="image_size"):
    jax.eval_shape(lambda: models.get("vit_ti16").init(RNGS, jnp.zeros((1, 32, 32, 3)),
                                                       train=False))


# ------------------------------------------------------------------ SPG wrapper


@pytest.mark.parametrize("kind", models.KINDS)
@pytest.mark.parametrize("key", CLASSIFIERS)
def test_every_classifier_runs_under_spg_with_three_replicas(key, kind):
  """Also the base's own outputs: aux shapes and the head at params["head"]."""
  _, shape, features_shape, width = SMALL[key]
  model = build(key)
  spg = spg_model(model, kind)
  x = jax.random.normal(jax.random.key(4), shape)
  (step_logits, aux), variables = init_with_output(spg, x, train=True,
                                                   abstract=key not in TINY)
  assert step_logits.shape == (shape[0], 4, model.num_classes)  # step 0 = base logits
  assert {"pre_logits", "features"} <= set(aux)
  assert aux["features"].shape == features_shape
  assert aux["pre_logits"].shape == (shape[0], width)
  head = variables["params"]["base"]["head"]
  assert head["kernel"].shape == (width, model.num_classes)
  assert head["bias"].shape == (model.num_classes,)
  # The head is shared, not copied: the only new parameters are the replicas'.
  assert set(variables["params"]) == {"base", "replicas_0", "replicas_1", "replicas_2"}
  if key in TINY and kind == "nas":
    # NAS blocks are the identity at init, so every replica repeats the base prediction.
    for t in range(1, 4):
      np.testing.assert_allclose(step_logits[:, t], step_logits[:, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", models.KINDS)
def test_fcn_runs_under_spg_on_both_heads(kind):
  model = models.get("fcn_resnet50", num_classes=3)
  (step_logits, aux), variables = init_with_output(spg_model(model, kind),
                                                   jnp.zeros((2, 16, 24, 3)), train=True,
                                                   abstract=True)
  # Per-pixel episodes at input resolution, for the main and the auxiliary head alike.
  assert step_logits.shape == aux["extra_step_outputs"]["aux"].shape == (2, 4, 16, 24, 3)
  assert {"replicas_2", "extra_replicas_aux_2"} <= set(variables["params"])


# ------------------------------------------------------------------ SPG attachments

# Every registered model: constructor kwargs and a small input (abstract evaluation only).
ATTACH_INPUTS = {
    **{key: (SMALL[key][0], SMALL[key][1]) for key in CLASSIFIERS if key in models.names()},
    "fcn_resnet50": (dict(num_classes=3), (2, 16, 16, 3)),
    "fcn_small": (dict(num_classes=3), (2, 16, 16, 3)),
    "bert": (dict(size="tiny", head_type="qa"), (2, 8)),
    "bert_tiny": (dict(num_classes=3), (2, 8)),
    "bert_base": (dict(num_classes=3), (2, 8)),
    "wav2vec2": (dict(size="tiny", head_type="ctc"), (2, 800)),
    "wav2vec2_tiny": (dict(num_classes=3), (2, 800)),
    "wav2vec2_base": (dict(num_classes=3), (2, 800)),
    "wav2vec2_large_lv60": (dict(head_type="ctc"), (2, 800)),
}
TEXT_MODELS = ("bert", "bert_tiny", "bert_base")  # token ids in, not images


def test_attach_inputs_cover_every_registered_model():
  assert sorted(ATTACH_INPUTS) == sorted(models.names())


@pytest.mark.parametrize("name", sorted(ATTACH_INPUTS))
def test_every_model_attaches_to_its_own_aux_entries_and_head_params(name):
  kwargs, shape = ATTACH_INPUTS[name]
  model = models.get(name, **kwargs)
  dtype = jnp.int32 if name in TEXT_MODELS else jnp.float32
  (logits, aux), variables = init_with_output(model, jnp.zeros(shape, dtype), train=False,
                                              abstract=True)
  for kind in models.KINDS:
    attachments = models.spg_attachments(model, kind)
    assert attachments.keys() == model.spg_attachments(kind).keys()
    assert models.spg_attachment(model, kind).feature_key == attachments["out"].feature_key
    for head_name, a in attachments.items():
      assert isinstance(a, Attachment) and a.head.parent is None
      assert a.feature_key in aux
      assert a.output_key is None if head_name == "out" else a.output_key in aux
      head_variables(variables, a.head_path)  # raises when not in params
      assert (a.block is None) == (kind == "hpo")
      assert a.pre_head is None or kind == "nas"
      # The head copy maps (pre_head of) every h_t to this head's own output shape; a NAS
      # block keeps h_t's shape, so the chain can go on.
      h = aux[a.feature_key]
      if a.block is not None:
        h_next, _ = jax.eval_shape(functools.partial(a.block().init_with_output, RNGS,
                                                     train=True), h)
        assert jax.tree.map(lambda t: t.shape, h_next) == jax.tree.map(lambda t: t.shape, h)
      features = h if a.pre_head is None else jax.eval_shape(a.pre_head, h)
      out, _ = jax.eval_shape(functools.partial(a.head.init_with_output, RNGS), features)
      expected = logits if a.output_key is None else aux[a.output_key]
      assert (jax.tree.map(lambda t: t.shape, out)
              == jax.tree.map(lambda t: t.shape, expected))


def test_classifier_attachments_name_their_inputs():
  model = build("resnet50")
  hpo, nas = models.spg_attachment(model, "hpo"), models.spg_attachment(model, "nas")
  assert (hpo.feature_key, hpo.pre_head, hpo.block, hpo.output_key, hpo.loss_weight) == (
      "pre_logits", None, None, None, 1.0)
  assert nas.feature_key == "features" and nas.pre_head is models.global_avg_pool
  block = nas.block()
  assert isinstance(block, models.Bottleneck) and block.planes * block.expansion == 2048
  assert list(models.spg_attachments(model, "nas")) == ["out"]


@pytest.mark.parametrize("name, aux_key, out_channels, aux_channels", [
    ("fcn_resnet50", "layer3", 2048, 1024), ("fcn_small", "layer2", 64, 32)])
def test_fcn_models_attach_out_and_aux_with_torchvision_loss_weights(name, aux_key,
                                                                     out_channels,
                                                                     aux_channels):
  model = models.get(name)
  for kind in models.KINDS:
    attachments = models.spg_attachments(model, kind)
    assert {k: (a.head_path, a.feature_key, a.output_key, a.loss_weight, a.pre_head)
            for k, a in attachments.items()} == {
        "out": (("head",), "features", None, 1.0, None),
        "aux": (("aux_head",), aux_key, "aux_logits", 0.5, None)}
    assert attachments["out"].head.train and attachments["aux"].head.train
    assert attachments["out"].head.upsample_factor == model.output_stride
    if kind == "nas":  # the blocks keep the width of the stage they extend
      for head_name, channels in (("out", out_channels), ("aux", aux_channels)):
        block = attachments[head_name].block()
        assert block.planes * block.expansion == channels and block.zero_init_last
  assert list(models.spg_attachments(models.get(name, aux_loss=False), "hpo")) == ["out"]


def test_attachment_errors_are_one_line():
  class Plain(nn.Module):
    @nn.compact
    def __call__(self, x, *, train):
      return nn.Dense(2, name="head")(x), {"pre_logits": x}

  with pytest.raises(ValueError, match=r"must define spg_attachments\(kind\)") as error:
    models.spg_attachments(Plain(), "hpo")
  assert "\n" not in str(error.value) and "ClassifierHeadMixin" in str(error.value)
  for call in (lambda: models.spg_attachment(build("resnet18"), "grid"),
               lambda: build("resnet18").spg_attachments("grid"),
               lambda: models.get("fcn_small").spg_attachments("grid")):
    with pytest.raises(ValueError) as error:
      call()
    assert str(error.value) == "kind='grid': must be one of ('hpo', 'nas')"


# ------------------------------------------------------------------ FCNSmall


def test_fcn_small_shapes_and_aux():
  model = models.get("fcn_small", num_classes=6)
  (logits, aux), variables = init_with_output(model, jnp.zeros((2, 64, 64, 3)), train=False,
                                              abstract=True)
  assert logits.shape == aux["aux_logits"].shape == (2, 64, 64, 6)
  assert aux["features"].shape == aux["pre_logits"].shape == (2, 16, 16, 64)  # stride 4
  assert aux["layer2"].shape == (2, 16, 16, 32)
  params = variables["params"]
  assert params["head"]["classifier"]["kernel"].shape == (1, 1, 16, 6)
  assert params["aux_head"]["classifier"]["kernel"].shape == (1, 1, 8, 6)
  assert num_params(variables) == PARAM_COUNTS["fcn_small"]
  with pytest.raises(ValueError, match="widths"):
    init_with_output(models.get("fcn_small", widths=(8, 16)), jnp.zeros((1, 16, 16, 3)),
                     train=False, abstract=True)


@pytest.mark.parametrize("kind, size", [("hpo", 64), ("nas", 32)])
def test_fcn_small_under_spg_repeats_the_base_at_init(kind, size):
  """Replica logits line up with the base's pixel for pixel, on both heads.

  Heads without dropout and replicas without dropout: the replicas start as the identity
  (HPO: zero residual branch; NAS: BasicBlocks with a zero last BatchNorm scale on post-ReLU
  maps), so every step repeats step 0, which is the base's own prediction. The NAS case runs
  at 32x32 to stay fast; the shapes are the same code path.
  """
  base = models.get("fcn_small", num_classes=3, dropout_rate=0.0)
  spg = spg_model(base, kind, rate=0.0)
  x = jax.random.normal(jax.random.key(11), (2, size, size, 3))

  @jax.jit
  def run(x):
    (steps, aux), variables = spg.init_with_output(RNGS, x, train=True)
    base_variables = strip_replicas(variables)
    (logits, base_aux), _ = base.apply(base_variables, x, train=True, mutable=["batch_stats"])
    eval_steps, eval_aux = spg.apply(variables, x, train=False)
    eval_logits, _ = base.apply(base_variables, x, train=False)
    return steps, aux, variables, logits, base_aux, eval_steps, eval_aux, eval_logits

  steps, aux, variables, logits, base_aux, eval_steps, eval_aux, eval_logits = run(x)
  aux_steps = aux["extra_step_outputs"]["aux"]
  assert steps.shape == aux_steps.shape == (2, 4, size, size, 3)
  np.testing.assert_allclose(steps[:, 0], logits, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(aux_steps[:, 0], base_aux["aux_logits"], rtol=1e-6, atol=1e-6)
  for t in range(1, 4):
    np.testing.assert_allclose(steps[:, t], steps[:, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(aux_steps[:, t], aux_steps[:, 0], rtol=1e-5, atol=1e-5)
  # The engine's view: one [B, T+1, H, W, C] trajectory per head.
  attachments = base.spg_attachments(kind)
  views = step_outputs(steps, aux, attachments, spg_enabled=True)
  assert {k: v.shape for k, v in views.items()} == {"out": steps.shape, "aux": steps.shape}
  # Eval mode: the base alone, with a step axis of 1; the replicas are never run.
  assert eval_steps.shape == (2, 1, size, size, 3)
  np.testing.assert_allclose(eval_steps[:, 0], eval_logits, rtol=1e-6, atol=1e-6)
  assert "extra_step_outputs" not in eval_aux
  views = step_outputs(eval_steps[:, 0], eval_aux, attachments,
                                     spg_enabled=False)
  assert views["aux"].shape == eval_steps.shape
  # Dropping the replicas leaves exactly a base-only init's variables.
  expected = jax.eval_shape(functools.partial(base.init, RNGS, train=False), x)
  stripped = strip_replicas(variables)
  assert jax.tree.structure(stripped) == jax.tree.structure(expected)
  assert jax.tree.map(np.shape, stripped) == jax.tree.map(lambda a: a.shape, expected)
  assert set(variables["params"]) == {"base"} | {
      f"{prefix}{t}" for prefix in ("replicas_", "extra_replicas_aux_") for t in range(3)}


# ------------------------------------------------------------------ NAS blocks


NAS_BLOCKS = {  # block constructor (zero_init_last still to choose), input shape
    "basic_2d": (functools.partial(models.BasicBlock, 8), (2, 4, 4, 8)),
    "bottleneck_dilated": (functools.partial(models.Bottleneck, 4, dilation=2), (2, 4, 4, 16)),
    "inverted_residual": (functools.partial(models.InvertedResidual, 16, expand_ratio=1),
                          (2, 4, 4, 16)),
    "mbconv": (functools.partial(models.MBConv, 16, expand_ratio=1), (2, 4, 4, 16)),
    "vit_encoder": (functools.partial(models.EncoderBlock, 2, 16), (2, 3, 8)),
}


@pytest.mark.parametrize("name", sorted(NAS_BLOCKS))
def test_nas_block_is_identity_at_init_yet_trainable(name):
  make_block, shape = NAS_BLOCKS[name]
  block = make_block(zero_init_last=True)
  # Non-negative inputs, as the post-ReLU feature maps the blocks extend (the ResNet
  # blocks end with a ReLU, so they are the identity there).
  h = jax.nn.relu(jax.random.normal(jax.random.key(5), shape))

  @jax.jit
  def run(h):
    variables = block.init(RNGS, h, train=True)
    out, _ = block.apply(variables, h, train=True, mutable=["batch_stats"])

    def loss(params):
      y, _ = block.apply({**variables, "params": params}, h, train=True,
                         mutable=["batch_stats"])
      return jnp.sum(jnp.sin(y))  # any loss whose gradient does not vanish at y = h

    return out, jax.grad(loss)(variables["params"]), variables["params"]

  out, grads, params = run(h)
  np.testing.assert_allclose(out, h, atol=1e-6)
  # The weights that zero_init_last zeroes (kernels and scales are non-zero otherwise) ...
  flat_params = flax.traverse_util.flatten_dict(params)
  flat_grads = flax.traverse_util.flatten_dict(grads)
  zeroed = [flat_grads[path] for path, p in flat_params.items()
            if path[-1] in ("kernel", "scale") and not np.any(p)]
  assert zeroed
  # ... all receive gradient at once, so the residual branch can grow from zero.
  assert all(np.all(g != 0) for g in zeroed)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_zero_init_last_only_changes_the_init():
  h = jnp.ones((1, 4, 4, 8))
  plain = jax.eval_shape(lambda: models.BasicBlock(8).init(RNGS, h, train=False))
  zero = jax.eval_shape(lambda: models.BasicBlock(8, zero_init_last=True).init(
      RNGS, h, train=False))
  assert jax.tree.structure(plain) == jax.tree.structure(zero)


# ------------------------------------------------------------------ modes and dtypes


def test_eval_apply_leaves_batch_norm_statistics_unchanged():
  model = build("cnn_digits")
  x = jax.random.normal(jax.random.key(6), (4, 8, 8, 1))

  @jax.jit
  def run(x):
    variables = model.init(RNGS, x, train=False)
    apply = functools.partial(model.apply, variables, x, mutable=["batch_stats"])
    return variables, apply(train=False)[1], apply(train=True)[1]

  variables, eval_updates, train_updates = run(x)
  unchanged = jax.tree.map(np.array_equal, eval_updates["batch_stats"],
                           variables["batch_stats"])
  assert all(jax.tree.leaves(unchanged))
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), train_updates["batch_stats"],
                         variables["batch_stats"])
  assert all(jax.tree.leaves(changed))  # train mode does update them: the check has teeth


def test_dropout_only_in_train_mode():
  model = models.VisionTransformer(hidden_dim=8, num_layers=1, num_heads=2, mlp_dim=16,
                                   patch_size=4, image_size=8, num_classes=3,
                                   dropout_rate=0.5)
  x = jax.random.normal(jax.random.key(7), (2, 8, 8, 3))

  @jax.jit
  def run(x):
    variables = model.init(RNGS, x, train=False)
    outputs = {}
    for train, seed in ((False, 8), (False, 9), (True, 8), (True, 9)):
      _, aux = model.apply(variables, x, train=train, rngs={"dropout": jax.random.key(seed)})
      outputs[train, seed] = aux["features"]
    return outputs

  outputs = run(x)
  np.testing.assert_array_equal(outputs[False, 8], outputs[False, 9])
  assert not np.allclose(outputs[True, 8], outputs[True, 9])


BF16_CASES = {
    "cnn1d_mnist1d": (lambda dtype: build("cnn1d_mnist1d", dtype=dtype), (2, 40, 1)),
    "cnn_digits": (lambda dtype: build("cnn_digits", dtype=dtype), (2, 8, 8, 1)),
    "fcn_small": (lambda dtype: models.get("fcn_small", dtype=dtype), (2, 16, 16, 3)),
    # A small configuration of the ViT class (attention and LayerNorm in bfloat16).
    "vit": (lambda dtype: models.VisionTransformer(
        hidden_dim=8, num_layers=1, num_heads=2, mlp_dim=16, patch_size=4, image_size=8,
        num_classes=3, dtype=dtype), (2, 8, 8, 3)),
}


@pytest.mark.parametrize("name", sorted(BF16_CASES))
def test_bfloat16_forward_is_finite(name):
  make, shape = BF16_CASES[name]
  model = make(jnp.bfloat16)
  x = jax.random.normal(jax.random.key(10), shape)
  (logits, aux), variables = init_with_output(model, x, train=False, abstract=False)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  assert logits.dtype == aux["pre_logits"].dtype == jnp.bfloat16
  assert np.all(np.isfinite(np.asarray(logits, np.float32)))


@pytest.mark.parametrize("name", ["mobilenet_v2", "vit_b16", "fcn_resnet50"])
def test_bfloat16_big_models_compute_in_bfloat16(name):
  kwargs = {"vit_b16": dict(image_size=32)}.get(name, {})
  model = models.get(name, dtype=jnp.bfloat16, **kwargs)
  (logits, aux), variables = init_with_output(model, jnp.zeros((1, 32, 32, 3)), train=False,
                                              abstract=True)
  assert logits.dtype == aux["features"].dtype == jnp.bfloat16
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))


# ------------------------------------------------------------------ registry


def test_registry_names_and_unknown_name():
  assert models.names() == ("audio_cnn", "bert", "bert_base", "bert_tiny", "cnn1d_mnist1d",
                            "cnn1d_mnist1d_wide", "cnn_digits",
                            "efficientnet_v2_m",
                            "fcn_resnet50", "fcn_small", "mobilenet_v2", "resnet101",
                            "resnet18", "resnet34", "resnet50", "vit_b16", "vit_s16",
                            "vit_ti16", "wav2vec2", "wav2vec2_base", "wav2vec2_large_lv60",
                            "wav2vec2_tiny")
  for call in (lambda: models.get("resnet19"), lambda: models.canonical_name("resnet19")):
    with pytest.raises(ValueError) as error:
      call()
    message = str(error.value)
    assert "\n" not in message and "'resnet19'" in message
    assert all(name in message for name in models.names()) and "vit_b_16" in message


def test_registry_accepts_torchvision_spellings():
  assert models.aliases() == {"vit_b_16": "vit_b16"}
  for torchvision_name, ours in (("vit_b_16", "vit_b16"), ("resnet50", "resnet50"),
                                 ("mobilenet_v2", "mobilenet_v2"),
                                 ("efficientnet_v2_m", "efficientnet_v2_m"),
                                 ("fcn_resnet50", "fcn_resnet50")):
    assert models.canonical_name(torchvision_name) == ours
    assert models.get(torchvision_name, num_classes=3) == models.get(ours, num_classes=3)
  assert "vit_b_16" not in models.names()  # names() lists canonical names only


def test_registry_passes_kwargs_and_rejects_unknown_stem():
  model = models.get("resnet50", stem="cifar", num_classes=7)
  assert (model.stem, model.num_classes, model.block_cls) == ("cifar", 7, models.Bottleneck)
  with pytest.raises(ValueError, match="stem"):
    jax.eval_shape(lambda: models.get("resnet18", stem="tiny").init(
        RNGS, jnp.zeros((1, 8, 8, 3)), train=False))
