"""Gradient accumulation (`optimizer.accumulation_steps`, `optax.MultiSteps`): k micro-batches
of size b give the parameters of one step on their concatenation (size k*b, mean-reduced
loss), for SGD and AdamW, without and with SPG (dropout rate 0; SGD with the "lr"
normalisation too); the schedule counts optimizer updates; bad values are refused in one
line; a run stopped mid-cycle resumes bitwise.

SPG's masked loss divides each replica term by the batch's number of surviving episodes (a
ratio of sums, not a mean of per-sample terms), so accumulation equals the big batch only
where every micro-batch of a cycle has the same survivors per replica; it is tested with a
cycle's micro-batches all alike (and exactly with the unmasked form, a per-sample mean).
"""
import shutil

import chex
import jax
import numpy as np
import optax
import pytest

from spg_jax import config as config_lib
from spg_jax import sharding
from spg_jax.train import engine as engine_lib
from spg_jax.train import loop, optim
from tests import fake_models

MICRO, UPDATES = 4, 3  # micro-batch size b, optimizer updates compared
DATASET = fake_models.dataset("classification")  # 5-d vectors, 3 classes
MODEL = fake_models.Classifier(num_classes=3)  # Dense + ReLU + head: no BatchNorm, no dropout


def _config(optimizer: str, k: int, spg: bool, normalize: str = "none",
            form: str = "masked"):
  """Linear decay after a warm-up of 2 updates, over 4 updates (config step counts are
  micro-batches: x k)."""
  c = config_lib.base_config()
  c.num_devices = 1
  c.batch_size = MICRO
  c.optimizer.name = optimizer
  c.optimizer.learning_rate = 0.5 if optimizer == "sgd" else 0.05
  c.optimizer.momentum = 0.0
  c.optimizer.weight_decay = 0.0 if optimizer == "sgd" else 0.05
  c.optimizer.accumulation_steps = k
  c.schedule.name = "linear"
  c.num_steps = 4 * k
  c.schedule.warmup_steps = 2 * k
  c.eval_every_steps = c.log_every_steps = k
  c.spg.enabled = spg
  c.spg.rate = 0.0
  c.spg.normalize = normalize
  c.spg.form = form
  config_lib.validate_config(c, custom_model=True, custom_dataset=DATASET)
  return c


def _engine(config):
  spec = engine_lib.spec_from_config(config, sharding.make_mesh(1),
                                     loop.dataset_info(config, DATASET), MODEL)
  return engine_lib.get_engine(spec)


def _batches(k: int, model, variables, alike: bool):
  """`UPDATES * k` micro-batches, every other row labelled with the initial model's
  prediction (so SPG's episodes survive: the replica terms and the "lr" factor are not
  trivial). `alike`: the k micro-batches of each cycle are copies of one."""
  rng = np.random.default_rng(0)
  rows = UPDATES * (1 if alike else k) * MICRO
  inputs = rng.normal(size=(rows, 5)).astype(np.float32)
  logits = model.apply(variables, inputs, train=False)[0]
  predicted = np.asarray(np.argmax(logits if logits.ndim == 2 else logits[:, 0], -1))
  labels = np.where(np.arange(rows) % 2 == 0, predicted, rng.integers(0, 3, size=(rows,)))
  out = {"input": inputs, "label": labels.astype(np.int32)}
  if alike:
    out = {n: np.repeat(v.reshape(UPDATES, 1, MICRO, *v.shape[1:]), k, axis=1)
           .reshape(UPDATES * k * MICRO, *v.shape[1:]) for n, v in out.items()}
  return out


def _run(config, batches, size, variables):
  """Trains on consecutive slices of `size` rows; returns (final state, last metrics,
  params after the first step)."""
  eng = _engine(config)
  state = eng.create_state(variables, engine_lib.optimizer_hparams(config),
                           np.asarray(eng.spec.rates, np.float32))
  key = jax.random.key(1)
  first = None
  for start in range(0, len(batches["label"]), size):
    batch = {name: v[start:start + size] for name, v in batches.items()}
    state, metrics = eng.train_step(state, batch, key)
    if first is None:
      first = jax.device_get(state.params)
  return state, jax.device_get(metrics), first


# (optimizer, SPG, normalize, form, k, a cycle's micro-batches alike)
CASES = [("sgd", False, "none", "masked", 2, False),
         ("adamw", False, "none", "masked", 3, False),
         ("sgd", True, "lr", "unmasked", 2, False),
         ("adamw", True, "none", "masked", 3, True)]


