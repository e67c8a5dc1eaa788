"""Where the authors' code does something else than the paper or its own intent, both
behaviours are here and pinned with hand-computed numbers (docs/FAITHFULNESS.md):
normalisation ("none" = what their runs did, "loss" = what they intended), the base term's
denominator, per-step BatchNorm updates in a shared head, CTC's impossible alignments,
QA answers outside the window, the ReLU replica that is pure dropout, soft targets with
label smoothing."""
import math
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import spg_jax
from spg_jax import config as config_lib
from spg_jax import losses
from spg_jax import replicas as replicas_lib
from spg_jax import tasks
from spg_jax.train import step as step_lib

from tiny_base import NUM_CLASSES, X, apply_train, init, make_spg

LN2, LN3 = math.log(2.0), math.log(3.0)


# ------------------------------------------------------------------ 1. normalisation
def _one_replica_terms(w):
  """B=1, T=1, both steps correct: L_base = w, L_1 = w ln 2, so with lambda 1 the total is
  w (1 + ln 2) and the intended factor exp(L_base - L_total) = exp(-w ln 2) = 0.5 at w=1."""
  return losses.StepTerms(jnp.stack([w, w * LN2])[None], jnp.ones((1, 2), bool))


@pytest.mark.parametrize("mode, factor", [("none", 1.0), ("loss", 0.5), ("lr", 0.5)])
def test_normalisation_factor_is_one_as_the_authors_ran_and_half_as_intended(mode, factor):
  loss_fn = lambda w: losses.spg_loss(_one_replica_terms(w), (1.0,), normalize=mode)
  (loss, metrics), grad = jax.value_and_grad(loss_fn, has_aux=True)(1.0)
  np.testing.assert_allclose(metrics["norm_factor"], factor, rtol=1e-6)
  np.testing.assert_allclose(metrics["loss_total"], 1.0 + LN2, rtol=1e-6)
  # "loss" scales the value and the gradient; "lr" leaves both to the optimizer's step size.
  scale = factor if mode == "loss" else 1.0
  np.testing.assert_allclose(loss, scale * (1.0 + LN2), rtol=1e-6)
  np.testing.assert_allclose(grad, scale * (1.0 + LN2), rtol=1e-6)


def test_engine_objective_normalises_only_when_asked():
  terms = {"out": _one_replica_terms(jnp.float32(1.0))}
  for mode, factor in (("none", 1.0), ("loss", 0.5)):
    spg = types.SimpleNamespace(num_replicas=1, lambdas=(1.0,), form="masked",
                                normalize=mode, base_denominator="valid")
    loss, metrics = step_lib.spg_objective(terms, {"out": 1.0}, spg)
    np.testing.assert_allclose(metrics["norm_factor"], factor, rtol=1e-6)
    np.testing.assert_allclose(loss, factor * (1.0 + LN2), rtol=1e-6)


def test_bool_normalize_is_still_accepted_and_bad_modes_are_refused():
  terms = _one_replica_terms(jnp.float32(1.0))
  np.testing.assert_allclose(losses.spg_loss(terms, (1.0,), normalize=True)[1]["norm_factor"],
                             0.5, rtol=1e-6)
  with pytest.raises(ValueError, match=r"^normalize='yes': must be one of \['none', 'loss', "
                     r"'lr'\]$"):
    losses.spg_loss(terms, (1.0,), normalize="yes")


# -------------------------------------------------------------- 2. base denominator
def _two_by_two():
  """A 2x2 image, 2 classes, one ignored pixel. Step-0 per-pixel CE by hand: (0,0) label 0,
  logits [0, 0] -> ln 2; (0,1) label 1, logits [0, ln 3] -> ln 4/3; (1,0) label 1, logits
  [ln 3, 0] -> ln 4 (wrong: its episode ends at step 0); (1,1) ignored (255)."""
  logits = jnp.array([[[0.0, 0.0], [0.0, LN3]], [[LN3, 0.0], [5.0, -5.0]]])
  step_logits = jnp.stack([logits, logits])[None]  # [B=1, T+1=2, 2, 2, 2]
  labels = jnp.array([[[0, 1], [1, 255]]])
  return spg_jax.segmentation_terms(step_logits, labels, ignore_label=255)


