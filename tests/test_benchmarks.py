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
from experiments.benchmarks import side_by_side
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
    # The JAX side only: torch is never a test dependency.
    side_by_side: ["--quick", "--frameworks=jax", "--jax_options=eigen"],
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


def test_torch_spg_says_in_one_line_that_torch_is_missing(monkeypatch):
  from experiments.benchmarks import torch_spg  # importing it never imports torch
  monkeypatch.setitem(__import__("sys").modules, "torch", None)  # `import torch` now fails
  with pytest.raises(RuntimeError, match=r"^torch_spg needs PyTorch .*pip install torch"):
    torch_spg.resnet18_cifar()


def test_side_by_side_refuses_bad_cases_and_frameworks(tmp_path):
  path = str(tmp_path / "RESULTS.md")
  for flag, message in (("--cases=resnet18_cifar:x", r"must be model:batch"),
                        ("--cases=vgg:8", r"must be model:batch"),
                        ("--frameworks=tf", r"must be 'auto' or a comma-separated")):
    with pytest.raises(SystemExit, match=message):
      side_by_side.main([flag, f"--results={path}"])
  assert not os.path.exists(path)


# Issue 18's CPU-profile, scaling and accelerator scripts at their tiny sizes (no torch).
TINY_SPEED = {
    "cpu_profile": ["--quick", "--parts=ops", "--ops_options=default,eigen", "--layouts=NHWC",
                    "--torch=no"],
    "spg_scaling": ["--quick", "--max_replicas=1"],
    "gpu_step": ["--smoke", "--cases=vit_b16"],
}


@pytest.mark.parametrize("name", list(TINY_SPEED))
def test_speed_script_runs_tiny_and_writes_its_section(name, tmp_path):
  import importlib
  script = importlib.import_module(f"experiments.benchmarks.{name}")
  path = str(tmp_path / "RESULTS.md")
  common.write_section("other", "untouched", path)
  body = script.main(TINY_SPEED[name] + [f"--results={path}"])
  section = _section(path, script.SECTION)
  assert section == body.rstrip() and "| " in section and "- Command: `" in section
  assert _section(path, "other") == "untouched"
  if name == "gpu_step":  # plain and SPG rows, and the smoke run says so
    assert "Smoke run" in section and "| vit_b16 | 2 | 0 |" in section
    assert "| vit_b16 | 2 | 3 |" in section
  if name == "spg_scaling":  # T = 0, 1 for the published CNN and one wide one
    assert section.count("| CNN1D (published, D = 125) |") == 2
    assert section.count("| CNN1DWide (D = 32) |") == 2


def test_xla_cpu_options_and_their_errors():
  from spg_jax import xla_cpu
  assert xla_cpu.compiler_options("cpu") == {
      "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}
  assert xla_cpu.compiler_options("gpu") is None
  assert xla_cpu.compiler_options("cpu", "default") is None
  with pytest.raises(ValueError, match=r"^conv_backend='ynn': must be one of"):
    xla_cpu.compiler_options("cpu", "ynn")


def test_speed_scripts_refuse_bad_flags(tmp_path):
  from experiments.benchmarks import cpu_profile, gpu_step, spg_scaling
  path = str(tmp_path / "RESULTS.md")
  for script, flag, message in (
      (cpu_profile, "--parts=ops,gpu", r"--parts=ops,gpu: must be a comma-separated subset"),
      (cpu_profile, "--options=fast", r"--options=fast: must be a comma-separated subset"),
      (side_by_side, "--jax_options=ynn", r"--jax_options=ynn: must be a comma-separated"),
      (spg_scaling, "--widths=a", r"--widths=a: must be comma-separated positive integers"),
      (gpu_step, "--cases=vgg", r"--cases=vgg: must be a comma-separated subset")):
    with pytest.raises(SystemExit, match=message):
      script.main([flag, f"--results={path}"])
  assert not os.path.exists(path)
