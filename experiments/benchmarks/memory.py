"""Memory: parameters, optimizer state and XLA's memory plan of the train step, with and
without SPG replicas. Nothing is executed: shapes come from `jax.eval_shape` and sizes from
the compiled step's `memory_analysis()`, so ResNet-50 at 224x224 is measured on any machine.

  python -m experiments.benchmarks.memory
  python -m experiments.benchmarks.memory --models=cnn1d_mnist1d --replicas=3

Writes section `memory` of experiments/RESULTS.md (or `--results`).
"""
from __future__ import annotations

import argparse

import jax

from experiments.benchmarks import common
from spg_jax import sharding

SECTION = "memory"


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--models", default="resnet18_cifar,resnet50_224,cnn1d_mnist1d",
                 help=f"comma-separated names from {sorted(common.MODELS)}")
  p.add_argument("--replicas", default="3", help="SPG T values compared with T=0")
  p.add_argument("--kinds", default="hpo,hpo_relu,nas",
                 help=f"SPG replica kinds from {list(common.REPLICA_KINDS)} (hpo_relu: the "
                 f"authors' ReLU replica, pure dropout without parameters)")
  p.add_argument("--batch_size", type=int, default=0, help="0: the config's")
  p.add_argument("--results", default=common.RESULTS_PATH)
  return p.parse_args(argv)


def measure(model: str, t: int, kind: str, batch_size: int) -> dict:
  """Sizes of one variant, from abstract shapes only."""
  mesh = sharding.make_mesh(1)
  config = common.variant_config(model, t, kind, batch_size or None)
  engine = common.build_engine(model, config, mesh)
  state = jax.eval_shape(lambda key: common.initial_state(engine, config), 0)
  _, input_shape, _ = common.MODELS[model]
  batch = {"input": jax.ShapeDtypeStruct((config.batch_size,) + input_shape, "float32"),
           "label": jax.ShapeDtypeStruct((config.batch_size,), "int32")}
  key = jax.eval_shape(lambda: jax.random.key(0))
  compiled, _, compile_s = common.timed_compile(engine.train_step, state, batch, key)
  mem = compiled.memory_analysis()
  label = {"hpo": "SPG-HPO", "hpo_relu": "SPG-HPO (ReLU: dropout only)", "nas": "SPG-NAS"}
  row = {"model": model, "variant": f"{label[kind]} T={t}" if t else "plain",
         "batch": config.batch_size, "params": common.param_count(state.params),
         "param_bytes": common.tree_bytes(state.params),
         "opt_bytes": common.tree_bytes(state.opt_state), "compile_s": compile_s,
         "flops": common.flops_of(compiled)}
  for name in ("argument", "output", "temp", "alias", "generated_code"):
    row[name] = getattr(mem, f"{name}_size_in_bytes", float("nan")) if mem else float("nan")
  # The step donates its state, so outputs reuse argument buffers (alias); live peak is about
  # arguments + temporaries + outputs that are not aliased.
  row["peak"] = row["argument"] + row["temp"] + row["output"] - row["alias"]
  print(f"{model} {row['variant']}: {row['params']} params, peak ~"
        f"{common.fmt_bytes(row['peak'])} MiB", flush=True)
  return row


def table(rows) -> str:
  header = ["model", "batch", "variant", "params", "params vs plain", "param MiB",
            "optimizer state MiB", "arguments MiB", "temp MiB", "outputs MiB (aliased)",
            "peak est. MiB", "peak vs plain"]
  out, plain = [], {}
  for r in rows:
    if r["variant"] == "plain":
      plain[r["model"]] = r
    p = plain[r["model"]]
    out.append([r["model"], r["batch"], r["variant"], f"{r['params']:,}",
                f"{r['params'] / p['params']:.3f}x", common.fmt_bytes(r["param_bytes"]),
                common.fmt_bytes(r["opt_bytes"]), common.fmt_bytes(r["argument"]),
                common.fmt_bytes(r["temp"]),
                f"{common.fmt_bytes(r['output'])} ({common.fmt_bytes(r['alias'])})",
                common.fmt_bytes(r["peak"]), f"{r['peak'] / p['peak']:.3f}x"])
  return common.markdown_table(header, out)


def main(argv=None) -> str:
  args = parse_args(argv)
  device = jax.devices()[0]
  print(f"device: {device.platform} ({device.device_kind})", flush=True)
  rows = []
  for model in [m for m in args.models.split(",") if m]:
    rows.append(measure(model, 0, "hpo", args.batch_size))
    for kind in [k for k in args.kinds.split(",") if k]:
      for t in [int(t) for t in args.replicas.split(",") if t]:
        rows.append(measure(model, t, kind, args.batch_size))
  return common.publish(SECTION, [
      "## 3. Memory: parameters, optimizer state, XLA memory plan of the train step",
      "",
      "Abstract shapes only (`jax.eval_shape`; nothing executed), for the trainer's train "
      "step built from the experiment configs (SGD with momentum: one momentum buffer per "
      "parameter). Sizes from the compiled step's `memory_analysis()` on this backend "
      f"({device.platform}): arguments (state + batch), temporaries, outputs (of which "
      "aliased to donated arguments). `peak est.` = arguments + temp + outputs - aliased. "
      "SPG's replicas exist only during training: the deployed model (after "
      "`strip_replicas`) has exactly the plain parameter count. SPG-HPO is the paper's "
      "replica (a residual Linear per replica, which learns); the authors' replica "
      "(Linear + ReLU, `use_relu=True`) never receives a gradient, so it is built as "
      "dropout alone and adds no parameters.",
      "",
      table(rows),
  ], args.results)


if __name__ == "__main__":
  main()
