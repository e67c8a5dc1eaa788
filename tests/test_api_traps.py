"""Every silent trap of the library API that a new user met (issue 16's first list), as a
table: the trap as it was, then the behaviour that replaces it (a correct answer, checked
against hand-computed numbers, or a one-line ValueError naming the field).

tests/test_nnx.py has the NNX path in full (training, the "every_step" rule).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spg_jax

from tiny_base import NUM_CLASSES, WIDTH, X, apply_train, make_spg

KEY = jax.random.key(0)
LAMBDAS = (0.4, 0.2, 0.1)


def _one_line_error(fn, match):
  with pytest.raises(ValueError, match=match) as info:
    fn()
  assert "\n" not in str(info.value), str(info.value)


def _head(params):
  return lambda h: nn.Dense(NUM_CLASSES).apply({"params": params}, h)


def _head_params():
  return nn.Dense(NUM_CLASSES).init(KEY, jnp.zeros((1, WIDTH)))["params"]


H0 = jax.random.normal(jax.random.key(5), (6, WIDTH))


# ------------------------------------------------------------------ the new behaviours
def default_replicas_learn():
  """The functional default is the learning residual Linear; its gradient is not 0."""
  replicas = spg_jax.init_hpo_replicas(KEY, width=WIDTH, num_replicas=3)
  assert set(replicas["replicas_0"]) == {"linear_0"}
  head = _head(_head_params())
  labels = jnp.argmax(head(H0), -1)  # every episode alive at step 0: all replicas count

  def loss(r):
    steps = spg_jax.hpo_step_logits(r, H0, head, jax.random.key(1), rate=0.1)
    return spg_jax.classification_spg_loss(steps, labels, LAMBDAS)[0]

  grads = jax.grad(loss)(replicas)
  for t in range(3):
    assert float(jnp.abs(grads[f"replicas_{t}"]["linear_0"]["kernel"]).sum()) > 0, t
  # The authors' replica is parameter-free (it could never learn), not silently frozen.
  relu = spg_jax.init_hpo_replicas(KEY, width=WIDTH, num_replicas=3, use_relu=True)
  assert relu == {"replicas_0": {}, "replicas_1": {}, "replicas_2": {}}


def replica_kind_read_from_params():
  """`hpo_step_logits` reads the kind and depth from the params: with learned (non-zero)
  weights its logits equal the paper's equation computed by hand (rate 0: no dropout)."""
  replicas = spg_jax.init_hpo_replicas(KEY, width=WIDTH, num_replicas=2, use_relu=False)
  replicas = jax.tree.map(lambda a: a + 0.05, replicas)
  params = _head_params()
  steps = spg_jax.hpo_step_logits(replicas, H0, _head(params), KEY, rate=0.0)
  h, expected = H0, [H0 @ params["kernel"] + params["bias"]]
  for t in range(2):
    w = replicas[f"replicas_{t}"]["linear_0"]
    h = h + h @ w["kernel"] + w["bias"]  # h_t = h' + Linear(h'), h' = h_{t-1} at rate 0
    expected.append(h @ params["kernel"] + params["bias"])
  np.testing.assert_allclose(steps, jnp.stack(expected, 1), rtol=1e-5, atol=1e-5)
  _one_line_error(lambda: spg_jax.hpo_step_logits(replicas, H0, _head(params), KEY,
                                                  use_relu=True), r"use_relu=True")


def string_bools_rejected():
  """A string where a bool is expected ("False" is truthy) is refused, not obeyed."""
  _one_line_error(lambda: spg_jax.init_hpo_replicas(KEY, WIDTH, use_relu="False"),
                  r"use_relu='False'.*bool")
  _one_line_error(lambda: spg_jax.hpo_replicas(3, use_relu="none"), r"use_relu='none'")
  replicas = spg_jax.init_hpo_replicas(KEY, WIDTH, 3)
  _one_line_error(lambda: spg_jax.hpo_step_logits(replicas, H0, _head(_head_params()), KEY,
                                                  train="False"), r"train='False'")
  model = make_spg(spg_jax.hpo_replicas(3))
  _one_line_error(lambda: model.init({"params": KEY, "dropout": KEY}, X, train="no"),
                  r"train='no'")


