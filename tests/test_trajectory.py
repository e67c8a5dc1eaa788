"""Trajectories: masks, observed states, rewards, returns, lengths (hand-computed), the
per-sample (step_axis=0) / batched (the default) equivalence under vmap, cumulative
dropout."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

import spg_jax

from hand_cases import LAMBDAS, MARGINS


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


def test_vmapped_per_sample_equals_batched():
  rng = np.random.default_rng(0)
  correct = rng.random((6, 4, 3)) > 0.3  # [B, T+1, E]
  per_sample = lambda fn: jax.vmap(functools.partial(fn, step_axis=0))
  for fn in (spg_jax.alive_masks, spg_jax.observed_states, spg_jax.step_rewards,
             spg_jax.episode_lengths):
    np.testing.assert_array_equal(per_sample(fn)(correct), fn(correct))
  np.testing.assert_allclose(
      jax.vmap(lambda c: spg_jax.episode_returns(c, LAMBDAS, step_axis=0))(correct),
      spg_jax.episode_returns(correct, LAMBDAS))
  logits = jnp.asarray(rng.normal(size=(6, 4, 5, 7)), jnp.float32)  # [B, T+1, H*W, C]
  labels = jnp.asarray(rng.integers(0, 7, size=(6, 5)))
  np.testing.assert_array_equal(per_sample(spg_jax.classification_correct)(logits, labels),
                                spg_jax.classification_correct(logits, labels))
  np.testing.assert_allclose(jax.vmap(spg_jax.step_cross_entropy)(logits, labels),
                             spg_jax.step_cross_entropy(logits, labels, step_axis=1), rtol=1e-6)
  seg_labels = labels.at[0, 0].set(255)
  per = per_sample(spg_jax.segmentation_correct)(logits, seg_labels)
  batched = spg_jax.segmentation_correct(logits, seg_labels)
  for a, b in zip(per, batched):
    np.testing.assert_array_equal(a, b)
  starts, ends = logits[..., 0, :], logits[..., 1, :]
  pos = jnp.asarray(rng.integers(0, 7, size=(6,)))
  np.testing.assert_array_equal(per_sample(spg_jax.qa_correct)(starts, ends, pos, pos),
                                spg_jax.qa_correct(starts, ends, pos, pos))
  pads = jnp.zeros((6, 5))
  np.testing.assert_array_equal(
      per_sample(spg_jax.ctc_correct)(logits, pads, labels[:, :3], pads[:, :3]),
      spg_jax.ctc_correct(logits, pads, labels[:, :3], pads[:, :3]))


def test_cumulative_dropout_rates():
  np.testing.assert_allclose(spg_jax.cumulative_dropout_rates((0.2, 0.2, 0.2)),
                             [0.2, 0.36, 0.488])
