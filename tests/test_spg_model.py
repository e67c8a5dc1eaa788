"""The one-apply wrapper: eval skips the replicas, only the base pass updates BatchNorm
statistics, strip / with_base, one trace across batches and rates, clear field errors."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import spg_jax

from tiny_base import NUM_CLASSES, X, TinyBase, apply_train, init, make_spg


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


def test_bad_feature_key_names_the_field():
  model = spg_jax.SPGModel(base=TinyBase(), head=nn.Dense(NUM_CLASSES, parent=None),
                           replicas=spg_jax.hpo_replicas(3), feature_key="features")
  with pytest.raises(ValueError, match="feature_key='features'"):
    init(model, X)