@pytest.mark.parametrize("form", ["masked", "reinforce"])
def test_base_term_over_valid_or_all_pixels(form):
  terms = _two_by_two()
  base_sum = LN2 + math.log(4 / 3) + math.log(4)
  for denominator, expected in (("valid", base_sum / 3), ("all", base_sum / 4)):
    _, metrics = losses.spg_loss(terms, (1.0,), form, base_denominator=denominator)
    np.testing.assert_allclose(metrics["loss_base"], expected, rtol=1e-6)
  # Replica term (masked): the two pixels alive at step 1, over their count, either way.
  masked = [losses.masked_loss(terms, (1.0,), d)[2] for d in ("valid", "all")]
  np.testing.assert_allclose(masked[0], (LN2 + math.log(4 / 3)) / 2, rtol=1e-5)
  np.testing.assert_allclose(masked[1], masked[0], rtol=1e-6)


def test_all_tokens_denominator_counts_padding():
  step_logits = jnp.zeros((1, 2, 4, 3))  # uniform over 3 tokens: CE ln 3 everywhere
  terms = spg_jax.token_terms(step_logits, jnp.zeros((1, 4), jnp.int32),
                              jnp.array([[0.0, 0.0, 0.0, 1.0]]))
  np.testing.assert_allclose(losses.base_term(terms, terms.valid, "valid"), LN3, rtol=1e-6)
  np.testing.assert_allclose(losses.base_term(terms, terms.valid, "all"), 0.75 * LN3,
                             rtol=1e-6)
  with pytest.raises(ValueError, match=r"^base_denominator='pixels': must be one of"):
    losses.base_term(terms, terms.valid, "pixels")


# ------------------------------------------------- 3. BatchNorm in a shared head
class BNHead(nn.Module):
  """BatchNorm (torch's momentum 0.1) then Dense; train mode unless told (as FCNHead's SPG
  copies, which the wrapper calls without a mode)."""
  train: bool | None = None

  @nn.compact
  def __call__(self, x, *, train=None):
    train = nn.merge_param("train", self.train, train)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn")(x)
    return nn.Dense(3, name="dense")(x)


class BNHeadBase(nn.Module):
  """Features = the input itself, so the head's batch statistics are known by hand."""

  @nn.compact
  def __call__(self, x, *, train):
    return BNHead(name="head")(x, train=train), {"pre_logits": x}

  def spg_attachments(self, kind):
    del kind
    return {"out": spg_jax.Attachment(head=BNHead(train=True, parent=None))}


# Two features; column 0 is [0, 4, 0, 4] (mean 2, biased variance 4), column 1 is 1s.
BN_X = jnp.array([[0.0, 1.0], [4.0, 1.0], [0.0, 1.0], [4.0, 1.0]])


def _bn_model(mode, num_replicas=2):
  # rate 0 and the zero-initialised residual Linear: every h_t equals h_0.
  return spg_jax.SPGModel(base=BNHeadBase(), head=BNHead(train=True, parent=None),
                          replicas=spg_jax.hpo_replicas(num_replicas, rate=0.0),
                          head_batch_stats=mode)


