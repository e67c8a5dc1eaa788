"""spg_jax.protocol: a tiny end-to-end protocol run (2 seeds, a few steps), the starting
checkpoint path, config checks, and results.md's statistics on hand numbers."""
import importlib
import os

import jax
import ml_collections
import numpy as np
import pytest

from spg_jax import models
from spg_jax import protocol
from spg_jax import report
from spg_jax.train import checkpointing

PROTOCOL_CONFIGS = ("mnist1d_protocol", "digits_protocol", "shapes_protocol")
ARMS = ("base", "control", "spg_hpo", "spg_nas")


def _config(name="mnist1d_protocol", arg="quick"):
  return importlib.import_module(f"experiments.configs.{name}").get_config(arg)


def _table_rows(markdown: str, header_start: str) -> dict[str, list[str]]:
  """Rows (first cell -> cells) of the first table whose header starts with `header_start`."""
  lines = markdown.splitlines()
  start = next(i for i, l in enumerate(lines) if l.startswith(header_start))
  rows = {}
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    cells = [c.strip() for c in line.strip("|").split("|")]
    rows[cells[0]] = cells[1:]
  return rows


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("protocol"))
  lines = []
  result = protocol.run_protocol(_config(), workdir, log=lines.append, command="pytest")
  return workdir, result, lines


@pytest.mark.parametrize("name", PROTOCOL_CONFIGS)
def test_protocol_configs_validate(name):
  for arg in (None, "quick"):
    config = _config(name, arg)
    protocol.validate_protocol(config)
    arms = protocol.arm_stage_configs(config, 0)
    # The reference first, then the arms by name (a ConfigDict iterates its keys sorted).
    expected = ["control", "spg_hpo", "spg_nas"] if arg else [
        "control", "dropout", "spg_hpo", "spg_nas", "spg_unmasked"]
    assert list(arms) == expected
    assert not arms["control"].spg.enabled
    assert (arms["spg_hpo"].spg.kind, arms["spg_nas"].spg.kind) == ("hpo", "nas")
    assert not protocol.base_stage_config(config, 0).spg.enabled
  assert len(_config(name, None).protocol.seeds) >= 5  # enough for the interval to mean something


def test_segmentation_protocol_scores_every_arm_on_miou(tmp_path):
  config = _config("shapes_protocol")
  config.protocol.seeds = (0,)  # one seed keeps it short; intervals need two (tested above)
  config.protocol.retrain.eval_every_steps = 4
  # SPG-HPO only: NAS on segmentation is tested in test_models.py, and each SPG arm here is
  # another per-pixel step to compile.
  del config.protocol.arms["spg_nas"]
  arms = [a for a in ARMS if a != "spg_nas"]
  result = protocol.run_protocol(config, str(tmp_path), log=lambda _: None, command="pytest")
  assert result.metric.name == "mIoU" and result.arms == arms
  for arm in arms:
    assert all(0.0 <= s <= 1.0 for s in result.scores[arm])
  text = open(tmp_path / "results.md", encoding="utf-8").read()
  assert "| arm | test mIoU % (mean ± std) |" in text and "Test mIoU (higher is better)" in text
  assert "task: `segmentation`, scored by its selection metric `mIoU`" in text
  main = _table_rows(text, "| arm |")
  assert main["spg_hpo"][0] == f"{100 * result.scores['spg_hpo'][0]:.2f} ± n/a"  # one seed
  assert main["spg_hpo"][4] == "n/a (needs >= 2 seeds)"


def test_tiny_run_writes_results_and_exports(tiny_run):
  workdir, result, lines = tiny_run
  seeds = [0, 1]
  assert result.seeds == seeds and result.arms == list(ARMS)
  assert len(lines) == len(seeds) * len(ARMS)  # one progress line per run
  for arm in ARMS:
    assert [r.seed for r in result.runs[arm]] == seeds
    assert all(0.0 <= a <= 1.0 for a in result.scores[arm])

  text = open(os.path.join(workdir, "results.md"), encoding="utf-8").read()
  main = _table_rows(text, "| arm |")
  assert set(main) == set(ARMS)
  for arm in ARMS:  # the table's numbers are the run's numbers
    mean, std, n = report.summarize(result.scores[arm])
    assert main[arm][0] == f"{100 * mean:.2f} ± {100 * std:.2f}" and main[arm][1] == str(n)
  per_seed = _table_rows(text, "| seed | base |")
  for i, seed in enumerate(seeds):
    assert per_seed[str(seed)] == [f"{100 * result.scores[a][i]:.2f}" for a in ARMS]
  for needle in ("Command: `pytest`", "95% CI", "jax 0.", "Hardware:", "protocol:",
                 "spg_nas:"):
    assert needle in text
  assert str(result).startswith(result.table())

  png = open(os.path.join(workdir, "results.png"), "rb").read()
  assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_exports_are_base_models(tiny_run):
  """Every arm's export holds exactly the base model's variables (replicas stripped)."""
  workdir, result, _ = tiny_run
  model = models.get("cnn1d_mnist1d", num_classes=10)
  fresh = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 40, 1)),
                                            train=False))
  for arm in ARMS:
    for record in result.runs[arm]:
      assert record.export_dir == os.path.join(workdir, "exports", arm, f"seed_{record.seed}")
      exported = checkpointing.load_exported(record.export_dir)
      assert jax.tree.structure(exported) == jax.tree.structure(dict(fresh))
      assert [a.shape for a in jax.tree.leaves(exported)] == \
             [a.shape for a in jax.tree.leaves(fresh)]


