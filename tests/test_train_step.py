"""The compiled train step: 1 vs 8 devices, no retracing when traced hyperparameters or
rates change, the lr form of loss normalisation."""
import chex
import jax
import numpy as np

from experiments.configs import digits_spg
from spg_jax import data, sharding
from spg_jax.train import optim
from spg_jax.train import engine as engine_lib
from spg_jax.train import state as state_lib
from spg_jax.train import step as step_lib

from test_train_loop import _quick


def _engine_and_state(config, mesh):
  spec = engine_lib.spec_from_config(config, mesh, data.dataset_info("digits"))
  engine = engine_lib.get_engine(spec)
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
