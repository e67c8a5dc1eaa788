"""MobileNetV2's two SPG attachments: "after_dropout" (default) and "reference" (the authors'
code: HPO replicas from the pooled vector before the classifier's Dropout(0.2), every step
through the whole classifier, Dropout then Linear, with its own mask).

To see the masks, the head is made the identity (1280 classes, kernel = I, bias = 0), so a
step's logits ARE its dropped input, and the HPO replicas run at rate 0 (identity at init):
every replica step then sees exactly the same features, the pooled vector.

What holds for step 0 (the base's own prediction) in train mode, under the same rng:
* it is the base model's own train-mode output as SPGModel computes it (the base called at
  its path inside the wrapper): equal bit for bit;
* the base model applied on its own with the same rng draws a DIFFERENT dropout mask: Flax
  derives a mask from the rng and the module's path ("base/Dropout_0" inside the wrapper,
  "Dropout_0" alone); what is equal there is everything before the dropout (aux["pooled"],
  BatchNorm in train mode) and the running-statistics updates;
* in eval mode the wrapper returns the base's output, equal to the base applied alone.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spg_jax import models
from spg_jax.spg_model import build_spg_model, strip_replicas

RNGS = {"params": jax.random.key(0, impl="rbg"), "dropout": jax.random.key(1, impl="rbg")}
WIDTH = 1280
RATE = 0.2  # MobileNetV2's classifier dropout


def identity_head(variables):
  """`variables` of an SPGModel whose base head is the identity map."""
  params = dict(variables["params"])
  params["base"] = {**params["base"], "head": {"kernel": jnp.eye(WIDTH),
                                              "bias": jnp.zeros((WIDTH,))}}
  return {**variables, "params": params}


@functools.lru_cache(maxsize=None)
def run_both():
  """Train and eval outputs of SPG (HPO, T = 3, rate 0) and of the base alone, from the same
  variables for both settings (their parameter trees are the same: checked below)."""
  x = jax.random.normal(jax.random.key(2), (2, 64, 64, 3))
  rngs = {"dropout": jax.random.key(3)}
  spgs = {}
  for attach in models.SPG_ATTACH:
    base = models.get("mobilenet_v2", num_classes=WIDTH, spg_attach=attach)
    spgs[attach] = build_spg_model(base, base.spg_attachments("hpo"), "hpo", 3, rate=0.0)

  shapes = {a: jax.tree.map(jnp.shape, jax.eval_shape(
      functools.partial(spg.init, RNGS, train=True), x)) for a, spg in spgs.items()}

  @jax.jit
  def run(x):
    variables = identity_head(spgs["reference"].init(RNGS, x, train=True))
    base, base_variables = spgs["reference"].base, strip_replicas(variables)
    train = functools.partial(spgs["reference"].apply, variables, x, rngs=rngs,
                              mutable=["batch_stats"])
    (steps, aux), updates = train(train=True)
    (inside, _), _ = train(method=lambda m, x: m.base(x, train=True))
    (alone, alone_aux), alone_updates = base.apply(base_variables, x, train=True, rngs=rngs,
                                                   mutable=["batch_stats"])
    (default_steps, default_aux), _ = spgs["after_dropout"].apply(
        variables, x, train=True, rngs=rngs, mutable=["batch_stats"])
    return dict(
        steps=steps, aux=aux, updates=updates["batch_stats"]["base"], inside=inside,
        alone=alone, alone_aux=alone_aux, alone_updates=alone_updates["batch_stats"],
        eval_steps=spgs["reference"].apply(variables, x, train=False)[0],
        eval_alone=base.apply(base_variables, x, train=False)[0], variables=variables,
        default_steps=default_steps, default_aux=default_aux)

  return run(x), shapes


def test_reference_steps_that_see_the_same_features_get_their_own_masks():
  out, _ = run_both()
  steps, pooled = np.asarray(out["steps"]), np.asarray(out["aux"]["pooled"])
  assert steps.shape == (2, 4, WIDTH)
  # Train-mode BatchNorm then ReLU6: some pooled channels are exactly 0 (no information).
  signal = pooled != 0
  assert signal.mean() > 0.4
  masks = []
  for t in range(4):
    kept = steps[:, t] != 0
    # Every replica step is Dropout(0.2) of the SAME pooled vector: kept entries are
    # pooled / 0.8 (inverted dropout), the rest 0; step 0 is the base's own dropout.
    np.testing.assert_allclose(steps[:, t][kept & signal], pooled[kept & signal] / (1 - RATE),
                               rtol=1e-6)
    assert 0.7 < kept[signal].mean() < 0.9
    masks.append(kept & signal)
  for s in range(4):
    for t in range(s + 1, 4):
      assert (masks[s] != masks[t]).mean() > 0.1, (s, t)  # ~ 2 * 0.8 * 0.2 = 0.32


def test_default_steps_share_the_base_mask():
  """Today's attachment: replicas start after the base's dropout and the head is the
  Linear alone, so identity replicas repeat step 0 exactly (one mask for all steps)."""
  out, _ = run_both()
  steps = np.asarray(out["default_steps"])
  np.testing.assert_array_equal(steps[:, 0], np.asarray(out["default_aux"]["pre_logits"]))
  # The same base pass (same variables, same rng) as with the reference attachment.
  np.testing.assert_array_equal(steps[:, 0], np.asarray(out["steps"][:, 0]))
  for t in range(1, 4):
    np.testing.assert_array_equal(steps[:, t], steps[:, 0])
  assert np.mean(steps[:, 0] == 0) > 0.1  # the base's dropout is on: the check has teeth


def test_step_zero_is_the_base_prediction_where_that_holds():
  out, _ = run_both()
  steps = np.asarray(out["steps"])
  # The base's own train-mode logits, computed at the same path with the same rng.
  np.testing.assert_array_equal(steps[:, 0], np.asarray(out["inside"]))
  np.testing.assert_array_equal(steps[:, 0], np.asarray(out["aux"]["pre_logits"]))
  # The base alone: the same features and statistics, but its own dropout mask.
  np.testing.assert_allclose(out["aux"]["pooled"], out["alone_aux"]["pooled"], rtol=1e-6,
                             atol=1e-6)
  for a, b in zip(jax.tree.leaves(out["updates"]), jax.tree.leaves(out["alone_updates"])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert not np.array_equal(steps[:, 0] != 0, np.asarray(out["alone"]) != 0)
  # Eval mode: the base model alone (the replicas and the head copies never run, so the
  # same holds under both settings).
  np.testing.assert_array_equal(out["eval_steps"][:, 0], out["eval_alone"])
  assert out["eval_steps"].shape == (2, 1, WIDTH)


def test_both_settings_have_the_same_parameters_and_head():
  out, shapes = run_both()
  assert shapes["reference"] == shapes["after_dropout"]
  head = out["variables"]["params"]["base"]["head"]
  assert sorted(head) == ["bias", "kernel"]  # the Dense's own, read by the Dropout + Dense


def test_attachment_fields():
  model = models.get("mobilenet_v2", spg_attach="reference")
  hpo, nas = (models.spg_attachment(model, kind) for kind in models.KINDS)
  assert (hpo.feature_key, hpo.pre_head, hpo.head_path) == ("pooled", None, ("head",))
  assert (nas.feature_key, nas.pre_head) == ("features", models.global_avg_pool)
  for a in (hpo, nas):
    assert isinstance(a.head, models.DropoutDense) and a.head.parent is None
    assert (a.head.rate, a.head.deterministic, a.head.features) == (RATE, False, 1000)
  default = models.spg_attachment(models.get("mobilenet_v2"), "hpo")
  assert default.feature_key == "pre_logits" and type(default.head).__name__ == "Dense"
  with pytest.raises(ValueError) as error:
    models.get("mobilenet_v2", spg_attach="before_dropout")
  assert str(error.value) == ("spg_attach='before_dropout': must be one of "
                              "('after_dropout', 'reference')")


def test_dropout_dense_is_dropout_then_the_dense():
  x = jax.random.normal(jax.random.key(4), (8, 4))
  head = models.DropoutDense(6, rate=0.5)
  variables = head.init(RNGS, x, deterministic=True)
  kernel, bias = variables["params"]["kernel"], variables["params"]["bias"]
  np.testing.assert_allclose(head.apply(variables, x, deterministic=True), x @ kernel + bias,
                             rtol=1e-6, atol=1e-6)
  rngs = {"dropout": jax.random.key(5)}
  train = head.apply(variables, x, deterministic=False, rngs=rngs)
  # The kernel [4, 6] has rank 4, so the Dense's input can be read back: each entry of x is
  # dropped (0) or kept and scaled by 1 / (1 - 0.5).
  inputs = (train - bias) @ np.linalg.pinv(kernel)
  dropped = np.isclose(inputs, 0, atol=1e-4)
  assert np.all(dropped | np.isclose(inputs, 2 * x, atol=1e-4))
  assert 0.2 < dropped.mean() < 0.8
  # The mode can come from the field instead of the call (how SPG's wrapper applies it).
  np.testing.assert_array_equal(head.clone(deterministic=False).apply(variables, x, rngs=rngs),
                                train)