@pytest.mark.parametrize("optimizer,spg,normalize,form,k,alike", CASES)
def test_k_micro_batches_equal_one_big_batch(optimizer, spg, normalize, form, k, alike):
  big_config = _config(optimizer, 1, spg, normalize, form)
  acc_config = _config(optimizer, k, spg, normalize, form)
  eng = _engine(big_config)
  variables = jax.device_get(eng.init(jax.random.key(0)))
  batches = _batches(k, eng.model, variables, alike)
  big, big_metrics, _ = _run(big_config, batches, k * MICRO, variables)
  acc, acc_metrics, first = _run(acc_config, batches, MICRO, variables)
  # The first micro-batch only accumulates; k*UPDATES micro-batches made UPDATES updates.
  chex.assert_trees_all_equal(first, variables["params"])
  assert int(acc.step) == k * UPDATES and int(acc.opt_state.gradient_step) == UPDATES
  chex.assert_trees_all_close(jax.device_get(acc.params), jax.device_get(big.params),
                              atol=1e-5, rtol=1e-5)
  # The schedule counts updates: the last update's learning rate is the big run's.
  np.testing.assert_allclose(acc_metrics["learning_rate"], big_metrics["learning_rate"],
                             rtol=1e-5)
  if spg:  # episodes survived: the replica terms count
    assert acc_metrics["survival"][1] > 0
  if normalize == "lr":  # SPG's step-size factor reached the inner chain
    assert float(optim.get_hparam(acc.opt_state, optim.LR_SCALE)) != 1.0
    np.testing.assert_allclose(optim.get_hparam(acc.opt_state, optim.LR_SCALE),
                               optim.get_hparam(big.opt_state, optim.LR_SCALE), rtol=1e-5)


def test_hyperparameters_are_read_and_written_through_the_multisteps_state():
  tx = optim.make_optimizer("sgd", optim.schedule_factor("constant", 8), learning_rate=0.5,
                            accumulation_steps=4)
  state = tx.init({"w": np.ones(3, np.float32)})
  assert isinstance(state, optax.MultiStepsState)
  state = optim.set_hparams(state, learning_rate=0.2, momentum=0.0, lr_scale=0.5)
  assert float(optim.get_hparam(state.inner_opt_state, "learning_rate")) == \
      pytest.approx(0.2)
  assert float(optim.learning_rate(state)) == pytest.approx(0.1)
  # "lr" normalisation: the running geometric mean over the cycle's micro-batches.
  for mini_step, factor in enumerate((2.0, 8.0)):
    state = optim.set_lr_scale(state._replace(mini_step=np.int32(mini_step)), factor)
  assert float(optim.get_hparam(state, optim.LR_SCALE)) == pytest.approx(4.0)


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "2", None])
def test_bad_accumulation_steps_are_refused_in_one_line(value):
  config = config_lib.base_config()
  with config.ignore_type():  # past the ConfigDict's own type check
    config.optimizer.accumulation_steps = value
  with pytest.raises(ValueError, match=r"^config\.optimizer\.accumulation_steps=.*: must "
                     r"be an integer >= 1") as info:
    config_lib.validate_config(config)
  assert "\n" not in str(info.value)
  with pytest.raises(ValueError, match=r"^optimizer\.accumulation_steps=0: "):
    optim.make_optimizer("sgd", optim.schedule_factor("constant", 1), learning_rate=0.1,
                         accumulation_steps=0)


@pytest.mark.parametrize("field,value", [("num_steps", 10), ("eval_every_steps", 3),
                                         ("schedule.warmup_steps", 2)])
def test_step_counts_must_be_whole_updates(field, value):
  config = config_lib.base_config()
  config.optimizer.accumulation_steps = 4
  config.num_steps, config.eval_every_steps = 16, 8
  *path, last = field.split(".")
  target = config
  for part in path:
    target = target[part]
  target[last] = value
  with pytest.raises(ValueError, match=rf"^config\.{field}={value}: must be a multiple of "
                     r"optimizer\.accumulation_steps \(4\)"):
    config_lib.validate_config(config)


def test_resume_in_the_middle_of_an_accumulation_cycle_is_bitwise(tmp_path):
  config = _config("adamw", 2, True)
  config.num_steps, config.eval_every_steps, config.log_every_steps = 6, 2, 1
  config.eval_batch_size = 4
  config.progress_bar = False
  config.checkpoint.every_steps = 3  # step 3: one micro-batch into the second update
  config.controller.enabled, config.controller.every_steps = True, 1
  run = {"model": MODEL, "dataset": DATASET}
  full = loop.train_and_evaluate(config, str(tmp_path / "full"), **run)
  loop.train_and_evaluate(config, str(tmp_path / "cut"), **run)
  shutil.rmtree(tmp_path / "cut" / "checkpoints" / "6")  # as if stopped after step 3
  resumed = loop.train_and_evaluate(config, str(tmp_path / "cut"), **run)
  chex.assert_trees_all_equal(resumed.final_variables, full.final_variables)
  assert resumed.history == full.history
  # Logged per micro-batch (step), the learning rate of the last update moves per update.
  rates = [r["train/learning_rate"] for r in full.history if "train/learning_rate" in r]
  assert len(rates) == 6 and rates[1] == rates[2] and rates[3] == rates[4]
