"""Temporary modules: identity at init, cumulative dropout, gradients only through alive
samples, the reference ReLU replica built without parameters (it could never learn; the
equivalence with the literal module is in test_fidelity.py), one-line errors for bad
arguments."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spg_jax

from tiny_base import NUM_CLASSES, X, apply_train, init, make_spg


@pytest.mark.parametrize("use_relu", [True, False])
def test_replicas_equal_base_at_init_without_dropout(use_relu):
  model = make_spg(spg_jax.hpo_replicas(3, rate=0.0, use_relu=use_relu))
  variables = init(model, X)
  logits, _, _ = apply_train(model, variables, X)
  assert logits.shape == (16, 4, NUM_CLASSES)
  for t in range(1, 4):
    np.testing.assert_array_equal(logits[:, t], logits[:, 0])


def test_nas_replicas_equal_base_at_init():
  model = make_spg(spg_jax.nas_replicas(3))
  logits, _, _ = apply_train(model, init(model, X), X)
  for t in range(1, 4):
    np.testing.assert_allclose(logits[:, t], logits[:, 0], rtol=1e-6, atol=1e-6)


def test_dropout_fraction_is_cumulative():
  rates = (0.2, 0.3, 0.1)
  batch, width = 1000, 200  # 200k features in all
  params = spg_jax.init_hpo_replicas(jax.random.key(0), width, num_replicas=3)
  h0 = jnp.ones((batch, width))
  # With the identity as the head, the step "logits" are the replica features h_t.
  steps = spg_jax.hpo_step_logits(params, h0, lambda h: h, jax.random.key(5), rate=rates)
  dropped = np.mean(np.asarray(steps) == 0, axis=(0, 2))  # [T+1]
  expected = np.concatenate([[0.0], spg_jax.cumulative_dropout_rates(rates)])
  # Binomial std at n=200k is <= 0.0012; 0.005 is > 4 standard deviations.
  np.testing.assert_allclose(dropped, expected, atol=5e-3)
  assert dropped[0] == 0.0


def _replica_grads(model, variables, x, labels):
  def loss_fn(params):
    logits, _, _ = apply_train(model, {**variables, "params": params}, x)
    return spg_jax.classification_spg_loss(logits, labels, (0.4, 0.2, 0.1))[0]
  grads = jax.grad(loss_fn)(variables["params"])
  return {k: v for k, v in grads.items() if k.startswith("replicas_")}


def test_replica_gradients_flow_only_through_alive_samples():
  model = make_spg(spg_jax.hpo_replicas(3, rate=0.1, use_relu=False))
  variables = init(model, X)
  logits, _, _ = apply_train(model, variables, X)  # same key as in the loss: same step 0
  predicted = jnp.argmax(logits[:, 0], -1)
  wrong = (predicted + 1) % NUM_CLASSES  # every sample wrong at step 0: no one alive after
  grads = _replica_grads(model, variables, X, wrong)
  assert all(float(jnp.abs(g).sum()) == 0.0 for g in jax.tree.leaves(grads))
  grads = _replica_grads(model, variables, X, predicted)  # alive at step 0
  assert float(jnp.abs(grads["replicas_0"]["linear_0"]["kernel"]).sum()) > 0


@pytest.mark.parametrize("depth", [1, 2])
def test_reference_relu_replica_has_no_parameters_and_is_dropout(depth):
  """Zero weight AND bias followed by ReLU is a dead branch at any depth (the last Linear's
  output sits at the ReLU's kink, so nothing before it gets a gradient either): the replica
  is built as dropout alone, which gives what the plain replica gives at initialisation
  (its branch is 0 there), with the same dropout masks."""
  relu = make_spg(spg_jax.hpo_replicas(3, rate=0.5, depth=depth, use_relu=True))
  plain = make_spg(spg_jax.hpo_replicas(3, rate=0.5, depth=depth, use_relu=False))
  v_relu, v_plain = init(relu, X), init(plain, X)
  assert sorted(v_relu["params"]) == ["base"]
  assert sorted(v_plain["params"]) == ["base", "replicas_0", "replicas_1", "replicas_2"]
  logits, _, _ = apply_train(relu, v_relu, X)
  np.testing.assert_array_equal(logits, apply_train(plain, v_plain, X)[0])
  assert not np.allclose(logits[:, 1], logits[:, 0])  # dropout really acts


@pytest.mark.parametrize("call, match", [
    (lambda: spg_jax.hpo_replicas(3, rate=1.0), r"rate=1\.0: every dropout rate must be in \[0, 1\)"),
    (lambda: spg_jax.hpo_replicas(3, rate=-0.1), r"rate=-0\.1"),
    (lambda: spg_jax.hpo_replicas(3, rate=(0.1, 0.2)), r"one per replica"),
    (lambda: spg_jax.hpo_replicas(0), r"num_replicas=0"),
    (lambda: spg_jax.hpo_replicas(3, depth=0), r"depth=0"),
    (lambda: spg_jax.validate_lambdas(()), r"lambdas=\(\): must be a non-empty"),
    (lambda: spg_jax.validate_lambdas((0.4, -0.2)), r"lambdas=\(0\.4, -0\.2\)"),
    (lambda: spg_jax.validate_hparams(3, (0.1, 0.2, 0.3), (0.4, 0.2)), r"one weight per replica"),
    (lambda: spg_jax.validate_hparams(2, (0.1, 0.2, 0.3), (0.4, 0.2)), r"rate=.*one per replica"),
    (lambda: spg_jax.hpo_step_logits(spg_jax.init_hpo_replicas(jax.random.key(0), 8), jnp.ones((2, 9)),
                                     lambda h: h, jax.random.key(0)), r"h0: feature width 9"),
    (lambda: spg_jax.classification_spg_loss(jnp.zeros((2, 4, 3)), jnp.array([0, 3]),
                                             (0.4, 0.2, 0.1)), r"labels: values must be in \[0, 3\)"),
    (lambda: spg_jax.classification_spg_loss(jnp.zeros((2, 4, 3)), jnp.array([0, 1]),
                                             (0.4, 0.2)), r"exactly one weight per replica"),
    (lambda: spg_jax.classification_spg_loss(jnp.zeros((2, 4, 3)), jnp.array([0, 1]),
                                             (0.4, 0.2, 0.1), form="ppo"), r"form='ppo'"),
    (lambda: spg_jax.step_cross_entropy(jnp.zeros((2, 3)), jnp.array(0), 1.5), r"label_smoothing=1\.5"),
    (lambda: spg_jax.make_mesh(10_000), r"num_devices=10000"),
])
def test_bad_input_raises_clear_error(call, match):
  with pytest.raises(ValueError, match=match):
    call()
