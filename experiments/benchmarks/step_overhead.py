"""Step overhead: the trainer's jitted SPG train step (T = 1, 3, 6) against the same model's
plain train step, on the same batch, in one process, interleaved.

  python -m experiments.benchmarks.step_overhead            # CPU: ResNet-18 CIFAR, MNIST-1D CNN
  python -m experiments.benchmarks.step_overhead --models=cnn1d_mnist1d --repeats=9

On a GPU/TPU ResNet-50 at 224x224 is added. The steps are
`spg_jax.train.engine.build_engine(...)` built from the experiment configs
(`experiments/configs/*`), i.e. exactly what `train_and_evaluate` runs (SGD, loss
normalisation, controller bookkeeping included). The profile columns explain the overhead:
XLA's FLOP count of each compiled step (from `cost_analysis()`), and the forward pass alone
timed the same way.
Writes its section `step_overhead` of experiments/RESULTS.md (or `--results`).
"""
from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np

from experiments.benchmarks import common
from spg_jax import sharding

SECTION = "step_overhead"


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--models", default="", help="comma-separated names from "
                 f"{sorted(common.MODELS)}; default: resnet18_cifar,cnn1d_mnist1d "
                 "(+ resnet50_224 on an accelerator)")
  p.add_argument("--replicas", default="1,3,6", help="SPG T values compared with T=0")
  p.add_argument("--kind", default="hpo", choices=("hpo", "nas"))
  p.add_argument("--batch_size", type=int, default=0, help="0: the config's (128; 256 "
                 "ResNet-50 is reduced to 128)")
  p.add_argument("--repeats", type=int, default=7, help="interleaved rounds")
  p.add_argument("--iters", type=int, default=0, help="calls per round (0: per model)")
  p.add_argument("--no_forward", action="store_true", help="skip the forward-only timing")
  p.add_argument("--results", default=common.RESULTS_PATH)
  return p.parse_args(argv)


def default_models() -> list[str]:
  models = ["resnet18_cifar", "cnn1d_mnist1d"]
  return models + ["resnet50_224"] if common.on_accelerator() else models


def default_iters(model: str) -> int:
  # Enough calls per round that one round takes well over a timer tick on CPU.
  return {"cnn1d_mnist1d": 50}.get(model, 2 if not common.on_accelerator() else 10)


def measure_model(model: str, replicas: list[int], args) -> list[dict]:
  """Compiles and times the plain (T=0) and SPG steps of `model`; one row per T."""
  mesh = sharding.make_mesh(1)
  batch_size = args.batch_size or min(common.variant_config(model, 0).batch_size, 128)
  batch = common.random_batch(model, batch_size, mesh)
  key = jax.random.key(0)
  rows, steps_, forwards = [], {}, {}
  for t in [0] + replicas:
    config = common.variant_config(model, t, args.kind, batch_size)
    engine = common.build_engine(model, config, mesh)
    state = common.initial_state(engine, config)
    compiled, lower_s, compile_s = common.timed_compile(engine.train_step, state, batch, key)
    holder = {"state": state}

    def run(compiled=compiled, holder=holder):
      holder["state"], metrics = compiled(holder["state"], batch, key)
      return holder["state"].params, metrics["loss"]

    steps_[t] = run
    row = {"model": model, "T": t, "batch": batch_size, "lower_s": lower_s,
           "compile_s": compile_s, "flops": common.flops_of(compiled),
           "params": common.param_count(state.params)}
    if not args.no_forward:
      # The forward pass alone (train mode: T+1 logits with SPG), as the step computes it.
      extra = {"replica_rates": state.ctrl.rates} if t else {}

      def forward(variables, x, dropout_key, model=engine.model, extra=extra):
        return model.apply(variables, x, train=True, rngs={"dropout": dropout_key},
                           mutable=["batch_stats"], **extra)

      # A copy: the train step donates (consumes) the state's buffers.
      variables = jax.tree.map(jnp.copy, state.variables())
      fwd_compiled, _, _ = common.timed_compile(jax.jit(forward), variables, batch["input"],
                                                key)
      forwards[t] = functools.partial(fwd_compiled, variables, batch["input"], key)
      row["fwd_flops"] = common.flops_of(fwd_compiled)
    rows.append(row)
    print(f"{model} T={t}: lower {lower_s:.1f} s, compile {compile_s:.1f} s, "
          f"{row['flops'] / 1e9:.3f} GFLOP/step", flush=True)
  iters = args.iters or default_iters(model)
  times = common.interleaved(steps_, args.repeats, iters)
  fwd_times = common.interleaved(forwards, args.repeats, iters) if forwards else {}
  for row in rows:
    t = row["T"]
    row["step_s"] = float(np.median(times[t]))
    row["ratio"] = common.ratio_stats(times, 0, t)
    if fwd_times:
      row["fwd_s"] = float(np.median(fwd_times[t]))
      row["fwd_ratio"] = common.ratio_stats(fwd_times, 0, t)
  return rows


def table(rows: list[dict]) -> str:
  header = ["model", "batch", "T", "params", "lower + compile s", "step ms (median)",
            "step / plain (min-max over rounds)", "XLA GFLOP / step", "FLOP ratio",
            "forward / plain"]
  out = []
  plain = {}
  for r in rows:
    if r["T"] == 0:
      plain[r["model"]] = r
    p = plain[r["model"]]
    ratio = r["ratio"]
    fwd = (f"{r['fwd_ratio'][0]:.3f}" if "fwd_ratio" in r else "-")
    out.append([r["model"], r["batch"], r["T"], f"{r['params'] / 1e6:.3f} M",
                f"{r['lower_s']:.1f} + {r['compile_s']:.1f}", common.fmt_ms(r["step_s"]),
                f"**{ratio[0]:.3f}** ({ratio[1]:.3f}-{ratio[2]:.3f})",
                f"{r['flops'] / 1e9:.3f}", f"{r['flops'] / p['flops']:.4f}", fwd])
  return common.markdown_table(header, out)


def main(argv=None) -> str:
  args = parse_args(argv)
  device = jax.devices()[0]
  print(f"device: {device.platform} ({device.device_kind})", flush=True)
  models = [m for m in args.models.split(",") if m] or default_models()
  replicas = [int(t) for t in args.replicas.split(",") if t]
  rows = []
  for model in models:
    rows += measure_model(model, replicas, args)
  return common.publish(SECTION, [
      "## 1. Step overhead: SPG train step vs the plain train step",
      "",
      f"The trainer's jitted train step (`spg_jax.train.engine.build_engine` from the "
      f"experiment configs: SGD momentum, SPG-{args.kind.upper()} (HPO: the paper's "
      f"residual-Linear replica) with "
      f"lambdas 0.4, 0.2, 0.1, ... halving) against the same model's plain step (T = 0, SPG "
      f"off) on the same fixed batch. One process; the variants run interleaved in "
      f"{args.repeats} rounds (rotated order), each round "
      f"{'per-model' if not args.iters else args.iters} calls; compile (lower + XLA compile) "
      f"excluded from the step times and listed separately. Ratio = median step time over "
      f"the plain step's median; brackets: range of the per-round ratios. "
      f"`FLOP ratio`: XLA's `cost_analysis()` FLOPs of the compiled SPG step over the plain "
      f"step's. `forward / plain`: the model's train-mode forward alone, timed the same way.",
      "",
      table(rows),
  ], args.results)


if __name__ == "__main__":
  main()
