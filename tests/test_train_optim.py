"""Optimizer, schedules and the online dropout controller on hand-computed numbers."""
import jax.numpy as jnp
import numpy as np
import pytest

from spg_jax.train import controller, optim


def test_schedules_hand_computed():
  step = optim.schedule_factor("step", 100, decay_every_steps=10, decay_factor=0.5)
  np.testing.assert_allclose([step(i) for i in (0, 9, 10, 25)], [1.0, 1.0, 0.5, 0.25])
  warm = optim.schedule_factor("constant", 100, warmup_steps=4)
  np.testing.assert_allclose([warm(i) for i in (0, 1, 3, 50)], [0.25, 0.5, 1.0, 1.0])
  cosine = optim.schedule_factor("cosine", 100)
  np.testing.assert_allclose([cosine(0), cosine(50), cosine(100)], [1.0, 0.5, 0.0],
                             atol=1e-6)


def test_torchvision_segmentation_schedule_hand_computed():
  """torchvision's segmentation recipe: ConstantLR(factor) for the warm-up epochs, then
  PolynomialLR(power 0.9) over the remaining steps; factor 0 (as the reference command
  sets it) means the warm-up steps do not move the weights."""
  poly = optim.schedule_factor("poly", 10, warmup_steps=0)
  np.testing.assert_allclose([poly(0), poly(5), poly(9), poly(10)],
                             [1.0, 0.5 ** 0.9, 0.1 ** 0.9, 0.0], rtol=1e-6)
  seg = optim.schedule_factor("poly", 12, warmup_steps=4, warmup_method="constant",
                              warmup_factor=0.0)
  np.testing.assert_allclose([seg(i) for i in (0, 3, 4, 8, 11)],
                             [0.0, 0.0, 1.0, 0.5 ** 0.9, 0.125 ** 0.9], rtol=1e-6)
  third = optim.schedule_factor("constant", 10, warmup_steps=2, warmup_method="constant")
  np.testing.assert_allclose([third(0), third(1), third(2)], [1 / 3, 1 / 3, 1.0], rtol=1e-6)
  linear = optim.schedule_factor("constant", 10, warmup_steps=3, warmup_factor=0.01)
  np.testing.assert_allclose([linear(0), linear(1), linear(2), linear(3)],
                             [0.01, 0.505, 1.0, 1.0], rtol=1e-6)
  # "linear": Hugging Face's decay, 1 -> 0 from the end of the warm-up to num_steps
  # ((N - t) / (N - W) at step t); the linear warm-up is torch's LinearLR (at the peak at
  # step W - 1, one step before Hugging Face's t / W: immaterial at a 10% warm-up).
  hf = optim.schedule_factor("linear", 12, warmup_steps=2, warmup_factor=0.0)
  np.testing.assert_allclose([hf(i) for i in (0, 1, 2, 7, 12)], [0.0, 1.0, 1.0, 0.5, 0.0],
                             atol=1e-6)
  with pytest.raises(ValueError, match=r"warmup_method='cosine': must be one of"):
    optim.schedule_factor("poly", 10, warmup_steps=2, warmup_method="cosine")


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_injected_hyperparameters_are_read_and_written(name):
  tx = optim.make_optimizer(name, optim.schedule_factor("step", 10, decay_every_steps=1,
                                                        decay_factor=0.5),
                            learning_rate=0.1)
  params = {"w": jnp.ones(3)}
  opt_state = optim.set_hparams(tx.init(params), learning_rate=0.4, lr_scale=0.5)
  _, opt_state = tx.update({"w": jnp.ones(3)}, opt_state, params)
  _, opt_state = tx.update({"w": jnp.ones(3)}, opt_state, params)
  # second update: schedule factor 0.5 (count 1), peak 0.4, scale 0.5
  np.testing.assert_allclose(optim.learning_rate(opt_state), 0.1)
  with pytest.raises(ValueError, match="no injected hyperparameter"):
    optim.set_hparams(opt_state, beta=1.0)


def test_controller_update_hand_computed():
  state = controller.init_controller([0.2, 0.2])
  state = controller.accumulate(state, jnp.array([1.0, 0.9, 0.45]))
  state = controller.accumulate(state, jnp.array([1.0, 0.9, 0.45]))
  # conditional survival (0.9, 0.5); target 0.7: +0.2 -> more dropout, -0.2 -> less
  new = controller.controller_update(state, controller.window_mean(state),
                                     target_survival=0.7, step_size=0.5, min_rate=0.0,
                                     max_rate=0.25)
  np.testing.assert_allclose(new.rates, [0.25, 0.1], atol=1e-6)  # 0.3 clipped to 0.25
  assert int(new.count) == 0 and float(jnp.sum(new.survival_sum)) == 0.0


# ------------------------------------------------------------------------------ steps
