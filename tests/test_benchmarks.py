"""Every benchmark script runs once at a tiny size and writes its own section of a temporary
RESULTS file (never the real one), leaving the other sections alone. Not timed: these
tests only keep the scripts from rotting; the numbers they produce are not checked."""
import os
import re

import pytest

from experiments.benchmarks import common
from experiments.benchmarks import hpo_cost
from experiments.benchmarks import memory
from experiments.benchmarks import quality
from experiments.benchmarks import single_vs_multipass
from experiments.benchmarks import step_overhead


def test_write_section_replaces_only_its_own_section(tmp_path):
  path = str(tmp_path / "RESULTS.md")
  common.write_section("a", "first A", path)
  common.write_section("b", "only B", path)
  common.write_section("a", "second A", path)
  text = open(path, encoding="utf-8").read()
  assert text.startswith("# spg_jax benchmark results")
  assert "second A" in text and "first A" not in text and "only B" in text
  assert text.count("<!-- BEGIN a -->") == 1 and text.index("BEGIN a") < text.index("BEGIN b")


def test_interleaved_times_every_runner_every_round():
  calls = []
  times = common.interleaved({"x": lambda: calls.append("x"), "y": lambda: calls.append("y")},
                             repeats=3, iters=2)
  assert sorted(times) == ["x", "y"] and all(t.shape == (3,) for t in times.values())
  assert calls.count("x") == calls.count("y") == 1 + 3 * 2
  # Rounds rotate the order, so neither variant always runs first.
  assert calls[2:4] == ["x", "x"] and calls[6:8] == ["y", "y"]


def _section(path, name):
  text = open(path, encoding="utf-8").read()
  match = re.search(rf"<!-- BEGIN {name} -->\n(.*)\n<!-- END {name} -->", text, re.S)
  assert match, f"section {name} missing"
  return match.group(1)


TINY = {
    step_overhead: ["--models=cnn1d_mnist1d", "--replicas=1", "--batch_size=8",
                    "--repeats=2", "--iters=1"],
    single_vs_multipass: ["--models=cnn1d_mnist1d", "--replicas=1", "--batch_size=8",
                          "--repeats=2", "--iters=1"],
    memory: ["--models=cnn1d_mnist1d", "--replicas=1", "--kinds=hpo", "--batch_size=8"],
    # MNIST-1D in both, so that hpo_cost reuses the steps quality compiled (same settings).
    quality: ["--quick", "--datasets=mnist1d", "--seeds=0", "--arms=control,spg_hpo"],
    hpo_cost: ["--quick", "--seeds=0", "--grid=0.5",
               "--methods=spg,spg_controller,grid,grid_equal_steps,random"],
}


@pytest.mark.parametrize("script", list(TINY), ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_script_runs_tiny_and_writes_its_section(script, tmp_path):
  path = str(tmp_path / "RESULTS.md")
  common.write_section("other", "untouched", path)
  workdir = [f"--workdir={tmp_path / 'work'}"] if script in (quality, hpo_cost) else []
  body = script.main(TINY[script] + [f"--results={path}"] + workdir)
  section = _section(path, script.SECTION)
  assert section == body.rstrip()
  assert "| " in section and "- Command: `" in section and "- Hardware: " in section
  assert _section(path, "other") == "untouched"


def test_hpo_cost_cuts_a_search_to_a_wall_budget_and_reads_controller_rates():
  runs = [{"rate": 0.1, "val": 0.5, "test": 0.4, "steps": 4, "wall": 3.0},
          {"rate": 0.2, "val": 0.9, "test": 0.8, "steps": 4, "wall": 2.0},
          {"rate": 0.3, "val": 0.7, "test": 0.6, "steps": 4, "wall": 1.0}]
  search = hpo_cost.select(runs)
  assert (search["rate"], search["runs"], search["wall"]) == (0.2, 3, 6.0)
  assert hpo_cost.within_wall(search, 5.0)["rate"] == 0.2  # first two runs fit
  assert hpo_cost.within_wall(search, 4.0)["rate"] == 0.1  # only the first
  assert hpo_cost.within_wall(search, 0.5)["runs"] == 1  # at least one run
  history = [{"step": 100, "controller/dropout_rates/0": 0.25, "controller/dropout_rates/1": 0.3},
             {"step": 150, "train/loss": 1.0}]
  assert hpo_cost.final_rates(history) == (0.25, 0.3)
  assert hpo_cost.final_rates([{"step": 1}]) == ()


def test_quality_refuses_unknown_or_mixed_datasets(tmp_path):
  path = str(tmp_path / "RESULTS.md")
  for datasets, message in (("mnist2d", r"unknown \['mnist2d'\]"),
                            ("mnist1d,shapes", r"run segmentation \(\['shapes'\]\)")):
    with pytest.raises(SystemExit, match=message):
      quality.main([f"--datasets={datasets}", f"--results={path}"])
  assert not os.path.exists(path)  # refused before anything ran or was written
