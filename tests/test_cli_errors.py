"""`python -m experiments.main`: every bad command line is one `error:` line, exit 2, before
anything is written, including the errors absl and ml_collections raise while parsing flags
(an unknown flag, a config file that does not exist or fails to build, a bad variant, a
value that does not parse, an override of a field that does not exist)."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPG = "experiments/configs/mnist1d_spg.py"
PROTOCOL = "experiments/configs/mnist1d_protocol.py:quick"

CASES = [
    ([f"--config={SPG}:quick", "--bogus=1"], "Unknown command line flag 'bogus'"),
    ([f"--config={SPG}:quick", "--config.bogus=1"],
     "--config.bogus: the config has no field 'bogus' there"),
    ([f"--config={SPG}", "--config.spg.ratee=0.3"],
     "--config.spg.ratee: the config has no field 'ratee' there (did you mean \"rate\""),
    ([f"--config={PROTOCOL}", "--config.protocol.arms.spg_hpo.spg.rate=1.5"],
     "--config.protocol.arms.spg_hpo.spg.rate: the config has no field 'rate' there"),
    ([f"--config={SPG}:quick", "--config.seed=abc"], "--config.seed=abc"),
    ([f"--config={SPG}:quik"], "config variant 'quik': must be '' (full) or 'quick'"),
    (["--config=experiments/configs/nope.py"],
     "--config=experiments/configs/nope.py: no such config file"),
    ([], "Flag --config must have a value other than None"),
    ([f"--config={SPG}:quick:x"], "config variant 'quick:x': must be '' (full) or 'quick'"),
    ([f"--config={SPG}:quick", "--config.spg.rate=(0.1,abc)"],
     "--config.spg.rate=(0.1,abc): not a tuple of numbers, e.g. (0.1,0.2,0.3)"),
    ([f"--config={SPG}:quick", "--config.spg.rate=('a','b','c')"],
     "--config.spg.rate=('a','b','c'): not a tuple of numbers"),
    ([f"--config={SPG}:quick", "--config.spg.ratee=(0.1,0.2)"],
     "--config.spg.ratee: the config has no field 'ratee' there"),
    ([f"--config={SPG}:quick", "--config.num_steps=(1,2)"],
     "--config.num_steps=(1,2): Could not override field 'num_steps'"),
    ([f"--config={SPG}:quick", "--config.optimizer.learning_rate=fast"],
     "--config.optimizer.learning_rate=fast: could not convert string to float: 'fast'"),
    ([f"--config={SPG}:quick", "--config.spg.enabled=maybe"],
     "--config.spg.enabled=maybe"),
    ([f"--config={SPG}:quick", "--allow_config_change=perhaps"],
     "--allow_config_change"),
]

# Values that parse but are not allowed: found by the config checks after the flags, still
# before anything is written (prefix "error: config...").
VALUE_CASES = [
    ("--config.spg.rate=1.5", "config.spg.rate=1.5"),
    ("--config.spg.rate=(0.1,0.2)", "config.spg.rate=(0.1, 0.2): give one shared rate or "
     "one per replica (num_replicas=3, got 2)"),
    ("--config.spg.rate=(0.1,0.2,1.0)", "config.spg.rate"),
    ("--config.spg.normalize=yes", "config.spg.normalize='yes'"),
    ("--config.spg.kind=both", "config.spg.kind='both'"),
    ("--config.spg.form=weird", "config.spg.form='weird'"),
    ("--config.optimizer.name=adamx", "config.optimizer.name='adamx'"),
    ("--config.schedule.name=cosine2", "config.schedule.name='cosine2'"),
    ("--config.model.name=resnet9", "resnet9"),
    ("--config.dataset.name=mnist2", "mnist2"),
    ("--config.batch_size=0", "config.batch_size=0"),
    ("--config.batch_size=100000", "config.batch_size=100000: larger than the training "
     "split of mnist1d (3600 examples)"),
    ("--config.max_skipped_fraction=2.0", "config.max_skipped_fraction=2.0: must be a "
     "number in [0.0, 1.0]"),
    ("--config.mode=eval", "config.mode='eval'"),
    ("--config.task.name=segmentation", "config.task.name='segmentation'"),
]


@pytest.fixture
def run_main(run_module):
  """`run_main(*args)`: `python -m experiments.main ARGS` in the warm zygote (conftest)."""
  return lambda *args, **kw: run_module("experiments.main", *args, **kw)


@pytest.mark.parametrize("args, says", CASES, ids=[c[1][:30] for c in CASES])
def test_parse_errors_are_one_line_exit_2_and_write_nothing(run_main, tmp_path, args, says):
  workdir = tmp_path / "w"
  done = run_main(*args, f"--workdir={workdir}")
  assert done.returncode == 2, done.stderr[-2000:]
  assert done.stderr.strip().startswith("error: command line: ")
  assert says in done.stderr and done.stderr.strip().count("\n") == 0
  assert "Traceback" not in done.stderr and not workdir.exists()


def _one_error_line(done, says: str, code: int = 2) -> None:
  assert done.returncode == code, done.stderr[-2000:]
  err = done.stderr.strip()
  assert err.startswith("error: ") and err.count("\n") == 0, err[-2000:]
  assert says in err and "Traceback" not in err, err


@pytest.mark.parametrize("arg, says", VALUE_CASES, ids=[c[0][9:40] for c in VALUE_CASES])
def test_bad_values_are_one_line_exit_2_and_write_nothing(run_main, tmp_path, arg, says):
  workdir = tmp_path / "w"
  done = run_main(f"--config={SPG}:quick", arg, "--config.num_steps=2",
                  f"--workdir={workdir}")
  _one_error_line(done, says)
  assert not workdir.exists()


def _snapshot(path) -> dict:
  return {str(p): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
          for p in sorted(path.rglob("*"))}


TINY_RUN = (f"--config={SPG}:quick", "--config.num_steps=4", "--config.log_every_steps=2",
            "--config.eval_every_steps=4", "--config.progress_bar=False",
            "--config.spg.rate=(0.1,0.2,0.3)")


def test_a_workdir_remembers_its_config_and_refuses_another(run_main, tmp_path):
  """Per-replica rates from the command line are stored; a rerun with another rate and
  learning rate is one line listing both fields, exit 2, the workdir untouched; with
  --allow_config_change it continues and records the change."""
  workdir = tmp_path / "w"
  first = run_main(*TINY_RUN, f"--workdir={workdir}")
  assert first.returncode == 0, first.stderr[-2000:]
  stored = json.loads((workdir / "config.json").read_text())
  assert stored["spg"]["rate"] == [0.1, 0.2, 0.3]
  before = _snapshot(workdir)
  changed = (*TINY_RUN, "--config.spg.rate=(0.1,0.2,0.4)",
             "--config.optimizer.learning_rate=0.01")
  refused = run_main(*changed, f"--workdir={workdir}")
  _one_error_line(refused, "holds a run of another config (2 fields differ: "
                  "optimizer.learning_rate: 0.05 -> 0.01, spg.rate: [0.1, 0.2, 0.3] -> "
                  "[0.1, 0.2, 0.4]); use another workdir, or --allow_config_change")
  assert _snapshot(workdir) == before
  again = run_main(*TINY_RUN, f"--workdir={workdir}")  # the same config: resumes, finished
  assert again.returncode == 0, again.stderr[-2000:]
  allowed = run_main(*changed, "--allow_config_change", f"--workdir={workdir}")
  assert allowed.returncode == 0, allowed.stderr[-2000:]
  changes = json.loads((workdir / "config_changes.json").read_text())
  assert [sorted(c["changed"]) for c in changes] == [["optimizer.learning_rate",
                                                      "spg.rate"]]
  assert changes[0]["changed"]["spg.rate"] == {"from": [0.1, 0.2, 0.3], "to": [0.1, 0.2, 0.4]}
  assert json.loads((workdir / "config.json").read_text())["spg"]["rate"] == [0.1, 0.2, 0.4]


def test_a_diverging_run_with_skip_nonfinite_fails_with_exit_3(run_main, tmp_path):
  workdir = tmp_path / "w"
  done = run_main(f"--config={SPG}:quick", "--config.num_steps=12",
                  "--config.log_every_steps=4", "--config.eval_every_steps=12",
                  "--config.progress_bar=False", "--config.skip_nonfinite=True",
                  "--config.optimizer.learning_rate=1e30", f"--workdir={workdir}")
  _one_error_line(done, "step 12: 11 of 12 steps skipped as non-finite, more than "
                  "config.max_skipped_fraction=0.1", code=3)


def test_a_config_file_that_raises_names_the_file(tmp_path):
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config():\n  return 1 / 0\n")
  done = subprocess.run([sys.executable, "-m", "experiments.main", f"--config={broken}",
                         f"--workdir={tmp_path / 'w'}"], cwd=REPO, capture_output=True,
                        text=True, timeout=120)
  assert done.returncode == 2
  assert done.stderr.strip() == (f"error: command line: --config={broken}: building the "
                                 f"config failed: ZeroDivisionError: division by zero")
