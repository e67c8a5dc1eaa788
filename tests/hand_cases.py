"""Hand-computed trajectories shared by the core tests: four samples, T = 3, two classes,
every label 0. Step logits are [a, 0], so a step is correct iff a > 0 and its
cross-entropy is CE(a) = log(1 + exp(-a)) = softplus(-a)."""
import math

import jax.numpy as jnp
import numpy as np

LAMBDAS = (0.4, 0.2, 0.1)

MARGINS = np.array([
    [2.0, 1.0, 1.0, 3.0],    # sample 0: correct at every step
    [-1.0, 2.0, 2.0, 2.0],   # sample 1: wrong at the base step
    [1.0, -2.0, 1.0, 1.0],   # sample 2: wrong at replica 1
    [3.0, 2.0, -1.0, -1.0],  # sample 3: wrong at replica 2
])


def softplus(a):
  return math.log1p(math.exp(a))


def hand_logits():
  margins = jnp.asarray(MARGINS, jnp.float32)
  return jnp.stack([margins, jnp.zeros_like(margins)], axis=-1)  # [4, 4, 2]


def ce(i, t):
  return softplus(-MARGINS[i, t])
