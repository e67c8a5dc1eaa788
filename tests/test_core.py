"""SPG core: trajectories, correctness, both loss forms, normalisation (hand-computed)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spg_jax

LAMBDAS = (0.4, 0.2, 0.1)


def softplus(a):
  return math.log1p(math.exp(a))


# Four samples, T = 3, two classes, every label 0. Step logits are [a, 0], so a step is
# correct iff a > 0 and its cross-entropy is CE(a) = log(1 + exp(-a)) = softplus(-a).
MARGINS = np.array([
    [2.0, 1.0, 1.0, 3.0],    # sample 0: correct at every step
    [-1.0, 2.0, 2.0, 2.0],   # sample 1: wrong at the base step
    [1.0, -2.0, 1.0, 1.0],   # sample 2: wrong at replica 1
    [3.0, 2.0, -1.0, -1.0],  # sample 3: wrong at replica 2
])


def hand_logits():
  margins = jnp.asarray(MARGINS, jnp.float32)
  return jnp.stack([margins, jnp.zeros_like(margins)], axis=-1)  # [4, 4, 2]


def ce(i, t):
  return softplus(-MARGINS[i, t])


def test_hand_computed_masks_states_returns():
  correct = MARGINS > 0
  # m_0 = 1, m_{t+1} = m_t * correct_t.
  expected_masks = np.array([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]])
  # o_t = 1 alive, 0 right after the first error, -1 padding (absorbing).
  expected_states = np.array([[1, 1, 1, 1], [1, 0, -1, -1], [1, 1, 0, -1], [1, 1, 1, 0]])
  # r_t = prod_{k<=t} correct_k.
  expected_rewards = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]])
  # G = 1 + sum_t lambda_t m_t: 1 + .4 + .2 + .1, 1, 1 + .4, 1 + .4 + .2.
  expected_returns = np.array([1.7, 1.0, 1.4, 1.6])
  np.testing.assert_array_equal(spg_jax.alive_masks(correct, step_axis=1), expected_masks)
  np.testing.assert_array_equal(spg_jax.observed_states(correct, step_axis=1), expected_states)
  np.testing.assert_array_equal(spg_jax.step_rewards(correct, step_axis=1), expected_rewards)
  np.testing.assert_allclose(spg_jax.episode_returns(correct, LAMBDAS, step_axis=1),
                             expected_returns, atol=1e-6)
  np.testing.assert_array_equal(spg_jax.episode_lengths(correct, step_axis=1), [4, 1, 2, 3])


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


@pytest.mark.parametrize("form", spg_jax.LOSS_FORMS)
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


def test_vmapped_per_sample_equals_batched():
  rng = np.random.default_rng(0)
  correct = rng.random((6, 4, 3)) > 0.3  # [B, T+1, E]
  for fn in (spg_jax.alive_masks, spg_jax.observed_states, spg_jax.step_rewards,
             spg_jax.episode_lengths):
    np.testing.assert_array_equal(jax.vmap(fn)(correct), fn(correct, step_axis=1))
  np.testing.assert_allclose(
      jax.vmap(lambda c: spg_jax.episode_returns(c, LAMBDAS))(correct),
      spg_jax.episode_returns(correct, LAMBDAS, step_axis=1))
  logits = jnp.asarray(rng.normal(size=(6, 4, 5, 7)), jnp.float32)  # [B, T+1, H*W, C]
  labels = jnp.asarray(rng.integers(0, 7, size=(6, 5)))
  np.testing.assert_array_equal(jax.vmap(spg_jax.classification_correct)(logits, labels),
                                spg_jax.classification_correct(logits, labels, step_axis=1))
  np.testing.assert_allclose(jax.vmap(spg_jax.step_cross_entropy)(logits, labels),
                             spg_jax.step_cross_entropy(logits, labels, step_axis=1), rtol=1e-6)
  seg_labels = labels.at[0, 0].set(255)
  per_sample = jax.vmap(spg_jax.segmentation_correct)(logits, seg_labels)
  batched = spg_jax.segmentation_correct(logits, seg_labels, step_axis=1)
  for a, b in zip(per_sample, batched):
    np.testing.assert_array_equal(a, b)
  starts, ends = logits[..., 0, :], logits[..., 1, :]
  pos = jnp.asarray(rng.integers(0, 7, size=(6,)))
  np.testing.assert_array_equal(jax.vmap(spg_jax.qa_correct)(starts, ends, pos, pos),
                                spg_jax.qa_correct(starts, ends, pos, pos, step_axis=1))
  pads = jnp.zeros((6, 5))
  np.testing.assert_array_equal(
      jax.vmap(spg_jax.ctc_correct)(logits, pads, labels[:, :3], pads[:, :3]),
      spg_jax.ctc_correct(logits, pads, labels[:, :3], pads[:, :3], step_axis=1))


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


def test_qa_needs_start_and_end():
  start = jnp.array([[0.0, 3.0, 0.0]])  # argmax 1
  end = jnp.array([[0.0, 0.0, 3.0]])    # argmax 2
  assert bool(spg_jax.qa_correct(start, end, jnp.array(1), jnp.array(2))[0])
  assert not bool(spg_jax.qa_correct(start, end, jnp.array(1), jnp.array(1))[0])


def test_ctc_greedy_decoding_and_threshold():
  blank = 0
  # Frames: 1 1 _ 2 2 _ 2 3 (padding after 7 frames) -> decoded "1 2 2 3".
  frames = [1, 1, 0, 2, 2, 0, 2, 3]
  logits = jax.nn.one_hot(jnp.array(frames), 4) * 5.0
  pads = jnp.array([0, 0, 0, 0, 0, 0, 0, 1.0])
  tokens, length = spg_jax.greedy_ctc_decode(logits, pads, blank)
  assert int(length) == 3  # the last frame is padding
  np.testing.assert_array_equal(tokens[:4], [1, 2, 2, -1])
  step_logits = logits[None]  # T+1 = 1
  labels, label_pads = jnp.array([1, 2, 3, 3]), jnp.zeros(4)
  # 2 of 4 target tokens match position by position -> 50% -> correct at threshold 0.5.
  assert bool(spg_jax.ctc_correct(step_logits, pads, labels, label_pads, 0.5)[0])
  assert not bool(spg_jax.ctc_correct(step_logits, pads, labels, label_pads, 0.75)[0])
  terms = spg_jax.ctc_terms(step_logits[None], pads[None], labels[None], label_pads[None])
  assert terms.losses.shape == (1, 1) and np.isfinite(terms.losses).all()


def test_token_terms_with_paddings():
  logits = jnp.array([[[[3.0, 0.0], [0.0, 3.0], [0.0, 3.0]]]])  # [B=1, T+1=1, L=3, C=2]
  terms = spg_jax.token_terms(logits, jnp.array([[0, 1, 0]]), jnp.array([[0, 0, 1.0]]))
  np.testing.assert_array_equal(terms.correct[0, 0], [True, True, False])
  metrics = spg_jax.trajectory_stats(terms.correct, terms.valid)
  # The padded (wrong) token is not an episode: base accuracy over real tokens is 1.
  np.testing.assert_allclose(metrics["survival"], [1.0])


def test_cumulative_dropout_rates():
  np.testing.assert_allclose(spg_jax.cumulative_dropout_rates((0.2, 0.2, 0.2)),
                             [0.2, 0.36, 0.488])
