"""SPG losses: both forms and normalisation (hand-computed), label smoothing as torch,
gradients stop after the first error, per-pixel and per-token terms."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spg_jax

from hand_cases import LAMBDAS, ce, hand_logits


def test_hand_computed_losses():
  logits, labels = hand_logits(), jnp.zeros((4,), jnp.int32)
  # Masked form: base = mean_i CE_0^i; replica t averages CE_t over samples alive at t:
  # alive at t=1: {0, 2, 3}; t=2: {0, 3}; t=3: {0}.
  base = np.mean([ce(i, 0) for i in range(4)])
  r1 = (ce(0, 1) + ce(2, 1) + ce(3, 1)) / (3 + 1e-6)
  r2 = (ce(0, 2) + ce(3, 2)) / (2 + 1e-6)
  r3 = ce(0, 3) / (1 + 1e-6)
  masked = base + 0.4 * r1 + 0.2 * r2 + 0.1 * r3
  # REINFORCE form: mean_i (sum_t m_t^i CE_t^i) * G^i with G = (1.7, 1, 1.4, 1.6).
  reinforce = np.mean([
      (ce(0, 0) + ce(0, 1) + ce(0, 2) + ce(0, 3)) * 1.7,
      ce(1, 0) * 1.0,
      (ce(2, 0) + ce(2, 1)) * 1.4,
      (ce(3, 0) + ce(3, 1) + ce(3, 2)) * 1.6,
  ])
  loss, metrics = spg_jax.classification_spg_loss(logits, labels, LAMBDAS, form="masked")
  np.testing.assert_allclose(loss, masked, rtol=1e-6)
  np.testing.assert_allclose(metrics["loss_base"], base, rtol=1e-6)
  np.testing.assert_allclose(metrics["loss_replicas"], [r1, r2, r3], rtol=1e-6)
  loss, _ = spg_jax.classification_spg_loss(logits, labels, LAMBDAS, form="reinforce")
  np.testing.assert_allclose(loss, reinforce, rtol=1e-6)
  # Normalisation: L * exp(L_base - L) (the factor is a constant for the gradient).
  for form, total in (("masked", masked), ("reinforce", reinforce)):
    loss, metrics = spg_jax.classification_spg_loss(logits, labels, LAMBDAS, form=form,
                                                    normalize=True)
    np.testing.assert_allclose(loss, total * math.exp(base - total), rtol=1e-6)
    np.testing.assert_allclose(metrics["norm_factor"], math.exp(base - total), rtol=1e-6)
  # Statistics: survival after step t = mean r_t; episode length = mean sum_t m_t.
  np.testing.assert_allclose(metrics["survival"], [0.75, 0.5, 0.25, 0.25])
  np.testing.assert_allclose(metrics["alive"], [1.0, 0.75, 0.5, 0.25])
  np.testing.assert_allclose(metrics["mean_episode_length"], 2.5)
  np.testing.assert_allclose(metrics["mean_return"], np.mean([1.7, 1.0, 1.4, 1.6]), rtol=1e-6)


def test_normalized_gradient_scale_follows_base_loss():
  """d(normalised)/dx = factor * d(total)/dx: the factor is a stop-gradient constant."""
  logits, labels = hand_logits(), jnp.zeros((4,), jnp.int32)
  grad_total = jax.grad(lambda l: spg_jax.classification_spg_loss(l, labels, LAMBDAS)[0])(logits)
  loss_fn = lambda l: spg_jax.classification_spg_loss(l, labels, LAMBDAS, normalize=True)
  grad_norm, metrics = jax.grad(loss_fn, has_aux=True)(logits)
  np.testing.assert_allclose(grad_norm, metrics["norm_factor"] * grad_total, rtol=1e-5,
                             atol=1e-7)


def test_label_smoothing_matches_torch_convention():
  logits = jnp.array([[[2.0, 0.0, -1.0]]])  # [B=1, T+1=1, C=3]
  ls = 0.1
  log_probs = jax.nn.log_softmax(logits[0, 0])
  target = (1 - ls) * jnp.array([1.0, 0, 0]) + ls / 3
  expected = -jnp.sum(target * log_probs)
  got = spg_jax.step_cross_entropy(logits, jnp.array([0]), ls, step_axis=1)
  np.testing.assert_allclose(got[0, 0], expected, rtol=1e-6)
  # Soft (already smoothed) targets give the same argmax-based correctness.
  soft = jnp.array([[0.8, 0.1, 0.1]])
  assert bool(spg_jax.classification_correct(logits, soft, step_axis=1)[0, 0])


@pytest.mark.parametrize("form", ["masked", "reinforce"])  # the forms with trajectory masks
def test_gradients_stop_after_first_error(form):
  logits, labels = hand_logits(), jnp.zeros((4,), jnp.int32)
  grads = jax.grad(lambda l: spg_jax.classification_spg_loss(l, labels, LAMBDAS, form=form)[0])(
      logits)
  grad_norm = np.abs(np.asarray(grads)).sum(-1)  # [4, T+1]
  # Sample 1 is wrong at step 0: its step 0 still counts, steps >= 1 get nothing.
  assert grad_norm[1, 0] > 0 and np.all(grad_norm[1, 1:] == 0)
  # Sample 2 is wrong at step 1: steps 0 and 1 count, steps >= 2 get nothing.
  assert np.all(grad_norm[2, :2] > 0) and np.all(grad_norm[2, 2:] == 0)
  assert np.all(grad_norm[0] > 0)


def test_segmentation_ignores_label_and_counts_pixels_as_episodes():
  # One image, 1x2 pixels, T = 1. Pixel 0 has the ignore label, pixel 1 is class 1.
  logits = jnp.array([[[[[0.0, 5.0], [0.0, 5.0]]], [[[0.0, 5.0], [5.0, 0.0]]]]])  # [1,2,1,2,2]
  labels = jnp.array([[[255, 1]]])
  terms = spg_jax.segmentation_terms(logits, labels)
  np.testing.assert_array_equal(terms.valid, [[[0.0, 1.0]]])
  np.testing.assert_array_equal(terms.correct[0, :, 0, 1], [True, False])
  _, metrics = spg_jax.spg_loss(terms, (0.5,))
  # Only the valid pixel is an episode: correct at the base step, wrong at the replica.
  np.testing.assert_allclose(metrics["survival"], [1.0, 0.0])


def test_token_terms_with_paddings():
  logits = jnp.array([[[[3.0, 0.0], [0.0, 3.0], [0.0, 3.0]]]])  # [B=1, T+1=1, L=3, C=2]
  terms = spg_jax.token_terms(logits, jnp.array([[0, 1, 0]]), jnp.array([[0, 0, 1.0]]))
  np.testing.assert_array_equal(terms.correct[0, 0], [True, True, False])
  metrics = spg_jax.trajectory_stats(terms.correct, terms.valid)
  # The padded (wrong) token is not an episode: base accuracy over real tokens is 1.
  np.testing.assert_allclose(metrics["survival"], [1.0])
