"""The functional entry point for any JAX model equals the wrapper."""
import flax.linen as nn
import jax
import numpy as np

import spg_jax

from tiny_base import NUM_CLASSES, X, apply_train, init, make_spg


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
