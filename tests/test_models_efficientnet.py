"""EfficientNet-V2-M: torchvision's parameter counts and layout, stochastic depth, BatchNorm
epsilon, SPG attachment (HPO, NAS, the reference attachment) and the NAS block.

The full model is checked abstractly (`jax.eval_shape`); computed numbers use small stage
settings of the same blocks, so the file stays fast on CPU. Counts per stage are
torchvision 0.29's (`sum(p.numel() for p in efficientnet_v2_m().features[i].parameters())`),
the first of each checked by hand below.
"""
import functools

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spg_jax import models
from spg_jax.models import efficientnet
from spg_jax.spg_model import build_spg_model, strip_replicas

RNGS = {"params": jax.random.key(0, impl="rbg"), "dropout": jax.random.key(1, impl="rbg")}

# torchvision: features.0 (stem), features.1..7 (stages), features.8 (last conv), classifier.
STAGE_COUNTS = {"stem": 696, 1: 15_696, 2: 396_192, 3: 1_126_048, 4: 1_686_340,
                5: 6_650_852, 6: 24_627_064, 7: 17_697_548, "last_conv": 657_920,
                "head": 1_281_000}
BLOCKS_PER_STAGE = (3, 5, 5, 7, 14, 18, 5)

# A small configuration of the same blocks: a fused stage without expansion (two blocks, so
# a residual), one with expansion and stride, an MBConv stage with stride then a residual.
TINY_STAGES = (("fused", 1, 3, 1, 8, 8, 2), ("fused", 4, 3, 2, 8, 16, 1),
               ("mbconv", 4, 3, 2, 16, 24, 2))


def tiny(**kwargs) -> models.EfficientNet:
  return models.EfficientNet(stages=TINY_STAGES, last_channel=48, num_classes=5, **kwargs)


def count(tree) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(tree))


@functools.lru_cache(maxsize=None)
def full_variables():
  model = models.get("efficientnet_v2_m")
  return jax.eval_shape(lambda: model.init(RNGS, jnp.zeros((1, 64, 64, 3)), train=False))


def test_parameter_count_and_stage_counts_match_torchvision():
  params = full_variables()["params"]
  assert count(params) == 54_139_356
  # By hand: stem 3*3*3*24 + BN 2*24; stage 1's block 3*3*24*24 + 2*24 = 5,232 (3 of them);
  # last conv 512*1280 + 2*1280; head 1280*1000 + 1000.
  assert count(params["stem"]) == 3 * 3 * 3 * 24 + 48 == STAGE_COUNTS["stem"]
  assert count(params["stage1_0"]) == 3 * 3 * 24 * 24 + 48
  assert count(params["last_conv"]) == 512 * 1280 + 2 * 1280 == STAGE_COUNTS["last_conv"]
  assert count(params["head"]) == 1280 * 1000 + 1000 == STAGE_COUNTS["head"]
  # MBConv features.4.0 (80 -> 160, expand 4, squeeze 80 // 4): expand 80*320 + 640,
  # depthwise 9*320 + 640, SE 320*20 + 20 + 20*320 + 320, project 320*160 + 320.
  assert count(params["stage4_0"]) == 26_240 + 3_520 + 13_140 + 51_520 == 94_420
  for stage, blocks in enumerate(BLOCKS_PER_STAGE, start=1):
    names = [f"stage{stage}_{j}" for j in range(blocks)]
    assert sum(count(params[n]) for n in names) == STAGE_COUNTS[stage]
  assert len([n for n in params if n.startswith("stage")]) == sum(BLOCKS_PER_STAGE) == 57


