"""Argument checks of the core (`spg_jax.validation`): label ranges on the host and in jit by
one rule, including numpy labels closed over by a jitted function."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spg_jax


@pytest.mark.parametrize("labels, ignore, expected", [
    ([0, 2, 1], None, True), ([0, 3], None, False), ([-1, 0], None, False),
    ([0, 255, 2], 255, True), ([0, 254], 255, False), ([0.2, 7.5], None, True)])
def test_labels_in_range_same_on_host_and_in_jit(labels, ignore, expected):
  labels = np.asarray(labels)
  assert bool(spg_jax.labels_in_range(labels, 3, ignore, xp=np)) is expected
  assert bool(jax.jit(lambda l: spg_jax.labels_in_range(l, 3, ignore))(labels)) is expected


def test_check_labels_is_a_host_check_even_while_tracing():
  labels = np.array([1, 2, 0])  # numpy constants closed over by a jitted loss
  loss = jax.jit(lambda logits: spg_jax.classification_spg_loss(
      logits, labels, (0.4, 0.2, 0.1))[0])(jnp.zeros((3, 4, 10)))
  assert np.isclose(float(loss), np.log(10.0) * 1.7, rtol=1e-5)  # 1 + 0.4 + 0.2 + 0.1 steps
  with pytest.raises(ValueError, match=r"^labels: values must be in \[0, 3\) or the ignore "
                     r"label 255 \(got min 0, max 7\)$"):
    spg_jax.check_labels(np.array([0, 255, 7]), 3, ignore_label=255)
  spg_jax.check_labels(jnp.zeros((2,), jnp.int32), 3)  # concrete jax arrays are checked too
