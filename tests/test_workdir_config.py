"""`spg_jax.train.workdir_config`: the stored config, the comparison and the undo on bad
input (the command-line behaviour is in test_cli_errors.py)."""
import json

import pytest

from spg_jax import config as config_lib
from spg_jax.train import workdir_config


def test_first_run_stores_then_an_equal_config_passes_and_progress_bar_is_ignored(tmp_path):
  config = config_lib.base_config()
  assert workdir_config.check_and_record(config, str(tmp_path)) == {}
  stored = json.loads((tmp_path / "config.json").read_text())
  assert stored["spg"]["lambdas"] == [0.4, 0.2, 0.1] and stored["optimizer"]["name"] == "sgd"
  config.progress_bar = False
  assert workdir_config.check_and_record(config, str(tmp_path)) == {}


def test_differences_name_leaf_fields_and_absent_ones():
  a = {"spg": {"rate": 0.2, "kind": "hpo"}, "seed": 0, "progress_bar": True}
  b = {"spg": {"rate": 0.3, "kind": "hpo", "depth": 1}, "seed": 0, "progress_bar": False}
  assert workdir_config.differences(a, b) == {"spg.depth": ("<absent>", 1),
                                              "spg.rate": (0.2, 0.3)}


def test_a_field_added_later_at_its_default_is_no_difference():
  defaults = {"optimizer": {"accumulation_steps": 1, "name": "sgd"}}
  stored = {"optimizer": {"name": "sgd"}}  # written before the field existed
  same = {"optimizer": {"accumulation_steps": 1, "name": "sgd"}}
  other = {"optimizer": {"accumulation_steps": 4, "name": "sgd"}}
  assert workdir_config.differences(stored, same, defaults) == {}
  assert workdir_config.differences(stored, same) == {
      "optimizer.accumulation_steps": ("<absent>", 1)}
  assert workdir_config.differences(stored, other, defaults) == {
      "optimizer.accumulation_steps": ("<absent>", 4)}


def test_a_changed_config_is_refused_unless_allowed_then_recorded(tmp_path):
  config = config_lib.base_config()
  workdir_config.check_and_record(config, str(tmp_path))
  config.spg.rate = 0.3
  with pytest.raises(ValueError, match=r"1 field differs: spg.rate: 0.2 -> 0.3\); use "
                     r"another workdir, or --allow_config_change"):
    workdir_config.check_and_record(config, str(tmp_path))
  assert not (tmp_path / "config_changes.json").exists()
  diff = workdir_config.check_and_record(config, str(tmp_path), allow_change=True)
  assert diff == {"spg.rate": (0.2, 0.3)}
  changes = json.loads((tmp_path / "config_changes.json").read_text())
  assert changes[0]["changed"] == {"spg.rate": {"from": 0.2, "to": 0.3}}


def test_an_unreadable_stored_config_is_one_line(tmp_path):
  (tmp_path / "config.json").write_text("{not json")
  with pytest.raises(ValueError, match=r"config.json is not readable JSON .*move it aside"):
    workdir_config.check_and_record(config_lib.base_config(), str(tmp_path))


def test_bad_input_inside_a_fresh_workdir_leaves_no_workdir(tmp_path):
  workdir = tmp_path / "w"
  with pytest.raises(ValueError, match="bad batch"):
    with workdir_config.recorded(config_lib.base_config(), str(workdir)):
      assert (workdir / "config.json").exists()
      raise ValueError("bad batch")
  assert not workdir.exists()
  # An existing run's record survives a failed rerun.
  workdir_config.check_and_record(config_lib.base_config(), str(workdir))
  with pytest.raises(ValueError):
    with workdir_config.recorded(config_lib.base_config(), str(workdir)):
      raise ValueError("bad batch")
  assert (workdir / "config.json").exists()
