"""SPG on a Flax NNX model: a small CNN in the style of Flax's NNX MNIST example trains a
few steps on in-memory data with one optimizer for base and replicas; its loss equals
`spg_jax.spg_loss` on the trajectory computed by hand; dropping the replicas gives back the
base model's parameters; a BatchNorm head follows `head_batch_stats`."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import spg_jax
from spg_jax import nnx as spg_nnx

NUM_CLASSES, WIDTH, T = 10, 32, 3
LAMBDAS = (0.4, 0.2, 0.1)
RATES = (0.2, 0.3, 0.1)


class CNN(nnx.Module):
  """Flax's NNX MNIST CNN, shrunk to 8x8 inputs; `features` is the head's input."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 8, kernel_size=(3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(8, 16, kernel_size=(3, 3), rngs=rngs)
    self.avg_pool = lambda x: nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
    self.linear1 = nnx.Linear(16 * 2 * 2, WIDTH, rngs=rngs)
    self.head = nnx.Linear(WIDTH, NUM_CLASSES, rngs=rngs)

  def features(self, x):
    x = self.avg_pool(nnx.relu(self.conv1(x)))
    x = self.avg_pool(nnx.relu(self.conv2(x)))
    return nnx.relu(self.linear1(x.reshape(x.shape[0], -1)))

  def __call__(self, x):
    return self.head(self.features(x))


def _data():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, NUM_CLASSES, size=64)
  images = rng.normal(size=(64, 8, 8, 1)).astype(np.float32) * 0.3
  images[np.arange(64), labels % 8, labels // 8 * 4, 0] += 3.0  # a learnable cue
  return jnp.asarray(images), jnp.asarray(labels, jnp.int32)


def _loss_fn(trainable, x, y, key):
  h0 = trainable.model.features(x)
  steps = spg_nnx.spg_step_logits(trainable.replicas, trainable.model.head, h0, key=key)
  return spg_jax.classification_spg_loss(steps, y, LAMBDAS)


def _param_count(module):
  return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _by_hand_loss(trainable, x, y, key):
  """The trajectory written out: h' = mask * h / (1 - p), h_t = h' + h' W_t + b_t,
  logits_t = h_t W_head + b_head; then `spg_jax.spg_loss`."""
  model, replicas = trainable.model, trainable.replicas
  h = model.features(x)
  w_head, b_head = model.head.kernel[...], model.head.bias[...]
  steps = [h @ w_head + b_head]
  for t in range(T):
    keep = jax.random.bernoulli(jax.random.fold_in(key, t), 1.0 - RATES[t], h.shape)
    h = jnp.where(keep, h / (1.0 - RATES[t]), 0.0)
    layer = replicas.layers[t][0]
    h = h + h @ layer.kernel[...] + layer.bias[...]
    steps.append(h @ w_head + b_head)
  terms = spg_jax.classification_terms(jnp.stack(steps, 1), y)
  return spg_jax.spg_loss(terms, LAMBDAS)[0]


def test_cnn_trains_with_one_optimizer_and_drops_replicas():
  x, y = _data()
  model = CNN(rngs=nnx.Rngs(0))
  base_count = _param_count(model)
  base_kernel = np.asarray(model.head.kernel[...])
  replicas = spg_nnx.SPGReplicas(WIDTH, T, RATES, rngs=nnx.Rngs(params=1, dropout=2))
  trainable, optimizer = spg_nnx.spg_optimizer(model, replicas, optax.adam(1e-2))
  # One optax state covers base and replicas: T replicas of D*D + D parameters added.
  assert _param_count(trainable) == base_count + T * (WIDTH * WIDTH + WIDTH)
  assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(optimizer.opt_state)
             if hasattr(a, "shape") and np.ndim(a) > 0) == 2 * _param_count(trainable)

  @nnx.jit
  def train_step(trainable, optimizer, key):
    (loss, metrics), grads = nnx.value_and_grad(_loss_fn, has_aux=True)(trainable, x, y, key)
    optimizer.update(trainable, grads)
    return loss, metrics

  losses = [float(train_step(trainable, optimizer, jax.random.key(10 + i))[0])
            for i in range(6)]
  assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
  # The replicas learned (their zero-initialised Linear moved) and so did the base.
  assert float(jnp.abs(replicas.layers[0][0].kernel[...]).max()) > 0
  assert not np.allclose(model.head.kernel[...], base_kernel)
  # The loss is spg_loss on the trajectory computed by hand, at the same dropout key.
  key = jax.random.key(99)
  got = float(_loss_fn(trainable, x, y, key)[0])
  np.testing.assert_allclose(got, float(_by_hand_loss(trainable, x, y, key)), rtol=1e-5)
  # Afterwards: the base model, its parameter count unchanged, trained in place.
  final = trainable.drop_replicas()
  assert final is model and _param_count(final) == base_count
  assert final(x).shape == (64, NUM_CLASSES)


