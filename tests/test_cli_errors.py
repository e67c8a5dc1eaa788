"""`python -m experiments.main`: every bad command line is one `error:` line, exit 2, before
anything is written, including the errors absl and ml_collections raise while parsing flags
(an unknown flag, a config file that does not exist or fails to build, a bad variant, a
value that does not parse, an override of a field that does not exist)."""
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
]


@pytest.mark.parametrize("args, says", CASES, ids=[c[1][:30] for c in CASES])
def test_parse_errors_are_one_line_exit_2_and_write_nothing(tmp_path, args, says):
  workdir = tmp_path / "w"
  done = subprocess.run([sys.executable, "-m", "experiments.main", *args,
                         f"--workdir={workdir}"], cwd=REPO, capture_output=True, text=True,
                        timeout=120)
  assert done.returncode == 2, done.stderr[-2000:]
  assert done.stderr.strip().startswith("error: command line: ")
  assert says in done.stderr and done.stderr.strip().count("\n") == 0
  assert "Traceback" not in done.stderr and not workdir.exists()


def test_a_config_file_that_raises_names_the_file(tmp_path):
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config():\n  return 1 / 0\n")
  done = subprocess.run([sys.executable, "-m", "experiments.main", f"--config={broken}",
                         f"--workdir={tmp_path / 'w'}"], cwd=REPO, capture_output=True,
                        text=True, timeout=120)
  assert done.returncode == 2
  assert done.stderr.strip() == (f"error: command line: --config={broken}: building the "
                                 f"config failed: ZeroDivisionError: division by zero")
