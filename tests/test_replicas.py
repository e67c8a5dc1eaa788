"""Temporary modules, the one-apply wrapper, the functional entry point, validation."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spg_jax

NUM_CLASSES, WIDTH = 5, 32


class TinyBase(nn.Module):
  """A user's model: MLP features -> head, returning (logits, aux)."""

  @nn.compact
  def __call__(self, x, *, train):
    h = nn.relu(nn.Dense(WIDTH)(x))
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
    return nn.Dense(NUM_CLASSES, name="head")(h), {"pre_logits": h}


def make_spg(replicas):
  return spg_jax.SPGModel(base=TinyBase(), head=nn.Dense(NUM_CLASSES, parent=None),
                          replicas=replicas)


def init(model, x):
  return model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x, train=True)


def apply_train(model, variables, x, key=2, **kwargs):
  (logits, aux), updates = model.apply(variables, x, train=True, mutable=["batch_stats"],
                                       rngs={"dropout": jax.random.key(key)}, **kwargs)
  return logits, aux, updates


X = jax.random.normal(jax.random.key(3), (16, 8))


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


def test_eval_mode_skips_replicas_and_keeps_batch_stats():
  model = make_spg(spg_jax.hpo_replicas(3))
  variables = init(model, X)
  logits, _ = model.apply(variables, X, train=False)
  assert logits.shape == (16, 1, NUM_CLASSES)
  jaxpr = jax.make_jaxpr(lambda v: model.apply(v, X, train=False))(variables)
  # Eval never reads a replica parameter: no equation uses a replica leaf.
  used = {id(v) for eqn in jaxpr.eqns for v in eqn.invars}
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(variables)[0]]
  replica_invars = [v for v, p in zip(jaxpr.jaxpr.invars, paths) if "replicas_" in p]
  assert replica_invars and not any(id(v) in used for v in replica_invars)


def test_replica_passes_do_not_update_batch_stats():
  """Only the base pass updates running statistics (the head is applied functionally)."""
  base_only = TinyBase()
  spg = make_spg(spg_jax.hpo_replicas(3))
  variables = init(spg, X)
  _, _, updates = apply_train(spg, variables, X)
  _, base_updates = base_only.apply(spg_jax.strip_replicas(variables), X, train=True,
                                    mutable=["batch_stats"])
  chex.assert_trees_all_close(spg_jax.strip_replicas(updates), base_updates)


def test_strip_replicas_matches_base_only_init():
  base = TinyBase()
  base_variables = base.init(jax.random.key(7), X, train=True)
  spg = make_spg(spg_jax.hpo_replicas(3))
  variables = spg_jax.with_base(init(spg, X), base_variables)
  stripped = spg_jax.strip_replicas(variables)
  assert jax.tree.structure(stripped) == jax.tree.structure(base_variables)
  chex.assert_trees_all_equal(stripped, base_variables)
  assert jax.tree.structure(spg_jax.strip_replicas(variables["params"])) == \
      jax.tree.structure(base_variables["params"])


def test_with_base_rejects_other_model():
  spg = make_spg(spg_jax.hpo_replicas(3))
  variables = init(spg, X)
  wrong = jax.tree.map(lambda a: jnp.zeros(a.shape + (1,)), spg_jax.strip_replicas(variables))
  with pytest.raises(ValueError, match="shape"):
    spg_jax.with_base(variables, wrong)
  with pytest.raises(ValueError, match="structure"):
    spg_jax.with_base(variables, {"params": {}})


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


def test_reference_relu_replica_gets_no_gradient():
  """Documented behaviour: zero weight AND bias followed by ReLU is a dead branch."""
  model = make_spg(spg_jax.hpo_replicas(3, rate=0.1, use_relu=True))
  variables = init(model, X)
  predicted = jnp.argmax(apply_train(model, variables, X)[0][:, 0], -1)
  grads = _replica_grads(model, variables, X, predicted)
  assert all(float(jnp.abs(g).sum()) == 0.0 for g in jax.tree.leaves(grads))


def test_one_trace_across_batches_and_rates():
  model = make_spg(spg_jax.hpo_replicas(3))
  variables = init(model, X)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def spg_apply(variables, x, key, rates):
    (logits, _), _ = model.apply(variables, x, train=True, mutable=["batch_stats"],
                                 rngs={"dropout": key}, replica_rates=rates)
    return logits

  for i in range(4):
    x = jax.random.normal(jax.random.key(i), X.shape)
    out = spg_apply(variables, x, jax.random.key(i), jnp.full((3,), 0.1 * i))
    assert out.shape == (16, 4, NUM_CLASSES)


def test_functional_entry_point_matches_wrapper_without_dropout():
  model = make_spg(spg_jax.hpo_replicas(3, rate=0.0, use_relu=False))
  variables = init(model, X)
  # Give the replicas non-trivial weights so the comparison is not between identities.
  params = jax.tree.map(lambda a: a + 0.01, variables["params"])
  variables = {**variables, "params": params}
  wrapped, aux, _ = apply_train(model, variables, X)
  head = nn.Dense(NUM_CLASSES)
  head_fn = lambda h: head.apply({"params": params["base"]["head"]}, h)
  replica_params = {k: v for k, v in params.items() if k.startswith("replicas_")}
  steps = spg_jax.hpo_step_logits(replica_params, aux["pre_logits"], head_fn,
                                  jax.random.key(0), rate=0.0, use_relu=False)
  np.testing.assert_allclose(steps, wrapped, rtol=1e-5, atol=1e-5)


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


def test_bad_feature_key_names_the_field():
  model = spg_jax.SPGModel(base=TinyBase(), head=nn.Dense(NUM_CLASSES, parent=None),
                           replicas=spg_jax.hpo_replicas(3), feature_key="features")
  with pytest.raises(ValueError, match="feature_key='features'"):
    init(model, X)
