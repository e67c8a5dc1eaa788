"""Trainer engine: optimizer/schedules, controller, steps on 1 vs 8 devices, no retracing,
end-to-end runs, resume, exports, failures."""
import json
import os
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import digits_spg, mnist1d_spg
from spg_jax import data, models, sharding
from spg_jax.train import checkpointing, controller, loop, optim
from spg_jax.train import engine as engine_lib
from spg_jax.train import state as state_lib
from spg_jax.train import step as step_lib


def _quick(module=mnist1d_spg, num_steps=2, **overrides):
  config = module.get_config("quick")
  config.num_steps = num_steps
  config.num_devices = 1
  config.batch_size = config.eval_batch_size = 32
  config.log_every_steps = config.eval_every_steps = 1
  config.progress_bar = False
  config.schedule.name = "constant"  # tests of different lengths share compiled steps
  for field, value in overrides.items():
    target = config
    *path, last = field.split("__")
    for part in path:
      target = target[part]
    target[last] = value
  return config


def _assert_trees_equal(a, b):
  chex.assert_trees_all_equal(jax.tree.map(np.asarray, a), jax.tree.map(np.asarray, b))


# ------------------------------------------------------------------------- optim, control
def test_schedules_hand_computed():
  step = optim.schedule_factor("step", 100, decay_every_steps=10, decay_factor=0.5)
  np.testing.assert_allclose([step(i) for i in (0, 9, 10, 25)], [1.0, 1.0, 0.5, 0.25])
  warm = optim.schedule_factor("constant", 100, warmup_steps=4)
  np.testing.assert_allclose([warm(i) for i in (0, 1, 3, 50)], [0.25, 0.5, 1.0, 1.0])
  cosine = optim.schedule_factor("cosine", 100)
  np.testing.assert_allclose([cosine(0), cosine(50), cosine(100)], [1.0, 0.5, 0.0],
                             atol=1e-6)


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
def _engine_and_state(config, mesh):
  engine = engine_lib.get_engine(engine_lib.spec_from_config(config, mesh, data.dataset_info("digits")))
  variables = engine.init(jax.random.key(0))
  state = engine.create_state(variables, engine_lib.optimizer_hparams(config),
                              np.asarray(engine.spec.rates, np.float32))
  return engine, state


def _digits_batch(n=32):
  rng = np.random.default_rng(0)
  return {"input": rng.normal(size=(n, 8, 8, 1)).astype(np.float32),
          "label": rng.integers(0, 10, size=(n,)).astype(np.int32)}


def test_sharded_step_equals_single_device_step():
  config = _quick(digits_spg)
  results = []
  for num_devices in (1, 8):
    mesh = sharding.make_mesh(num_devices)
    engine, state = _engine_and_state(config, mesh)
    batch = sharding.shard_batch(_digits_batch(), mesh)
    state, metrics = engine.train_step(state, batch, jax.random.key(1))
    assert len(state.params["base"]["head"]["kernel"].sharding.device_set) == num_devices
    results.append(jax.device_get((state.params, state.batch_stats, metrics)))
  chex.assert_trees_all_close(results[0], results[1], atol=1e-5, rtol=1e-5)


def test_changing_learning_rate_or_dropout_rates_never_retraces():
  config = _quick(digits_spg)
  mesh = sharding.make_mesh(1)
  engine, state = _engine_and_state(config, mesh)
  step_fn = jax.jit(chex.assert_max_traces(
      step_lib.make_train_step(engine.model, engine.attachments, engine.tx, engine.spec), n=1))
  batch, key = sharding.shard_batch(_digits_batch(), mesh), jax.random.key(1)
  outputs = []
  for lr, rate in ((0.05, 0.2), (0.5, 0.2), (0.05, 0.6)):
    start = state_lib.with_dropout_rates(state, [rate] * 3).replace(
        opt_state=optim.set_hparams(state.opt_state, learning_rate=lr))
    new, metrics = step_fn(start, batch, key)
    np.testing.assert_allclose(metrics["dropout_rates"], rate)
    outputs.append(jax.device_get(new.params["base"]["head"]["kernel"]))
  moved = engine.controller_move(new.ctrl, 0.9, 0.1, 0.0, 0.5)
  step_fn(new.replace(ctrl=moved), batch, key)  # the controller's choice: still one trace
  # the traced values really act: every setting gives different params
  assert not np.allclose(outputs[0], outputs[1]) and not np.allclose(outputs[0], outputs[2])


