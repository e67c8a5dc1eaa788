"""The protocol's ablation arms: the unmasked loss, the models' `head_dropout`, the arm
builders (`spg_jax.protocol_arms`), the plain verdicts, and one tiny protocol run with the
dropout and unmasked arms compared against two references."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spg_jax
from experiments.configs import digits_protocol, mnist1d_protocol, spoken_digits_protocol
from spg_jax import models
from spg_jax import protocol
from spg_jax import protocol_arms
from spg_jax import report

LAMBDAS = (0.4, 0.2, 0.1)


def _logits():
  """[B=3, T+1=4, C=2] with label 0: sample 0 always right, sample 1 wrong from step 1,
  sample 2 wrong at step 0 (right again later: a mask would stop it at step 0)."""
  right, wrong = [2.0, 0.0], [0.0, 1.0]
  return jnp.array([[right, right, right, right],
                    [right, wrong, wrong, right],
                    [wrong, right, wrong, right]])


def test_unmasked_loss_matches_hand_computation():
  logits, labels = _logits(), jnp.zeros((3,), jnp.int32)
  ce = -np.asarray(jax.nn.log_softmax(logits))[..., 0]  # [B, T+1]
  expected = ce[:, 0].mean() + sum(lam * ce[:, t + 1].mean() for t, lam in enumerate(LAMBDAS))
  loss, metrics = spg_jax.classification_spg_loss(logits, labels, LAMBDAS, form="unmasked")
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  np.testing.assert_allclose(metrics["loss_replicas"], ce[:, 1:].mean(0), rtol=1e-6)
  masked, _ = spg_jax.classification_spg_loss(logits, labels, LAMBDAS, form="masked")
  assert abs(float(masked) - float(loss)) > 1e-3  # the masks matter on this batch


def test_unmasked_gradients_reach_every_step_of_every_sample():
  logits, labels = _logits(), jnp.zeros((3,), jnp.int32)
  grads = jax.grad(lambda l: spg_jax.classification_spg_loss(
      l, labels, LAMBDAS, form="unmasked")[0])(logits)
  assert np.all(np.abs(np.asarray(grads)).sum(-1) > 0)  # masked: sample 2 stops at step 0


def test_unmasked_loss_weights_episodes_by_valid():
  logits = _logits()
  terms = spg_jax.classification_terms(logits, jnp.zeros((3,), jnp.int32))
  valid = jnp.array([1.0, 1.0, 0.0])
  weighted, _ = spg_jax.spg_loss(terms._replace(valid=valid), LAMBDAS, form="unmasked")
  two, _ = spg_jax.spg_loss(spg_jax.classification_terms(logits[:2], jnp.zeros((2,), jnp.int32)),
                            LAMBDAS, form="unmasked")
  np.testing.assert_allclose(weighted, two, rtol=1e-6)


@pytest.mark.parametrize("name,shape", [("cnn1d_mnist1d_wide", (4, 40, 1)),
                                        ("cnn_digits", (4, 8, 8, 1)),
                                        ("fcn_small", (2, 8, 8, 3))])
def test_head_dropout_zero_is_the_plain_model_and_positive_changes_train_only(name, shape):
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  plain, zero, drop = models.get(name), models.get(name, head_dropout=0.0), models.get(
      name, head_dropout=0.5)
  variables = plain.init({"params": jax.random.PRNGKey(1)}, x, train=False)
  rngs = {"dropout": jax.random.PRNGKey(2)}

  def run(model, train):
    out = model.apply(variables, x, train=train, rngs=rngs, mutable=["batch_stats"])[0]
    return np.asarray(out[0]), out[1]

  plain_train, plain_aux = run(plain, True)
  np.testing.assert_array_equal(plain_train, run(zero, True)[0])  # bit for bit
  np.testing.assert_array_equal(run(plain, False)[0], run(drop, False)[0])  # eval: no dropout
  drop_train, drop_aux = run(drop, True)
  assert np.abs(plain_train - drop_train).max() > 1e-4
  # The head's input in aux stays un-dropped (SPG's replicas read it).
  np.testing.assert_array_equal(plain_aux["pre_logits"], drop_aux["pre_logits"])


@pytest.mark.parametrize("name", ["cnn1d_mnist1d", "cnn1d_mnist1d_wide", "cnn_digits",
                                  "resnet18", "mobilenet_v2", "efficientnet_v2_m", "vit_ti16",
                                  "fcn_resnet50", "fcn_small"])
def test_registry_models_have_head_dropout(name):
  assert models.get(name).head_dropout == 0.0
  assert models.get(name, head_dropout=0.3).head_dropout == 0.3


def test_bad_head_dropout_is_one_line_error():
  model = models.get("cnn1d_mnist1d", head_dropout=1.0)
  with pytest.raises(ValueError, match=r"head_dropout=1\.0: must be a number in \[0, 1\)"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 40, 1)), train=False)


def test_arm_builders_and_cumulative_rates():
  assert protocol_arms.cumulative_rate(0.2, 1, 3) == pytest.approx(0.2)
  assert protocol_arms.cumulative_rate(0.2, 2, 3) == pytest.approx(0.36)
  assert protocol_arms.cumulative_rate(0.2, 3, 3) == pytest.approx(0.488)
  assert protocol_arms.cumulative_rate((0.1, 0.2, 0.5), 3, 3) == pytest.approx(
      1 - 0.9 * 0.8 * 0.5)
  arms = protocol_arms.arms_section(0.2, 3, cumulative=True)
  assert set(arms) == {"control", "dropout", "spg_hpo", "spg_unmasked", "spg_nas",
                       "dropout_t2", "dropout_t3"}
  assert arms.dropout.model.kwargs.head_dropout == 0.2 and not arms.dropout.spg.enabled
  assert arms.dropout_t3.model.kwargs.head_dropout == pytest.approx(0.488)
  assert (arms.spg_unmasked.spg.kind, arms.spg_unmasked.spg.form) == ("hpo", "unmasked")
  with pytest.raises(ValueError, match="arm 'dropout_t4': must be one of"):
    protocol_arms.arm_overrides("dropout_t4", 0.2, 3)


def test_ablation_configs_validate_with_every_arm():
  for module in (mnist1d_protocol, digits_protocol, spoken_digits_protocol):
    config = module.get_config("ablation")
    config.num_devices = 1  # the tests fake 8 CPU devices; these are one-device CPU configs
    protocol.validate_protocol(config)
    assert len(config.protocol.seeds) >= 10
    assert tuple(config.protocol.references) == ("control", "dropout")
    stages = protocol.arm_stage_configs(config, 0)
    assert {"control", "dropout", "dropout_t2", "dropout_t3", "spg_hpo", "spg_unmasked",
            "spg_nas"} == set(stages)
    assert stages["dropout"].model.kwargs.head_dropout == config.spg.rate
  with pytest.raises(ValueError, match="config variant 'abl': must be '' \\(full\\), "
                                       "'ablation' or 'quick'"):
    mnist1d_protocol.get_config("abl")


def test_references_must_be_arms():
  config = mnist1d_protocol.get_config("quick")
  config.protocol.references = ("control", "dropout")  # quick has no dropout arm
  with pytest.raises(ValueError, match="config.protocol.references: 'dropout' is not among"):
    protocol.validate_protocol(config)


@pytest.mark.parametrize("deltas,words", [
    ((0.010, 0.012, 0.008, 0.011), "better"),
    ((-0.010, -0.012, -0.008, -0.011), "worse"),
    ((0.010, -0.012, 0.008, -0.011), "no difference detectable")])
def test_plain_verdict_wording(deltas, words):
  ref = [0.9, 0.91, 0.92, 0.93]
  arm = [r + d for r, d in zip(ref, deltas)]
  metric = report.Metric("accuracy", percent=True, higher_is_better=True)
  line = report.plain_verdict("spg_hpo", "dropout", arm, ref, 0.95, metric)
  assert line.startswith(f"spg_hpo vs dropout: {words} (")
  assert "95% CI [" in line and "n=4" in line
  assert line.endswith("SPG is no better than dropout here") == (words != "better")
  assert not report.plain_verdict("spg_hpo", "control", arm, ref, 0.95, metric).endswith(
      "here")


@pytest.fixture(scope="module")
def ablation_run(tmp_path_factory):
  """One tiny run of the quick variant with control, dropout, dropout_t2, spg_unmasked."""
  config = mnist1d_protocol.get_config("quick")
  config.protocol.arms = protocol_arms.arms_section(
      config.spg.rate, 2, ("control", "dropout", "spg_unmasked"), cumulative=True)
  config.spg.num_replicas = 2
  config.spg.lambdas = (0.4, 0.2)
  config.protocol.references = protocol_arms.REFERENCES
  workdir = str(tmp_path_factory.mktemp("arms"))
  return workdir, protocol.run_protocol(config, workdir, log=lambda _: None, command="pytest")


def test_new_arms_run_and_are_compared_with_both_references(ablation_run):
  workdir, result = ablation_run
  assert result.arms == ["base", "control", "dropout", "dropout_t2", "spg_unmasked"]
  assert all(len(v) == 2 and all(0.0 <= s <= 1.0 for s in v) for v in result.scores.values())
  assert result.runs["spg_unmasked"][0].survival  # an SPG arm: it logs survival
  assert not result.runs["dropout"][0].survival
  text = open(os.path.join(workdir, "results.md"), encoding="utf-8").read()
  assert "| Δ vs control (pp)" in text and "| Δ vs dropout (pp)" in text
  assert "plain dropout 0.2 on the head's input" in text
  assert "plain dropout 0.36 on the head's input" in text
  for arm in ("dropout", "spg_unmasked", "dropout_t2"):
    assert f"- {arm} vs control: " in text
  assert "- spg_unmasked vs dropout: " in text
  printed = str(result)
  assert "Verdicts (paired by seed):" in printed and "spg_unmasked vs dropout: " in printed
  png = open(os.path.join(workdir, "results.png"), "rb").read()
  assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_score_axis_limits_do_not_magnify():
  assert report.score_axis_limits([94.2, 97.5], percent=True) == (90.0, 98.5)
  assert report.score_axis_limits([99.6, 99.9], percent=True) == (95.0, 100.0)
  assert report.score_axis_limits([50.0], percent=True) == (45.0, 51.0)