def test_spg_arms_log_survival_and_curves_start_at_the_base(tiny_run):
  _, result, _ = tiny_run
  for i in range(len(result.seeds)):
    base = result.runs["base"][i]
    for arm in ("control", "spg_hpo", "spg_nas"):
      steps_, values = result.runs[arm][i].val_curve
      assert (steps_[0], values[0]) == (0.0, base.best_val_score)
      assert steps_[-1] == result.runs[arm][i].num_steps
  assert result.runs["control"][0].survival == []
  for arm in ("spg_hpo", "spg_nas"):
    survival = result.runs[arm][0].survival
    assert len(survival) == 3 and all(len(s) > 0 for s, _ in survival)
    for t in range(2):  # an episode survives replica t+1 only if it survived replica t
      assert np.all(np.asarray(survival[t + 1][1]) <= np.asarray(survival[t][1]) + 1e-6)


def test_init_checkpoint_is_the_base_row_for_every_seed(tiny_run, tmp_path):
  """Starting from an exported model: its accuracy, evaluated here, is the base row, the
  same for every seed, and equals what the trainer measured for that model."""
  workdir, first, _ = tiny_run
  config = _config()
  config.protocol.init_checkpoint = os.path.join(workdir, "exports", "base", "seed_0")
  config.protocol.arms = ml_collections.ConfigDict({"control": config.protocol.arms.control})
  result = protocol.run_protocol(config, str(tmp_path), log=lambda _: None)
  expected = first.scores["base"][0]
  assert result.scores["base"] == pytest.approx([expected, expected], abs=1e-6)
  assert result.arms == ["base", "control"]
  assert "loaded from the exported checkpoint" in open(result.results_md).read()


def test_arms_must_share_the_budget():
  config = _config()
  config.protocol.arms.spg_hpo.num_steps = config.protocol.retrain.num_steps + 1
  with pytest.raises(ValueError, match="same num_steps"):
    protocol.validate_protocol(config)


@pytest.mark.parametrize("field,value,match", [
    ("arms.spg_hpo.spg.dropout", 0.3, r"config\.spg\.dropout: no such field"),
    ("reference", "missing", "reference='missing'"),
    ("seeds", (0, 0), "seeds"),
    ("confidence", 1.0, "confidence"),
    ("init_checkpoint", "/nonexistent/export", "init_checkpoint"),
    ("retrain.batch_size", 0, "protocol stage 'control': .*batch_size"),
])
def test_bad_protocol_config_fails_before_training(field, value, match):
  config = _config()
  target = config.protocol
  *path, last = field.split(".")
  for key in path:
    target = target[key]
  target[last] = value
  with pytest.raises(ValueError, match=match):
    protocol.validate_protocol(config)


def _fake_result(accuracies):
  seeds = list(range(len(next(iter(accuracies.values())))))
  runs = {arm: [protocol.RunRecord(arm, s, a, 10, a, 20, 1.0, f"exports/{arm}/seed_{s}",
                                   ([0.0, 20.0], [a, a]), []) for s, a in zip(seeds, acc)]
          for arm, acc in accuracies.items()}
  metric = report.Metric("accuracy", percent=True, higher_is_better=True)
  return protocol.ProtocolResult(seeds, list(accuracies), "control", 0.95, metric,
                                 {k: list(v) for k, v in accuracies.items()}, runs,
                                 "results.md", "results.png", 12.5)


def test_results_markdown_hand_numbers_and_no_significant_difference():
  # spg_hpo - control per seed: +1, -1, +2, -2, 0 pp; spg_nas: +1, ..., +5 pp. Both have
  # sd sqrt(10 / 4) = 1.5811, so the half-width is t(0.975, 4) * 1.5811 / sqrt(5) = 1.96:
  # spg_hpo 0 in [-1.96, +1.96] (no significant difference), spg_nas 3 in [+1.04, +4.96].
  control = [0.90, 0.91, 0.92, 0.93, 0.94]
  acc = {"base": [c - 0.10 for c in control], "control": control,
         "spg_hpo": [c + d for c, d in zip(control, (0.01, -0.01, 0.02, -0.02, 0.0))],
         "spg_nas": [c + d for c, d in zip(control, (0.01, 0.02, 0.03, 0.04, 0.05))]}
  text = protocol.results_markdown(_config(), _fake_result(acc), "python -m x")
  rows = _table_rows(text, "| arm |")
  assert float(rows["spg_hpo"][2]) == pytest.approx(0.0, abs=1e-9)
  assert rows["spg_hpo"][3:] == ["[-1.96, +1.96]", report.NO_DIFFERENCE]
  assert rows["spg_nas"][2:] == ["+3.00", "[+1.04, +4.96]", "significantly higher (better)"]
  assert rows["base"][2:] == ["-10.00", "[-10.00, -10.00]", "significantly lower (worse)"]
  assert rows["control"][:2] == ["92.00 ± 1.58", "5"]  # sd of 90..94 = sqrt(2.5)
  assert "spg_hpo vs control: " in text and "no significant difference." in text
  assert "python -m x" in text and "12.5 s" in text