def normalize_is_a_mode():
  """normalize="none" does not normalise; a bad mode is an error; True still means "loss"."""
  steps = jax.random.normal(jax.random.key(2), (6, 4, NUM_CLASSES))
  labels = jnp.argmax(steps[:, 0], -1)  # alive after step 0, so replica losses count
  loss, metrics = spg_jax.classification_spg_loss(steps, labels, LAMBDAS, normalize="none")
  assert float(metrics["norm_factor"]) == 1.0
  assert float(loss) == float(metrics["loss_total"])
  normed, m = spg_jax.classification_spg_loss(steps, labels, LAMBDAS, normalize="loss")
  factor = np.exp(float(m["loss_base"]) - float(m["loss_total"]))
  np.testing.assert_allclose(float(normed), float(m["loss_total"]) * factor, rtol=1e-5)
  assert factor < 1.0  # the replicas add loss, so "loss" really scales it down
  legacy, _ = spg_jax.classification_spg_loss(steps, labels, LAMBDAS, normalize=True)
  assert float(legacy) == float(normed)
  _one_line_error(lambda: spg_jax.classification_spg_loss(steps, labels, LAMBDAS,
                                                          normalize="yes"),
                  r"normalize='yes': must be one of \['none', 'loss', 'lr'\]")


def batched_layout_is_the_default():
  """`[B, T+1, C]` with B == T+1: the default reads it as batched (was: silently
  transposed); a per-sample array with the batched default, or a batched one with
  step_axis=0, is a one-line error (was: a broadcasting error or a wrong answer)."""
  # B = T+1 = 2, C = 3. Row b, step t: argmax written out by hand.
  logits = jnp.array([[[5., 0, 0], [0, 5., 0]],    # sample 0: steps predict 0, 1
                      [[0, 0, 5.], [0, 0, 5.]]])   # sample 1: steps predict 2, 2
  labels = jnp.array([0, 2])
  np.testing.assert_array_equal(spg_jax.classification_correct(logits, labels),
                                [[True, False], [True, True]])
  np.testing.assert_array_equal(spg_jax.alive_masks(jnp.array([[1, 0, 1], [1, 1, 0]])),
                                [[1, 1, 0], [1, 1, 1]])
  np.testing.assert_array_equal(spg_jax.episode_lengths(jnp.array([[1, 0, 1], [1, 1, 0]])),
                                [2, 3])
  _one_line_error(lambda: spg_jax.classification_correct(logits[0], jnp.array(0)),
                  r"step_axis=1.*per sample")
  batch = jnp.zeros((4, 3, 5))  # B=4, T+1=3
  _one_line_error(lambda: spg_jax.classification_correct(batch, jnp.zeros(4, jnp.int32),
                                                         step_axis=0), r"labels: shape \(4,\)")
  _one_line_error(lambda: spg_jax.token_correct(batch[:, :, None], jnp.zeros(4, jnp.int32)),
                  r"labels: shape \(4,\) .* need \(4, 1\)")
  _one_line_error(lambda: spg_jax.alive_masks(jnp.ones(3)), r"step_axis=1: correct")
  _one_line_error(lambda: spg_jax.step_cross_entropy(batch, jnp.zeros(4, jnp.int32)),
                  r"labels: shape \(4,\)")


