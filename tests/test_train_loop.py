"""The training loop: end-to-end runs on embedded data, bitwise resume, init variables,
exports, divergence."""
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
from spg_jax.train import checkpointing, loop
from spg_jax.train import engine as engine_lib


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


def test_a_batch_larger_than_the_training_split_is_refused_before_anything_runs(tmp_path):
  """MNIST-1D trains on 3600 signals: a batch of 4096 would repeat examples in every batch.
  It is a one-line error naming the field, before compiling or writing anything."""
  config = _quick(batch_size=4096)
  workdir = tmp_path / "run"
  with pytest.raises(ValueError, match=r"^config\.batch_size=4096: larger than the training "
                                       r"split of mnist1d \(3600 examples\); use at most 3600$"):
    loop.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()


def test_xla_cpu_conv_eigen_trains_like_the_default_and_bad_values_are_refused(tmp_path):
  """`xla_cpu_conv="eigen"` (spg_jax.xla_cpu: other CPU kernels, the same computation):
  the same run to float32 rounding; its jitted step is compiled with those options."""
  default = loop.train_and_evaluate(_quick(), str(tmp_path / "default"))
  config = _quick(xla_cpu_conv="eigen")
  spec = engine_lib.spec_from_config(config, sharding.make_mesh(1),
                                     data.dataset_info(config.dataset.name))
  assert spec.xla_cpu_conv == "eigen" != engine_lib.spec_from_config(
      _quick(), sharding.make_mesh(1), data.dataset_info(config.dataset.name)).xla_cpu_conv
  eigen = loop.train_and_evaluate(config, str(tmp_path / "eigen"))
  chex.assert_trees_all_close(jax.tree.map(np.asarray, eigen.final_variables),
                              jax.tree.map(np.asarray, default.final_variables), atol=1e-5)
  with pytest.raises(ValueError, match=r"^config\.xla_cpu_conv='ynn': must be one of"):
    loop.train_and_evaluate(_quick(xla_cpu_conv="ynn"), str(tmp_path / "bad"))
  assert not (tmp_path / "bad").exists()
