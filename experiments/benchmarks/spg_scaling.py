"""How SPG's step cost grows with the number of replicas T and with the head's input width,
against the FLOPs XLA counts.

  python -m experiments.benchmarks.spg_scaling            # MNIST-1D timings + ResNet-18 FLOPs
  python -m experiments.benchmarks.spg_scaling --quick    # tests: T = 0..2, one width

For the published MNIST-1D CNN (head input 125) and `cnn1d_mnist1d_wide` at head widths
`--widths`: the trainer's jitted step at T = 0..`--max_replicas`, all T of one model
interleaved (`common.interleaved`), with XLA's `cost_analysis()` FLOPs of each compiled
step. ResNet-18 (CIFAR stem, head input 512, batch 128): FLOPs only at the same T (compile
only; the CPU step time is in the side-by-side section). Each HPO replica adds a D x D Linear
and one more D x C head evaluation per example (D: head input width), whatever the backbone
costs, so the SPG / plain ratio is about 1 + T (D^2 + D C) / (backbone FLOPs per example).
Writes its section `spg_scaling` of experiments/RESULTS.md (or `--results`).
"""
from __future__ import annotations

import argparse
import os

import jax
import numpy as np

from experiments.benchmarks import common
from experiments.benchmarks import cpu_profile
from spg_jax import sharding

SECTION = "spg_scaling"


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--max_replicas", type=int, default=8)
  p.add_argument("--widths", default="32,128,512,2048", help="cnn1d_mnist1d_wide head widths")
  p.add_argument("--batch_size", type=int, default=128)
  p.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
  p.add_argument("--iters", type=int, default=10, help="calls per round")
  p.add_argument("--options", default="eigen", choices=sorted(cpu_profile.OPTION_SETS),
                 help="XLA compiler option set (cpu_profile.OPTION_SETS)")
  p.add_argument("--resnet", default="yes", choices=("yes", "no"),
                 help="ResNet-18 FLOPs rows (compiles 1 + max_replicas steps)")
  p.add_argument("--quick", action="store_true", help="T = 0..2 at most, one width, batch 8 (tests)")
  p.add_argument("--results", default=common.RESULTS_PATH)
  args = p.parse_args(argv)
  if args.max_replicas < 1:
    raise SystemExit(f"error: --max_replicas={args.max_replicas}: must be >= 1")
  try:
    args.width_list = [int(w) for w in args.widths.split(",") if w]
  except ValueError:
    args.width_list = []
  if not args.width_list or min(args.width_list) < 1:
    raise SystemExit(f"error: --widths={args.widths}: must be comma-separated positive "
                     "integers")
  if args.quick:
    args.max_replicas, args.width_list = min(args.max_replicas, 2), args.width_list[:1]
    args.batch_size = 8
    args.repeats, args.iters, args.resnet = 2, 1, "no"
  return args


def _compiled_step(model: str, t: int, batch_size: int, width: int | None, mesh, batch,
                   options: dict):
  """(compiled trainer step, fresh state) of `model` at T = t (width: the wide CNN's)."""
  config = common.variant_config(model, t, "hpo", batch_size)
  if width is not None:
    config.model.name = "cnn1d_mnist1d_wide"
    config.model.kwargs.features = width
  engine = common.build_engine(model, config, mesh)
  state = common.initial_state(engine, config)
  compiled = engine.train_step.lower(state, batch, jax.random.key(0)).compile(options or None)
  return compiled, state


def mnist1d_rows(args, mesh, options: dict) -> list[list]:
  batch = common.random_batch("cnn1d_mnist1d", args.batch_size, mesh)
  key = jax.random.key(0)
  ts = list(range(args.max_replicas + 1))
  rows = []
  for width in [None] + args.width_list:
    runners, flops = {}, {}
    for t in ts:
      compiled, state = _compiled_step("cnn1d_mnist1d", t, args.batch_size, width, mesh,
                                       batch, options)
      flops[t] = common.flops_of(compiled)
      holder = {"state": state}

      def run(compiled=compiled, holder=holder):
        holder["state"], metrics = compiled(holder["state"], batch, key)
        return metrics["loss"]
      runners[t] = run
    times = common.interleaved(runners, args.repeats, args.iters)
    name = "CNN1D (published, D = 125)" if width is None else f"CNN1DWide (D = {width})"
    for t in ts:
      ratio, low, high = common.ratio_stats(times, 0, t)
      rows.append([name, t, f"{1e3 * float(np.median(times[t])):.2f}",
                   f"{ratio:.2f} ({low:.2f}-{high:.2f})", f"{flops[t] / 1e6:.2f}",
                   f"{flops[t] / flops[0]:.3f}"])
    print(f"scaling: {name} done", flush=True)
  return rows


def resnet_rows(args, mesh, options: dict) -> list[list]:
  batch = common.random_batch("resnet18_cifar", 128, mesh)
  rows, base = [], None
  for t in range(args.max_replicas + 1):
    compiled, _ = _compiled_step("resnet18_cifar", t, 128, None, mesh, batch, options)
    f = common.flops_of(compiled)
    base = base or f
    rows.append(["ResNet-18 CIFAR (D = 512, batch 128), FLOPs only", t, "-", "-",
                 f"{f / 1e6:.0f}", f"{f / base:.4f}"])
  return rows


def main(argv=None) -> str:
  args = parse_args(argv)
  options = cpu_profile.OPTION_SETS[args.options]
  load = " ".join(f"{x:.2f}" for x in os.getloadavg())
  mesh = sharding.make_mesh(1)
  rows = mnist1d_rows(args, mesh, options)
  if args.resnet == "yes":
    rows += resnet_rows(args, mesh, options)
  return common.publish(SECTION, [
      "## SPG's cost against T and the head's input width",
      "",
      f"The trainer's jitted step (SGD, fp32), MNIST-1D batch {args.batch_size}, compiled "
      f"with the `{args.options}` XLA option set (`{options or '(none)'}`, see the CPU "
      f"profile section); all T of one model interleaved in {args.repeats} rounds of "
      f"{args.iters} calls; `step / plain`: ratio of medians (range of per-round ratios). "
      "`XLA MFLOP`: `cost_analysis()` of the compiled step. Each HPO replica adds a D x D "
      "Linear and one more D x C head evaluation per example (D: the head's input width), "
      "a fixed cost whatever the backbone costs.",
      "",
      common.markdown_table(["model", "T", "step ms", "step / plain (min-max)", "XLA MFLOP",
                             "FLOP / plain"], rows),
      "",
      f"- Versions: jax {jax.__version__}; load average before the run {load}, after "
      f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
  ], args.results)


if __name__ == "__main__":
  main()