class BNHead(nnx.Module):
  """A head with BatchNorm (momentum 0.5): `linear(bn(h))`."""

  def __init__(self, *, rngs):
    self.bn = nnx.BatchNorm(WIDTH, momentum=0.5, rngs=rngs)
    self.linear = nnx.Linear(WIDTH, NUM_CLASSES, rngs=rngs)

  def __call__(self, h):
    return self.linear(self.bn(h))


@pytest.mark.parametrize("mode", ["base", "every_step"])
def test_batchnorm_head_statistics(mode):
  """"base": the running mean after SPG equals one base pass, 0.5 * mean(h0) (replica
  passes do not update it: the issue's NNX trap); "every_step": base then replica 1..T
  update it in order, m <- 0.5 m + 0.5 mean(h_t), as the authors' code does."""
  h0 = jax.random.normal(jax.random.key(0), (16, WIDTH)) + 2.0
  head = BNHead(rngs=nnx.Rngs(0))
  replicas = spg_nnx.SPGReplicas(WIDTH, T, 0.5, rngs=nnx.Rngs(1))
  key = jax.random.key(3)
  step = nnx.jit(lambda r, hd: spg_nnx.spg_step_logits(r, hd, h0, key=key,
                                                      head_batch_stats=mode))
  steps = step(replicas, head)  # under nnx.jit, as in a train step
  assert steps.shape == (16, T + 1, NUM_CLASSES)
  expected = 0.5 * h0.mean(0)
  if mode == "every_step":
    for h in replicas(h0, key=key):  # the same features as the replica passes saw
      expected = 0.5 * expected + 0.5 * h.mean(0)
  np.testing.assert_allclose(head.bn.mean[...], expected, rtol=1e-5, atol=1e-6)
  assert not np.allclose(0.5 * h0.mean(0), 0.5 * (0.5 * h0.mean(0)) + 0.5 * replicas(
      h0, key=key)[0].mean(0), atol=1e-3)  # the two rules differ on this data


def test_nnx_replica_options_and_errors():
  relu = spg_nnx.SPGReplicas(WIDTH, T, 0.2, use_relu=True, rngs=nnx.Rngs(0))
  assert _param_count(relu) == 0  # the authors' replica: pure dropout
  h = jnp.ones((4, WIDTH))
  np.testing.assert_array_equal(relu(h, train=False)[-1], h)
  replicas = spg_nnx.SPGReplicas(WIDTH, T, 0.2, rngs=nnx.Rngs(0))
  head = nnx.Linear(WIDTH, NUM_CLASSES, rngs=nnx.Rngs(0))
  assert spg_nnx.spg_step_logits(replicas, head, h, train=False).shape == (4, 1, NUM_CLASSES)
  traced = jax.jit(lambda r: spg_nnx.spg_step_logits(replicas, head, h, rates=r,
                                                     key=jax.random.key(0)))
  np.testing.assert_allclose(traced(jnp.float32(0.2)), spg_nnx.spg_step_logits(
      replicas, head, h, key=jax.random.key(0)), rtol=1e-5, atol=1e-5)
  for make, match in [
      (lambda: spg_nnx.SPGReplicas(WIDTH, T, 1.5, rngs=nnx.Rngs(0)), r"rate=1\.5"),
      (lambda: spg_nnx.SPGReplicas(WIDTH, T, use_relu="no", rngs=nnx.Rngs(0)),
       r"use_relu='no'"),
      (lambda: spg_nnx.spg_step_logits(replicas, head, h, head_batch_stats="all"),
       r"head_batch_stats='all'"),
      (lambda: spg_nnx.spg_optimizer(head, {}, optax.sgd(0.1)), r"replicas: expected"),
  ]:
    with pytest.raises(ValueError, match=match):
      make()
