"""BatchNorm's running-variance rule: torch's unbiased update (`bn_running_var="unbiased"`,
`TorchBatchNorm`) next to Flax's biased one (the default), with hand-computed numbers; the
same variables under both rules; the option reaching every BatchNorm of every model."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spg_jax import models
from spg_jax.models import layers
from spg_jax.spg_model import build_spg_model

RNGS = {"params": jax.random.key(0, impl="rbg"), "dropout": jax.random.key(1, impl="rbg")}


def train_step(bn: nn.Module, x):
  """(output, updated batch_stats) of one train-mode apply from the initial statistics."""
  variables = bn.init(RNGS, x, use_running_average=False)
  y, updates = bn.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
  return y, updates["batch_stats"], variables


def test_two_by_two_batch_by_hand():
  # Channel 0 sees {1, 3}: mean 2, biased variance 1, unbiased 2. Channel 1 sees {2, 6}:
  # mean 4, biased 4, unbiased 8. From the initial (mean 0, var 1) with torch's momentum
  # 0.1: mean 0.1 * [2, 4]; var 0.9 + 0.1 * [1, 4] (Flax) or 0.9 + 0.1 * [2, 8] (torch).
  x = jnp.array([[1.0, 2.0], [3.0, 6.0]])
  y_torch, stats_torch, _ = train_step(layers.TorchBatchNorm(running_var="unbiased"), x)
  y_flax, stats_flax, _ = train_step(layers.TorchBatchNorm(running_var="biased"), x)
  np.testing.assert_allclose(stats_torch["mean"], [0.2, 0.4], rtol=1e-6)
  np.testing.assert_allclose(stats_torch["var"], [1.1, 1.7], rtol=1e-6)
  np.testing.assert_allclose(stats_flax["mean"], [0.2, 0.4], rtol=1e-6)
  np.testing.assert_allclose(stats_flax["var"], [1.0, 1.3], rtol=1e-6)
  # Both normalise with the biased batch variance, as torch does in train mode.
  expected = np.array([[-1 / np.sqrt(1 + 1e-5), -2 / np.sqrt(4 + 1e-5)],
                       [1 / np.sqrt(1 + 1e-5), 2 / np.sqrt(4 + 1e-5)]])
  np.testing.assert_allclose(y_torch, expected, rtol=1e-6)
  np.testing.assert_array_equal(y_torch, y_flax)


def test_values_per_channel_count_every_axis_but_the_last():
  # [B=2, H=1, W=2, C=1] holding 0, 1, 2, 5: n = 4, mean 2, biased variance 14 / 4, unbiased
  # 14 / 3, so var = 0.9 + 0.1 * 14 / 3.
  x = jnp.array([0.0, 1.0, 2.0, 5.0]).reshape(2, 1, 2, 1)
  _, stats, _ = train_step(layers.TorchBatchNorm(), x)
  np.testing.assert_allclose(stats["mean"], [0.2], rtol=1e-6)
  np.testing.assert_allclose(stats["var"], [0.9 + 0.1 * 14 / 3], rtol=1e-6)


def test_biased_rule_is_flax_batch_norm_exactly_and_eval_uses_running_statistics():
  x = jax.random.normal(jax.random.key(2), (4, 3, 3, 5)) * 2.0 + 1.0
  kwargs = dict(momentum=0.9, epsilon=1e-3)

  @jax.jit
  def run(x):
    results = {}
    for name, bn in (("flax", nn.BatchNorm(**kwargs)),
                     ("biased", layers.TorchBatchNorm(running_var="biased", **kwargs)),
                     ("unbiased", layers.TorchBatchNorm(running_var="unbiased", **kwargs))):
      y, stats, variables = train_step(bn, x)
      trained = {**variables, "batch_stats": stats}
      results[name] = (y, stats, variables, bn.apply(trained, x, use_running_average=True),
                       bn.apply(trained, x, use_running_average=True,
                                mutable=["batch_stats"])[1])
    return results

  results = run(x)
  y, stats, variables, eval_y, _ = results["flax"]
  for name in ("biased", "unbiased"):
    y_, stats_, variables_, eval_y_, eval_updates = results[name]
    # Same variables (names, shapes, initial values) as Flax's BatchNorm: checkpoints and
    # converted torchvision weights load into either.
    assert jax.tree.map(np.shape, variables_) == jax.tree.map(np.shape, variables)
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, variables_, variables)))
    np.testing.assert_array_equal(y_, y)
    np.testing.assert_array_equal(stats_["mean"], stats["mean"])
    # Eval mode normalises with the running statistics and updates nothing.
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, eval_updates["batch_stats"],
                                            stats_)))
    expected = (x - stats_["mean"]) / np.sqrt(stats_["var"] + 1e-3)
    np.testing.assert_allclose(eval_y_, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(results["biased"][1]["var"], stats["var"])
  np.testing.assert_array_equal(results["biased"][3], eval_y)
  n = 4 * 3 * 3
  np.testing.assert_allclose(results["unbiased"][1]["var"] - 0.9, (stats["var"] - 0.9) * n /
                             (n - 1), rtol=1e-5)


def test_init_does_not_update_statistics():
  variables = layers.TorchBatchNorm().init(RNGS, jnp.arange(6.0).reshape(3, 2),
                                           use_running_average=False)
  np.testing.assert_array_equal(variables["batch_stats"]["mean"], [0.0, 0.0])
  np.testing.assert_array_equal(variables["batch_stats"]["var"], [1.0, 1.0])


def test_bad_values_are_one_line_errors():
  x = jnp.ones((1, 3))  # one value per channel
  bn = layers.TorchBatchNorm()
  variables = bn.init(RNGS, x, use_running_average=True)
  with pytest.raises(ValueError, match=r"^bn_running_var='unbiased': needs more than 1 value"):
    bn.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
  for call in (lambda: layers.batch_norm(True, jnp.float32, running_var="torch"),
               lambda: models.ConvBN(4, bn_running_var="torch").init(
                   RNGS, jnp.ones((1, 2, 2, 1)), train=False)):
    with pytest.raises(ValueError) as error:
      call()
    assert str(error.value) == "bn_running_var='torch': must be one of ('biased', 'unbiased')"
  with pytest.raises(ValueError, match=r"^bn_epsilon=-1"):
    layers.batch_norm(True, jnp.float32, epsilon=-1)


# Every registry model with BatchNorm, with a small input (abstract evaluation only).
BN_MODELS = {
    "resnet18": (dict(num_classes=4), (2, 32, 32, 3)),
    "resnet50": (dict(num_classes=4, stem="cifar"), (2, 8, 8, 3)),
    "mobilenet_v2": (dict(num_classes=4), (2, 32, 32, 3)),
    # Two stages of V2-M's blocks (fused, MBConv), to keep the tracing short.
    "efficientnet_v2_m": (dict(num_classes=4, stages=(("fused", 4, 3, 2, 24, 48, 2),
                                                      ("mbconv", 4, 3, 2, 48, 64, 2))),
                          (2, 16, 16, 3)),
    "fcn_resnet50": (dict(num_classes=3), (2, 16, 16, 3)),
    "fcn_small": (dict(num_classes=3), (2, 16, 16, 3)),
    "cnn_digits": (dict(), (2, 8, 8, 1)),
}


def batch_norms_used(make_and_run) -> list:
  """(class, running rule) of every BatchNorm called while `make_and_run()` is traced."""
  seen = []

  def record(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name == "__call__" and isinstance(module, (nn.BatchNorm,
                                                                 layers.TorchBatchNorm)):
      seen.append((type(module).__name__, getattr(module, "running_var", "biased")))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(make_and_run)
  return seen


def test_every_model_class_with_batch_norm_is_covered():
  with_bn = {type(models.get(name)) for name in models.names()
             if "bn_running_var" in type(models.get(name)).__dataclass_fields__}
  assert with_bn == {type(models.get(name)) for name in BN_MODELS}
  assert {"cnn1d_mnist1d", "vit_b16"}.isdisjoint(  # no BatchNorm, so no option
      name for name in models.names() if type(models.get(name)) in with_bn)


@pytest.mark.parametrize("name", sorted(BN_MODELS))
def test_option_reaches_every_batch_norm_including_heads_and_nas_blocks(name):
  kwargs, shape = BN_MODELS[name]
  x = jnp.zeros(shape)
  for rule, expected in (("biased", ("BatchNorm", "biased")),
                         ("unbiased", ("TorchBatchNorm", "unbiased"))):
    model = models.get(name, bn_running_var=rule, **kwargs)
    # With one NAS replica block per head: the blocks follow the model's rule too.
    wrapped = build_spg_model(model, models.spg_attachments(model, "nas"), "nas", 1)
    seen = batch_norms_used(functools.partial(wrapped.init, RNGS, x, train=True))
    assert seen and set(seen) == {expected}
  with pytest.raises(ValueError, match=r"^bn_running_var='torch': must be one of"):
    models.get(name, bn_running_var="torch", **kwargs)


def test_whole_model_statistics_follow_torch_rule_layer_by_layer():
  """DigitsCNN on [4, 8, 8, 1]: its BatchNorms see n = 4*8*8, 4*4*4 and 4*2*2 values per
  channel. The forward pass is the same under both rules, so each layer's unbiased running
  variance is the biased one with the batch part scaled by n / (n - 1)."""
  x = jax.random.normal(jax.random.key(3), (4, 8, 8, 1))

  @jax.jit
  def run(x):
    out = {}
    for rule in ("biased", "unbiased"):
      model = models.get("cnn_digits", bn_running_var=rule)
      variables = model.init(RNGS, x, train=False)
      out[rule] = model.apply(variables, x, train=True, mutable=["batch_stats"])
    return out

  out = run(x)
  np.testing.assert_array_equal(out["biased"][0][0], out["unbiased"][0][0])
  for layer, n in (("conv1", 256), ("conv2", 64), ("conv3", 16)):
    biased = out["biased"][1]["batch_stats"][layer]["bn"]
    unbiased = out["unbiased"][1]["batch_stats"][layer]["bn"]
    np.testing.assert_array_equal(unbiased["mean"], biased["mean"])
    np.testing.assert_allclose(unbiased["var"] - 0.9, (biased["var"] - 0.9) * n / (n - 1),
                               rtol=1e-5)
    assert not np.allclose(unbiased["var"], biased["var"], rtol=1e-4, atol=0)