def init_in_eval_mode_creates_replicas():
  """`SPGModel.init(..., train=False)` makes the same variables as train=True (was: no
  replica params, then a Flax error at the first training call), without a dropout rng."""
  model = make_spg(spg_jax.hpo_replicas(3))
  train_vars = model.init({"params": KEY, "dropout": KEY}, X, train=True)
  eval_vars = model.init(KEY, X, train=False)
  assert jax.tree.structure(eval_vars) == jax.tree.structure(train_vars)
  assert {"replicas_0", "replicas_1", "replicas_2"} <= set(eval_vars["params"])
  logits, _ = model.apply(eval_vars, X, train=False)
  assert logits.shape == (X.shape[0], 1, NUM_CLASSES)
  steps, _, _ = apply_train(model, eval_vars, X)  # the first training call works
  assert steps.shape == (X.shape[0], 4, NUM_CLASSES)


def traced_rate_in_functional_api():
  """`hpo_step_logits` under jit with a traced rate (shared or per replica) equals the
  same call with Python floats (was: refused); a wrong shape is a one-line error."""
  replicas = spg_jax.init_hpo_replicas(KEY, WIDTH, 3)
  head = _head(_head_params())
  key = jax.random.key(7)
  traced = jax.jit(lambda r: spg_jax.hpo_step_logits(replicas, H0, head, key, rate=r))
  np.testing.assert_allclose(traced(jnp.float32(0.3)),  # same masks; jit's rounding only
                             spg_jax.hpo_step_logits(replicas, H0, head, key, rate=0.3),
                             rtol=1e-5, atol=1e-5)
  per = jnp.array([0.1, 0.5, 0.25], jnp.float32)
  expected = spg_jax.hpo_step_logits(replicas, H0, head, key, rate=(0.1, 0.5, 0.25))
  np.testing.assert_allclose(traced(per), expected, rtol=1e-6, atol=1e-6)
  assert not np.allclose(traced(per), traced(jnp.float32(0.1)))  # the rates are used
  _one_line_error(lambda: traced(jnp.zeros(2)), r"rate: shape \(2,\)")
  _one_line_error(lambda: spg_jax.hpo_step_logits(replicas, H0, head, key, rate=1.5),
                  r"rate=1\.5")


def nnx_batchnorm_head_keeps_base_statistics():
  """Under NNX the replica passes leave a BatchNorm head's running statistics as the base
  pass left them (was: updated with the replicas' features): mean = 0.1 * mean(h0)."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from spg_jax import nnx as spg_nnx  # pylint: disable=g-import-not-at-top
  bn = nnx.BatchNorm(WIDTH, momentum=0.9, rngs=nnx.Rngs(0))
  replicas = spg_nnx.SPGReplicas(WIDTH, 3, 0.5, rngs=nnx.Rngs(1))
  h0 = H0 + 3.0
  steps = spg_nnx.spg_step_logits(replicas, bn, h0)
  assert steps.shape == (6, 4, WIDTH)
  np.testing.assert_allclose(bn.mean[...], 0.1 * h0.mean(0), rtol=1e-5)


TRAPS = [
    ("functional replicas trained with gradient exactly 0 (default use_relu=True)",
     default_replicas_learn),
    ("init use_relu=False then hpo_step_logits default computed something else",
     replica_kind_read_from_params),
    ("a string given for a bool flag (use_relu='False', train='False') was truthy",
     string_bools_rejected),
    ("classification_spg_loss(normalize='none') normalised", normalize_is_a_mode),
    ("classification_correct on [B, T+1, C] with step_axis=0 broke or transposed",
     batched_layout_is_the_default),
    ("SPGModel.init(train=False) made no replicas; first training call failed in Flax",
     init_in_eval_mode_creates_replicas),
    ("hpo_step_logits rejected a traced dropout rate that SPGModel accepts",
     traced_rate_in_functional_api),
    ("a BatchNorm head under NNX was updated with the replicas' features",
     nnx_batchnorm_head_keeps_base_statistics),
]


@pytest.mark.parametrize("trap,new_behaviour", TRAPS, ids=[f.__name__ for _, f in TRAPS])
def test_trap_is_gone(trap, new_behaviour):
  del trap  # the table's first column, for the reader and the test id's docstring
  new_behaviour()