def test_lr_normalisation_equals_loss_normalisation_with_plain_sgd():
  params = []
  for mode in ("loss", "lr"):
    config = _quick(digits_spg, spg__normalize=mode, optimizer__momentum=0.0)
    mesh = sharding.make_mesh(1)
    engine, state = _engine_and_state(config, mesh)
    state, metrics = engine.train_step(state, sharding.shard_batch(_digits_batch(), mesh),
                                       jax.random.key(1))
    assert float(metrics["norm_factor"]) < 1.0
    params.append(jax.device_get(state.params))
  chex.assert_trees_all_close(params[0], params[1], atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------- end to end
def test_two_step_run_on_embedded_data(tmp_path):
  result = loop.train_and_evaluate(_quick(), str(tmp_path))
  assert result.num_steps == 2 and result.best_step in (1, 2)
  assert 0.0 <= result.best_val_score <= 1.0 and 0.0 <= result.test_score <= 1.0
  base = models.get("cnn1d_mnist1d", num_classes=10)
  expected = base.init(jax.random.key(0), jnp.zeros((1, 40, 1)), train=False)
  chex.assert_trees_all_equal_shapes(result.best_variables, dict(expected))
  chex.assert_trees_all_equal_shapes(result.final_variables, dict(expected))
  _assert_trees_equal(checkpointing.load_exported(str(tmp_path / "export")),
                      result.best_variables)
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  train = [r for r in records if "train/loss" in r]
  for name in ("train/loss_base", "train/loss_replicas_2", "train/norm_factor",
               "train/accuracy", "train/survival_3", "train/mean_episode_length",
               "train/learning_rate", "train/dropout_rates_0"):
    assert name in train[-1]
  assert any("eval/accuracy" in r for r in records) and any("test/accuracy" in r
                                                            for r in records)
  assert os.listdir(tmp_path / "tensorboard")
  assert result.history == records


def test_resume_is_bitwise_identical(tmp_path):
  config = _quick(digits_spg, num_steps=4, checkpoint__every_steps=2,
                  controller__enabled=True, controller__every_steps=1)
  full = loop.train_and_evaluate(config, str(tmp_path / "full"))
  loop.train_and_evaluate(config, str(tmp_path / "cut"))
  shutil.rmtree(tmp_path / "cut" / "checkpoints" / "4")  # as if stopped after step 2
  resumed = loop.train_and_evaluate(config, str(tmp_path / "cut"))
  _assert_trees_equal(resumed.final_variables, full.final_variables)
  _assert_trees_equal(resumed.best_variables, full.best_variables)
  assert resumed.best_step == full.best_step
  assert [r["step"] for r in resumed.history] == [r["step"] for r in full.history]
  rates = [r for r in full.history if "controller/dropout_rates_0" in r]
  assert len(rates) == 4 and rates[0]["controller/dropout_rates_0"] != 0.2
  # three runs with the same static settings: the train step compiled once
  spec = engine_lib.spec_from_config(config, sharding.make_mesh(1), data.dataset_info("digits"))
  assert engine_lib.get_engine(spec).train_step._cache_size() == 1  # pylint: disable=protected-access


def test_init_variables_start_the_run(tmp_path):
  base = models.get("cnn1d_mnist1d", num_classes=10)
  given = jax.device_get(base.init(jax.random.key(7), jnp.zeros((1, 40, 1)), train=False))
  config = _quick(num_steps=1, optimizer__learning_rate=0.0)
  result = loop.train_and_evaluate(config, str(tmp_path), init_variables=dict(given))
  _assert_trees_equal(result.final_variables, dict(given))  # lr 0: unchanged
  wrong = {"params": {"head": given["params"]["head"]}}
  with pytest.raises(ValueError, match="init_variables"):
    loop.train_and_evaluate(config, str(tmp_path / "wrong"), init_variables=wrong)


def test_nonfinite_loss_raises_with_the_step(tmp_path):
  config = _quick(num_steps=4, optimizer__learning_rate=1e30)
  with pytest.raises(FloatingPointError, match=r"step \d+: non-finite"):
    loop.train_and_evaluate(config, str(tmp_path))