@pytest.mark.parametrize("mode, updates", [("base", 1), ("every_step", 3)])
def test_head_running_statistics_are_updated_once_or_once_per_step(mode, updates):
  model = _bn_model(mode)
  variables = model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, BN_X,
                         train=True)
  start = {"params": variables["params"],
           "batch_stats": jax.tree.map(jnp.zeros_like, variables["batch_stats"])}
  _, new = model.apply(start, BN_X, train=True, mutable=["batch_stats"],
                       rngs={"dropout": jax.random.key(2)})
  stats = new["batch_stats"]["base"]["head"]["bn"]
  # k updates from 0 towards the batch's (mean 2, var 4) and (mean 1, var 0):
  # x_k = (1 - 0.9^k) * batch value. k=1: 0.2 / 0.4; k=3: 0.542 / 1.084.
  kept = 1.0 - 0.9 ** updates
  np.testing.assert_allclose(stats["mean"], [2.0 * kept, 1.0 * kept], rtol=1e-5)
  np.testing.assert_allclose(stats["var"], [4.0 * kept, 0.0], rtol=1e-5, atol=1e-6)


def test_per_step_updates_run_in_sequence_from_the_base_pass():
  """From running mean 1 (not 0): every step moves it 10% of the way to the batch's 2, so
  three updates in sequence give 2 - 0.9^3 = 1.271 (a sum of independent updates from 1
  would not)."""
  model = _bn_model("every_step")
  variables = model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, BN_X,
                         train=True)
  stats = jax.tree.map(jnp.ones_like, variables["batch_stats"])
  _, new = model.apply({"params": variables["params"], "batch_stats": stats}, BN_X,
                       train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(2)})
  np.testing.assert_allclose(new["batch_stats"]["base"]["head"]["bn"]["mean"][0],
                             2.0 - 0.9 ** 3, rtol=1e-5)


def test_the_trainer_reads_head_batch_stats_from_the_config():
  """One compiled train step of the engine on the 4-row batch, T=2, rate 0: the head's
  running mean moves from 0 to 0.2 (base only) or 0.542 (three updates) of the batch's 2."""
  from spg_jax import data, sharding  # pylint: disable=g-import-not-at-top
  from spg_jax.train import engine as engine_lib  # pylint: disable=g-import-not-at-top
  split = {"input": np.asarray(BN_X), "label": np.array([0, 1, 2, 0], np.int32)}
  dataset = data.ArrayDataset("bn4", {s: split for s in ("train", "validation", "test")}, 3)
  mesh = sharding.make_mesh(1)
  means = {}
  for mode in ("base", "every_step"):
    config = config_lib.base_config()
    config.num_devices, config.batch_size = 1, 4
    config.spg.num_replicas, config.spg.rate, config.spg.lambdas = 2, 0.0, (0.4, 0.2)
    config.spg.head_batch_stats = mode
    engine = engine_lib.build_engine(engine_lib.spec_from_config(
        config, mesh, data.dataset_info(dataset), BNHeadBase()))
    variables = engine.init(jax.random.key(0))
    variables = {**variables, "batch_stats": jax.tree.map(jnp.zeros_like,
                                                          variables["batch_stats"])}
    state = engine.create_state(variables, engine_lib.optimizer_hparams(config),
                                np.zeros((2,), np.float32))
    state, _ = engine.train_step(state, sharding.shard_batch(split, mesh), jax.random.key(1))
    means[mode] = float(state.batch_stats["base"]["head"]["bn"]["mean"][0])
  np.testing.assert_allclose([means["base"], means["every_step"]],
                             [0.2, 2.0 * (1 - 0.9 ** 3)], rtol=1e-5)


def test_head_batch_stats_is_checked():
  with pytest.raises(ValueError, match=r"^head_batch_stats='all': must be one of "
                     r"\['base', 'every_step'\]$"):
    spg_jax.build_spg_model(BNHeadBase(), {"out": spg_jax.Attachment(head=BNHead())}, "hpo",
                            2, head_batch_stats="all")


# ------------------------------------------------------------------- 4. CTC
def _ctc(labels, zero_infinity):
  """2 frames, 3 classes (blank 0), uniform logits, T+1 = 1 step."""
  logits = jnp.zeros((1, 1, 2, 3))
  labels = jnp.asarray([labels], jnp.int32)
  return losses.ctc_terms(logits, jnp.zeros((1, 2)), labels, jnp.zeros(labels.shape),
                          zero_infinity=zero_infinity)