def test_layout_matches_torchvision_keys():
  """Shapes of torchvision keys (transposed as the module docstring's map says) and leaf
  counts: 1120 state_dict keys less 157 num_batches_tracked = 649 params + 314 stats."""
  variables = full_variables()
  flat = {"/".join(k): v.shape for k, v in
          flax.traverse_util.flatten_dict(variables["params"]).items()}
  assert len(flat) == 649 and len(jax.tree.leaves(variables["batch_stats"])) == 314
  expected = {
      "stem/conv/kernel": (3, 3, 3, 24),                        # features.0.0 [24, 3, 3, 3]
      "stage1_2/conv/conv/kernel": (3, 3, 24, 24),              # features.1.2.block.0.0
      "stage2_0/expand/conv/kernel": (3, 3, 24, 96),            # features.2.0.block.0.0
      "stage2_0/project/conv/kernel": (1, 1, 96, 48),           # features.2.0.block.1.0
      "stage3_1/expand/conv/kernel": (3, 3, 80, 320),           # features.3.1.block.0.0
      "stage4_0/expand/conv/kernel": (1, 1, 80, 320),           # features.4.0.block.0.0
      "stage4_0/depthwise/conv/kernel": (3, 3, 1, 320),         # features.4.0.block.1.0
      "stage4_0/se/fc1/kernel": (1, 1, 320, 20),                # features.4.0.block.2.fc1
      "stage4_0/se/fc1/bias": (20,),
      "stage4_1/se/fc2/kernel": (1, 1, 40, 640),                # features.4.1.block.2.fc2
      "stage5_0/se/fc1/kernel": (1, 1, 960, 40),                # 160 // 4 squeeze channels
      "stage4_0/project/conv/kernel": (1, 1, 320, 160),         # features.4.0.block.3.0
      "stage7_4/project/bn/scale": (512,),                      # features.7.4.block.3.1
      "last_conv/conv/kernel": (1, 1, 512, 1280),               # features.8.0
      "head/kernel": (1280, 1000), "head/bias": (1000,),        # classifier.1
  }
  assert {k: flat[k] for k in expected} == expected
  assert "stage1_0/expand" not in {"/".join(k.split("/")[:2]) for k in flat}  # ratio 1


def test_full_model_aux_shapes():
  model = models.get("efficientnet_v2_m", num_classes=7)
  (logits, aux), _ = jax.eval_shape(functools.partial(model.init_with_output, RNGS,
                                                      train=True), jnp.zeros((2, 64, 64, 3)))
  assert logits.shape == (2, 7)
  assert aux["features"].shape == (2, 2, 2, 1280)  # output stride 32
  assert aux["pooled"].shape == aux["pre_logits"].shape == (2, 1280)


def test_stochastic_depth_rates_rise_linearly_to_0_2():
  rates = efficientnet.stochastic_depth_rates(efficientnet.V2_M_STAGES, 0.2)
  assert len(rates) == 57
  # torchvision: stochastic_depth_prob * block_id / total_blocks, block_id = 0..56.
  np.testing.assert_allclose(rates, [0.2 * b / 57 for b in range(57)], rtol=0, atol=0)
  assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2 * 56 / 57)


def test_every_batch_norm_uses_epsilon_1e_3():
  epsilons = []

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, (nn.BatchNorm, models.TorchBatchNorm)) and \
        context.method_name == "__call__":
      epsilons.append(context.module.epsilon)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda: models.get("efficientnet_v2_m").init(
        RNGS, jnp.zeros((1, 64, 64, 3)), train=False))
  assert len(epsilons) == 157 and set(epsilons) == {1e-3}


@pytest.mark.parametrize("block", ["fused", "mbconv"])
def test_stochastic_depth_drops_whole_samples_in_train_mode_only(block):
  """Each sample's residual branch is either dropped (output = input) or kept and scaled
  by 1 / (1 - rate) (output = input + branch / 0.5), as torchvision's "row" mode."""
  cls = {"fused": models.FusedMBConv, "mbconv": models.MBConv}[block]
  x = jax.random.normal(jax.random.key(2), (32, 4, 4, 8))

  @jax.jit
  def run(x):
    variables = cls(8, 4).init(RNGS, x, train=False)
    apply = lambda rate, train, seed: cls(8, 4, stochastic_depth_rate=rate).apply(
        variables, x, train=train, rngs={"dropout": jax.random.key(seed)},
        mutable=["batch_stats"])[0]
    return apply(0.0, True, 0), apply(0.5, True, 3), apply(0.5, False, 3), \
        apply(0.0, False, 0)

  kept_all, dropped_some, eval_out, eval_plain = run(x)
  branch = kept_all - x  # train mode, rate 0: the whole branch for every sample
  assert np.all(np.abs(branch).reshape(32, -1).max(axis=1) > 1e-3)
  dropped = np.all(np.isclose(dropped_some, x, atol=1e-6), axis=(1, 2, 3))
  kept = np.all(np.isclose(dropped_some, x + branch / 0.5, rtol=1e-5, atol=1e-5),
                axis=(1, 2, 3))
  assert np.all(dropped ^ kept) and 4 <= dropped.sum() <= 28  # 32 draws at p = 0.5
  np.testing.assert_array_equal(eval_out, eval_plain)  # eval mode: no stochastic depth


