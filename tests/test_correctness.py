"""Per-task correctness: QA needs start and end, greedy CTC decoding and its threshold."""
import jax
import jax.numpy as jnp
import numpy as np

import spg_jax


def test_qa_needs_start_and_end():
  start = jnp.array([[[0.0, 3.0, 0.0]]])  # [B=1, T+1=1, L=3], argmax 1
  end = jnp.array([[[0.0, 0.0, 3.0]]])    # argmax 2
  assert bool(spg_jax.qa_correct(start, end, jnp.array([1]), jnp.array([2]))[0, 0])
  assert not bool(spg_jax.qa_correct(start, end, jnp.array([1]), jnp.array([1]))[0, 0])
  # Per sample: step_axis=0.
  assert bool(spg_jax.qa_correct(start[0], end[0], jnp.array(1), jnp.array(2), 0)[0])


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
  ctc = lambda threshold: spg_jax.ctc_correct(step_logits, pads, labels, label_pads,
                                              threshold, step_axis=0)  # per sample
  assert bool(ctc(0.5)[0])
  assert not bool(ctc(0.75)[0])
  batched = spg_jax.ctc_correct(step_logits[None], pads[None], labels[None], label_pads[None])
  np.testing.assert_array_equal(batched, [[True]])
  terms = spg_jax.ctc_terms(step_logits[None], pads[None], labels[None], label_pads[None])
  assert terms.losses.shape == (1, 1) and np.isfinite(terms.losses).all()
