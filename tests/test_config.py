"""The config schema and its validation (`spg_jax.config`): defaults build and validate,
every bad value raises a one-line error naming the field, tasks are checked against the
dataset."""
import pytest

from spg_jax import config as config_lib


def test_defaults_validate_and_the_task_defaults_to_the_dataset_s():
  config = config_lib.base_config()
  config_lib.validate_config(config)
  assert config.task.name is None


BAD_VALUES = [
    ("seed", -1, "config.seed=-1"),
    ("model.name", "resnet7", "config.model.name='resnet7'"),
    ("dataset.name", "mnist2d", "config.dataset.name='mnist2d'"),
    ("dataset.validation_fraction", 0.0, "config.dataset.validation_fraction=0.0"),
    ("batch_size", 0, "config.batch_size=0"),
    ("optimizer.name", "lion", "config.optimizer.name='lion'"),
    ("optimizer.learning_rate", -0.1, "config.optimizer.learning_rate=-0.1"),
    ("optimizer.momentum", 1.0, "config.optimizer.momentum=1.0"),
    ("schedule.name", "exponential", "config.schedule.name='exponential'"),
    ("schedule.decay_factor", 0.0, "config.schedule.decay_factor=0.0"),
    ("spg.kind", "nas2", "config.spg.kind='nas2'"),
    ("spg.num_replicas", 0, "config.spg.num_replicas=0"),
    ("spg.rate", 1.0, "config.spg.rate=1.0"),
    ("spg.rate", (0.1, 0.2), "config.spg.rate=(0.1, 0.2)"),
    ("spg.lambdas", (0.4, -0.2, 0.1), "config.spg.lambdas=(0.4, -0.2, 0.1)"),
    ("spg.lambdas", (0.4, 0.2), "config.spg.lambdas=(0.4, 0.2)"),
    ("spg.form", "ppo", "config.spg.form='ppo'"),
    ("spg.normalize", "yes", "config.spg.normalize='yes': must be one of ['none', 'loss', "
     "'lr']"),
    ("spg.use_relu", "yes", "config.spg.use_relu='yes': must be True or False"),
    ("spg.base_denominator", "pixels", "config.spg.base_denominator='pixels': must be one of "
     "['valid', 'all']"),
    ("spg.head_batch_stats", "all", "config.spg.head_batch_stats='all': must be one of "
     "['base', 'every_step']"),
    ("controller.max_rate", 1.0, "config.controller.max_rate=1.0"),
    ("checkpoint.keep", 0, "config.checkpoint.keep=0"),
    ("skip_nonfinite", 1, "config.skip_nonfinite=1"),
    ("distributed.process_id", 0, "config.distributed=(None, None, 0)"),
    ("num_devices", 1000, "config.num_devices=1000"),
    ("task.name", "detection", "config.task.name='detection'"),
    ("task.name", "segmentation", "config.task.name='segmentation': dataset 'mnist1d' is a "
     "'classification' dataset"),
    ("task.top_five", 5, "config.task.top_five: not a field of task 'classification'"),
    ("task.top_k", 0, "config.task.top_k=0"),
    ("dataset.preprocess.eval_crop_size", 480, "config.dataset.preprocess.eval_crop_size=480: "
     "not an option of dataset 'mnist1d'"),
]


@pytest.mark.parametrize("field,value,message", BAD_VALUES)
def test_bad_value_raises_one_line_error_naming_the_field(field, value, message):
  config = config_lib.base_config()
  *path, last = field.split(".")
  target = config
  for part in path:
    target = target[part]
  with target.ignore_type():
    target[last] = value
  with pytest.raises(ValueError) as info:
    config_lib.validate_config(config)
  text = str(info.value)
  assert text.startswith(message) and "\n" not in text


def test_batch_must_split_over_the_devices():
  config = config_lib.base_config()
  config.num_devices, config.batch_size = 8, 12
  with pytest.raises(ValueError, match=r"config.batch_size=12: must be a multiple of .* \(8\)"):
    config_lib.validate_config(config)




def test_mode_defaults_to_train_and_rejects_unknown_values():
  config = config_lib.base_config()
  assert config.mode == "train" and config.init_checkpoint is None
  config.mode = "predict"
  with pytest.raises(ValueError, match=r"^config.mode='predict': must be one of "
                     r"\['train', 'evaluate'\]$"):
    config_lib.validate_config(config)


def test_evaluate_mode_needs_an_existing_checkpoint(tmp_path):
  config = config_lib.base_config()
  config.mode = "evaluate"
  with pytest.raises(ValueError, match=r"^config.mode='evaluate': needs init_checkpoint"):
    config_lib.validate_config(config)
  config.init_checkpoint = str(tmp_path / "missing")
  with pytest.raises(ValueError, match=r"^config.init_checkpoint='.*missing': no such "
                     r"directory"):
    config_lib.validate_config(config)
  config.init_checkpoint = str(tmp_path)
  config_lib.validate_config(config)


def test_evaluate_mode_reads_the_protocol_checkpoint_first(tmp_path):
  import ml_collections  # pylint: disable=g-import-not-at-top
  config = config_lib.base_config()
  config.mode = "evaluate"
  config.protocol = ml_collections.ConfigDict({"init_checkpoint": str(tmp_path / "gone")})
  config.init_checkpoint = str(tmp_path)   # exists, but the protocol's path wins
  with pytest.raises(ValueError, match=r"^config.protocol.init_checkpoint='.*gone'"):
    config_lib.validate_config(config)
  config.protocol.init_checkpoint = str(tmp_path)
  config_lib.validate_config(config)