def test_tiny_configuration_modes_and_dropout():
  model = tiny()
  x = jax.random.normal(jax.random.key(4), (2, 16, 16, 3))
  (logits, aux), variables = jax.jit(functools.partial(model.init_with_output, RNGS,
                                                       train=False))(x)

  @functools.partial(jax.jit, static_argnames="train")
  def apply(x, seed, train):  # one compilation per mode, reused for both seeds
    return model.apply(variables, x, train=train, rngs={"dropout": jax.random.key(seed)},
                       mutable=["batch_stats"])[0][0]

  out = {(train, seed): apply(x, seed, train=train) for train in (False, True)
         for seed in (5, 6)}
  head = model.spg_head().apply({"params": variables["params"]["head"]}, aux["pre_logits"])
  assert logits.shape == (2, 5) and aux["features"].shape == (2, 2, 2, 48)  # stride 8
  np.testing.assert_array_equal(aux["pooled"], aux["pre_logits"])  # eval: no dropout
  np.testing.assert_allclose(aux["pooled"], models.global_avg_pool(aux["features"]),
                             rtol=1e-6)
  np.testing.assert_allclose(head, logits, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(out[False, 5], out[False, 6])
  assert not np.allclose(out[True, 5], out[True, 6])  # dropout + stochastic depth


# (The default HPO attachment is the code path of every other classifier, run abstractly
# in tests/test_models.py; computed here: the reference head copy and the NAS block.)
@pytest.mark.parametrize("kind, spg_attach", [("hpo", "reference"), ("nas", "after_dropout")])
def test_tiny_under_spg(kind, spg_attach):
  """Without dropout or stochastic depth, replicas that start as the identity (HPO at rate
  0; NAS blocks with a zero last BatchNorm scale) repeat the base's prediction."""
  model = tiny(dropout_rate=0.0, stochastic_depth_rate=0.0, spg_attach=spg_attach)
  attachment = model.spg_attachments(kind)["out"]
  assert attachment.feature_key == {("hpo", "after_dropout"): "pre_logits",
                                    ("hpo", "reference"): "pooled"}.get(
                                        (kind, spg_attach), "features")
  spg = build_spg_model(model, model.spg_attachments(kind), kind, 3, rate=0.0)
  x = jax.random.normal(jax.random.key(7), (2, 16, 16, 3))
  (steps, _), variables = jax.jit(functools.partial(spg.init_with_output, RNGS,
                                                    train=True))(x)
  assert steps.shape == (2, 4, 5)
  for t in range(1, 4):
    np.testing.assert_allclose(steps[:, t], steps[:, 0], rtol=1e-5, atol=1e-5)
  base = jax.eval_shape(functools.partial(model.init, RNGS, train=False), x)
  assert jax.tree.structure(strip_replicas(variables)) == jax.tree.structure(base)


def test_nas_block_size_and_identity():
  model = models.get("efficientnet_v2_m")
  block = model.spg_nas_block()()
  assert isinstance(block, models.MBConv) and block.zero_init_last
  assert block.stochastic_depth_rate == 0.0 and block.bn_epsilon == 1e-3
  shapes = jax.eval_shape(lambda: block.init(RNGS, jnp.zeros((1, 2, 2, 1280)), train=False))
  # depthwise 9*1280 + BN 2*1280, SE 1280*320 + 320 + 320*1280 + 1280, project 1280^2 + BN.
  assert count(shapes["params"]) == 11_520 + 2_560 + 409_920 + 410_880 + 1_638_400 + 2_560 \
      == 2_475_840
  small = models.MBConv(16, expand_ratio=1, zero_init_last=True)
  h = jax.random.normal(jax.random.key(8), (2, 4, 4, 16))  # SiLU maps are signed

  @jax.jit
  def run(h):
    variables = small.init(RNGS, h, train=True)
    return small.apply(variables, h, train=True, mutable=["batch_stats"])[0]

  np.testing.assert_allclose(run(h), h, atol=1e-6)


def test_registry_and_bad_settings():
  assert "efficientnet_v2_m" in models.names()
  assert models.canonical_name("efficientnet_v2_m") == "efficientnet_v2_m"
  model = models.get("efficientnet_v2_m", num_classes=3)
  assert (model.num_classes, model.dropout_rate, model.stochastic_depth_rate,
          model.bn_epsilon, model.last_channel) == (3, 0.3, 0.2, 1e-3, 1280)
  for kwargs, field in ((dict(stages=(("conv", 1, 3, 1, 8, 8, 1),)), "stages"),
                        (dict(bn_epsilon=0.0), "bn_epsilon"),
                        (dict(bn_running_var="torch"), "bn_running_var"),
                        (dict(spg_attach="before"), "spg_attach")):
    with pytest.raises(ValueError) as error:
      models.get("efficientnet_v2_m", **kwargs)
    assert str(error.value).startswith(field) and "\n" not in str(error.value)
