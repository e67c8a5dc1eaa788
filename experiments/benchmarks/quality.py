"""Quality: the retraining protocol (`spg_jax.protocol.run_protocol`) on MNIST-1D (1-D CNN),
on sklearn's digits and on the synthetic `shapes` segmentation set (`fcn_small`): base,
control (continued training), SPG-HPO, SPG-NAS over seeds; the task's test score (accuracy;
mIoU for segmentation) mean ± std and the paired difference against the control with a t
interval.

  python -m experiments.benchmarks.quality                      # classification, as is
  python -m experiments.benchmarks.quality --datasets=mnist1d --retrain_steps=2000
  python -m experiments.benchmarks.quality --datasets=shapes    # segmentation section

Uses experiments/configs/{mnist1d,digits,shapes}_protocol.py (optionally with other step
budgets). Each dataset's full report (per-seed numbers, selection, config, figure) stays in
`<workdir>/<dataset>/results.md`; this script copies the tables into section `quality` of
experiments/RESULTS.md (or `--results`), and the segmentation ones into `quality_segmentation`.
"""
from __future__ import annotations

import argparse
import importlib
import os
import tempfile
import time

import jax

from experiments.benchmarks import common
from spg_jax import protocol
from spg_jax import report

SECTION = "quality"
SEGMENTATION_SECTION = "quality_segmentation"
CONFIGS = {"mnist1d": "experiments.configs.mnist1d_protocol",
           "digits": "experiments.configs.digits_protocol",
           "shapes": "experiments.configs.shapes_protocol"}
SEGMENTATION = ("shapes",)
# Published test accuracy of the base model (Greydanus 2020, "Scaling down deep learning",
# MNIST-1D CNN); digits has no published number for this CNN.
PUBLISHED = {"mnist1d": ("MNIST-1D paper's CNN", 0.94)}


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--datasets", default="mnist1d,digits",
                 help=f"comma-separated from {sorted(CONFIGS)}; segmentation ones "
                 f"({', '.join(SEGMENTATION)}) go to their own section, alone")
  p.add_argument("--arms", default="", help="comma-separated arms to keep (the reference "
                 "among them); default: all of the config's")
  common.add_protocol_args(p)
  return p.parse_args(argv)


def dataset_config(name: str, args):
  config = importlib.import_module(CONFIGS[name]).get_config("quick" if args.quick else None)
  p = config.protocol
  if args.seeds:
    p.seeds = tuple(int(s) for s in args.seeds.split(","))
  if args.arms:
    keep = args.arms.split(",")
    with config.unlocked():
      for arm in [a for a in p.arms if a not in keep]:
        del p.arms[arm]
  if args.base_steps:
    p.base.num_steps = args.base_steps
    p.base.eval_every_steps = max(args.base_steps // 4, 1)
  if args.retrain_steps:
    p.retrain.num_steps = args.retrain_steps
    # Keep the number of selection points (validations) of the config.
    points = max(config.protocol.retrain.num_steps // p.retrain.eval_every_steps, 1)
    p.retrain.eval_every_steps = max(args.retrain_steps // points, 1)
    p.retrain.log_every_steps = p.retrain.eval_every_steps
  return config


def section_for(name: str, config, result) -> str:
  p = config.protocol
  lines = [f"### {name}: `{config.model.name}`, {len(result.seeds)} seeds",
           "",
           f"Base: {p.base.num_steps} steps from scratch (lr {p.base.optimizer.learning_rate}"
           f"); every arm retrains it for {p.retrain.num_steps} steps (lr "
           f"{p.retrain.optimizer.learning_rate}), checkpoint chosen on validation every "
           f"{p.retrain.eval_every_steps} steps, test evaluated once. Paired differences "
           f"of test {result.metric.name} against `{result.reference}` in "
           f"{'percentage points' if result.metric.percent else 'absolute units'} with a "
           f"{100 * result.confidence:g}% t interval.",
           "",
           result.table(),
           report.summary_sentence(result.scores, result.reference, result.confidence,
                                   result.metric),
           ""]
  if name in PUBLISHED:
    label, acc = PUBLISHED[name]
    mean, std, _ = report.summarize(result.scores[protocol.BASE_ARM])
    lines.append(f"Reference: {label}, published test accuracy {100 * acc:.0f}%; our base "
                 f"model: {100 * mean:.2f} ± {100 * std:.2f}%.")
    lines.append("")
  lines.append(f"Protocol wall time {result.wall_time_s:.0f} s (compilation included).")
  return "\n".join(lines) + "\n"


def main(argv=None) -> str:
  args = parse_args(argv)
  names = common.dataset_names(args.datasets, CONFIGS)
  segmentation = [n for n in names if n in SEGMENTATION]
  if segmentation and len(segmentation) != len(names):
    raise SystemExit(f"error: --datasets={args.datasets}: run segmentation ({segmentation}) "
                     f"and classification datasets separately (different sections)")
  workdir = args.workdir or tempfile.mkdtemp(prefix="spg_quality_")
  device = jax.devices()[0]
  print(f"device: {device.platform} ({device.device_kind}); workdir {workdir}", flush=True)
  parts = []
  for name in names:
    config = dataset_config(name, args)
    start = time.time()
    result = protocol.run_protocol(config, os.path.join(workdir, name),
                                   log=lambda line: print(line, flush=True))
    print(f"{name}: {time.time() - start:.0f} s", flush=True)
    parts.append(section_for(name, config, result))
  if segmentation:
    return common.publish(SEGMENTATION_SECTION, [
        "## 4b. Quality on semantic segmentation: the retraining protocol per pixel",
        "",
        "The same protocol with the segmentation task: `fcn_small` (main and auxiliary head, "
        "loss out + 0.5 aux) on the synthetic `shapes` scenes; SPG acts per pixel on both "
        "heads; checkpoints are selected on validation mIoU and the test mIoU is reported. "
        "The base is trained for a CPU budget and is far from converged: compare the arms "
        "with the control (same budget from the same checkpoint).",
        "",
        *parts,
    ], args.results)
  return common.publish(SECTION, [
      "## 4. Quality: the retraining protocol (base, control, SPG-HPO, SPG-NAS)",
      "",
      "`spg_jax.protocol.run_protocol` per seed: train the base from scratch, retrain its "
      "best-on-validation checkpoint with the same budget as continued training (`control`),"
      " SPG-HPO and SPG-NAS; test accuracy of the validation-selected checkpoint. "
      "Small data sets on CPU: read the intervals, not the means alone.",
      "",
      *parts,
  ], args.results)


if __name__ == "__main__":
  main()