def test_ctc_feasible_alignment_has_the_hand_computed_loss():
  # [1, 2] on 2 frames: the only path is "1 2", probability (1/3)^2.
  for zero_infinity in (False, True):
    np.testing.assert_allclose(_ctc([1, 2], zero_infinity).losses, [[2 * LN3]], rtol=1e-5)


def test_ctc_impossible_alignment_is_inf_or_zero_with_zero_infinity():
  # [1, 1] needs a blank between the 1s: 3 frames, only 2 exist. optax alone says ~1e5.
  assert float(optax.ctc_loss(jnp.zeros((1, 2, 3)), jnp.zeros((1, 2)),
                              jnp.array([[1, 1]]), jnp.zeros((1, 2)))[0]) > 1e4
  assert np.isposinf(np.asarray(_ctc([1, 1], False).losses)).all()
  np.testing.assert_array_equal(_ctc([1, 1], True).losses, [[0.0]])

  def total(logits, zero_infinity):
    return jnp.sum(losses.ctc_terms(logits, jnp.zeros((1, 2)), jnp.array([[1, 1]]),
                                    jnp.zeros((1, 2)), zero_infinity=zero_infinity).losses)
  grad = jax.grad(total)(jnp.zeros((1, 1, 2, 3)), True)
  np.testing.assert_array_equal(grad, np.zeros((1, 1, 2, 3)))  # finite, and no signal


def test_ctc_task_field_zero_infinity():
  task = tasks.build({"name": "ctc", "zero_infinity": True}, 3)
  batch = {"label": jnp.array([[1, 1]]), "label_paddings": jnp.zeros((1, 2))}
  np.testing.assert_array_equal(task.terms(jnp.zeros((1, 2, 2, 3)), batch, {}).losses,
                                [[0.0, 0.0]])
  with pytest.raises(ValueError, match=r"^config.task.zero_infinity='yes': must be True or "
                     r"False$"):
    tasks.build({"name": "ctc", "zero_infinity": "yes"}, 3)


# ------------------------------------------------------------------- 5. QA window
def test_qa_answers_outside_the_window_are_ignored_not_errors():
  length = 4
  start = jnp.zeros((3, 2, length)).at[:, :, 1].set(3.0)  # argmax 1 at every step
  end = jnp.zeros((3, 2, length)).at[:, :, 2].set(3.0)    # argmax 2
  # Example 0 right, example 1 wrong, example 2's answer is outside the window (== L).
  terms = spg_jax.qa_terms(start, end, jnp.array([1, 0, length]), jnp.array([2, 2, length]))
  np.testing.assert_array_equal(terms.valid, [1.0, 1.0, 0.0])
  kept = spg_jax.qa_terms(start[:2], end[:2], jnp.array([1, 0]), jnp.array([2, 2]))
  for a, b in zip(losses.spg_loss(terms, (0.5,))[1].values(),
                  losses.spg_loss(kept, (0.5,))[1].values()):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  # Beyond L is clamped to L (ignored) and below 0 to 0 (a real position), as Hugging Face.
  positions, inside = losses.qa_window_positions(jnp.array([-3, 0, 3, 4, 9]), length)
  np.testing.assert_array_equal(positions, [0, 0, 3, 0, 0])
  np.testing.assert_array_equal(inside, [True, True, True, False, False])


# ------------------------------------------------------ 6. the ReLU replica = dropout
class LiteralReferenceReplica(nn.Module):
  """The authors' replica written out: dropout, then h + ReLU(Linear_zero(h))."""
  rate: float = 0.2

  @nn.compact
  def __call__(self, h, *, train, rate=None):
    h = replicas_lib.traced_dropout(self, h, self.rate if rate is None else rate, train)
    branch = nn.Dense(h.shape[-1], kernel_init=nn.initializers.zeros, name="linear_0")(h)
    return h + nn.relu(branch)


def test_relu_replica_is_parameter_free_and_equals_the_literal_one():
  literal = make_spg(tuple(LiteralReferenceReplica(0.3) for _ in range(3)))
  ours = make_spg(spg_jax.hpo_replicas(3, rate=0.3, use_relu=True))
  v_literal, v_ours = init(literal, X), init(ours, X)
  assert sorted(v_ours["params"]) == ["base"]  # no replica parameters at all
  assert sorted(v_literal["params"]) == ["base", "replicas_0", "replicas_1", "replicas_2"]
  labels = jnp.arange(X.shape[0]) % NUM_CLASSES

  def loss_fn(params, model, variables):
    logits, _, _ = apply_train(model, {**variables, "params": params}, X)
    return spg_jax.classification_spg_loss(logits, labels, (0.4, 0.2, 0.1))[0], logits

  (l_lit, logits_lit), g_lit = jax.value_and_grad(loss_fn, has_aux=True)(
      v_literal["params"], literal, v_literal)
  (l_ours, logits_ours), g_ours = jax.value_and_grad(loss_fn, has_aux=True)(
      {"base": v_literal["params"]["base"]}, ours, v_ours)
  np.testing.assert_array_equal(logits_ours, logits_lit)  # same dropout masks, same outputs
  np.testing.assert_allclose(l_ours, l_lit, rtol=1e-7)
  # The literal replica's Linear never gets a gradient: nothing is lost by not building it.
  assert all(float(jnp.abs(g).max()) == 0.0
             for k in ("replicas_0", "replicas_1", "replicas_2")
             for g in jax.tree.leaves(g_lit[k]))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               g_ours["base"], g_lit["base"])


def test_functional_relu_replicas_have_no_parameters_and_are_read_from_them():
  params = spg_jax.init_hpo_replicas(jax.random.key(0), width=6, num_replicas=2,
                                     use_relu=True)
  assert params == {"replicas_0": {}, "replicas_1": {}}
  h0 = jnp.ones((4, 6))
  steps = spg_jax.hpo_step_logits(params, h0, lambda h: h, jax.random.key(1), rate=0.0)
  np.testing.assert_array_equal(steps, jnp.stack([h0, h0, h0], axis=1))
  with pytest.raises(ValueError, match=r"^use_relu=False: the replica params were made with "
                     r"use_relu=True"):
    spg_jax.hpo_step_logits(params, h0, lambda h: h, jax.random.key(1), use_relu=False)


def test_defaults_are_the_paper_s_learning_replica():
  assert spg_jax.hpo_replicas(1)[0].use_relu is False
  params = spg_jax.init_hpo_replicas(jax.random.key(0), width=6, num_replicas=1)
  assert params["replicas_0"]["linear_0"]["kernel"].shape == (6, 6)
  spg = config_lib.base_config().spg
  assert (spg.use_relu, spg.normalize, spg.base_denominator, spg.head_batch_stats) == (
      False, "none", "valid", "base")


# ------------------------------------------------- 7. soft targets with smoothing
def test_label_smoothing_keeps_a_soft_target_s_mixture():
  """p = [1/2, 1/4, 1/4]; target [0.5, 0.5, 0] smoothed by 0.3 over 3 classes is
  [0.45, 0.45, 0.1]: CE = 0.45 ln 2 + 0.55 * 2 ln 2 = 1.55 ln 2. (Argmax first, as the
  authors' code, would give [0.8, 0.1, 0.1] and 1.2 ln 2.)"""
  logits = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
  ce = losses.step_cross_entropy(logits, jnp.array([0.5, 0.5, 0.0]), label_smoothing=0.3)
  np.testing.assert_allclose(ce, [1.55 * LN2], rtol=1e-6)
