"""Single pass vs conventional trajectory generation.

SPG gets the T+1 predictions of a trajectory from ONE apply (`SPGModel`: one base forward,
then T small replicas and T head evaluations). The conventional alternative generates each
step with its own forward pass of the whole base network, step t at the cumulative dropout
rate `spg_jax.cumulative_dropout_rates(rates)[t-1]` on the head input (which is what replica
t sees at initialisation). Both are timed forward only and forward + backward (gradient of
the same SPG loss), interleaved in one process.

  python -m experiments.benchmarks.single_vs_multipass
  python -m experiments.benchmarks.single_vs_multipass --models=cnn1d_mnist1d --replicas=3

The T+1 passes run inside one jitted function, each on its own copy of the input buffer, so
XLA cannot merge the identical base computations (common-subexpression elimination would
otherwise fold them into one and hide the cost the conventional method pays).
Target (issue #6): speed-up >= 0.8 (T+1). Writes section `single_vs_multipass` of
experiments/RESULTS.md (or `--results`).
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import spg_jax
from experiments.benchmarks import common
from spg_jax import models
from spg_jax import sharding

SECTION = "single_vs_multipass"


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--models", default="resnet18_cifar,cnn1d_mnist1d",
                 help=f"comma-separated names from {sorted(common.MODELS)}")
  p.add_argument("--replicas", default="1,3,6")
  p.add_argument("--batch_size", type=int, default=0,
                 help="0: 32 on CPU (the ratio hardly depends on it), 128 on an accelerator")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--iters", type=int, default=0, help="calls per round (0: per model)")
  p.add_argument("--results", default=common.RESULTS_PATH)
  return p.parse_args(argv)


def make_functions(engine, lambdas):
  """(single_fwd, multi_fwd, single_grad, multi_grad) for the SPG `engine`'s model."""
  model, base = engine.model, engine.base_model
  attach = models.spg_attachment(base, "hpo")
  head, head_path = attach.head, attach.head_path
  cumulative = spg_jax.cumulative_dropout_rates(engine.spec.rates)

  def single(variables, x, key):
    (logits, _), _ = model.apply(variables, x, train=True, rngs={"dropout": key},
                                 mutable=["batch_stats"])
    return logits  # [B, T+1, C]

  def multi(base_variables, xs, key):
    steps = []
    for t, x in enumerate(xs):  # one whole forward pass of the base per step
      (logits, aux), _ = base.apply(base_variables, x, train=True,
                                    rngs={"dropout": jax.random.fold_in(key, 1000 + t)},
                                    mutable=["batch_stats"])
      if t:
        h = aux[attach.feature_key]
        keep = jax.random.bernoulli(jax.random.fold_in(key, t), 1.0 - cumulative[t - 1],
                                    h.shape)
        h = jnp.where(keep, h / (1.0 - cumulative[t - 1]), 0.0)
        logits = spg_jax.apply_shared_head(
            head, spg_jax.head_variables(base_variables, head_path), h)
      steps.append(logits)
    return jnp.stack(steps, axis=1)

  def loss_of(forward):
    def loss(params, other, inputs, labels, key):
      logits = forward({"params": params, **other}, inputs, key)
      return spg_jax.classification_spg_loss(logits, labels, lambdas, "masked", 0.0,
                                             normalize=True)[0]
    return jax.jit(jax.value_and_grad(loss))

  return jax.jit(single), jax.jit(multi), loss_of(single), loss_of(multi)


def measure(model: str, t: int, args) -> dict:
  mesh = sharding.make_mesh(1)
  batch_size = args.batch_size or (128 if common.on_accelerator() else 32)
  config = common.variant_config(model, t, "hpo", batch_size)
  engine = common.build_engine(model, config, mesh)
  variables = engine.init(jax.random.key(0))
  base_variables = spg_jax.strip_replicas(variables)
  batch = common.random_batch(model, batch_size, mesh)
  x, labels, key = batch["input"], batch["label"], jax.random.key(1)
  xs = tuple(jnp.copy(x) for _ in range(t + 1))  # distinct buffers: no CSE across passes
  single_fwd, multi_fwd, single_grad, multi_grad = make_functions(
      engine, common.lambdas_for(t))

  def others(v):
    return {k: c for k, c in v.items() if k != "params"}

  calls = {
      "single fwd": (single_fwd, (variables, x, key)),
      "multi fwd": (multi_fwd, (base_variables, xs, key)),
      "single fwd+bwd": (single_grad, (variables["params"], others(variables), x, labels,
                                       key)),
      "multi fwd+bwd": (multi_grad, (base_variables["params"], others(base_variables), xs,
                                     labels, key)),
  }
  runners, row = {}, {"model": model, "T": t, "batch": batch_size}
  for name, (fn, fn_args) in calls.items():
    compiled, lower_s, compile_s = common.timed_compile(fn, *fn_args)
    runners[name] = lambda compiled=compiled, fn_args=fn_args: compiled(*fn_args)
    row[f"{name} flops"] = common.flops_of(compiled)
    row[f"{name} compile"] = lower_s + compile_s
  iters = args.iters or {"cnn1d_mnist1d": 30}.get(model, 1)
  times = common.interleaved(runners, args.repeats, iters)
  for name in calls:
    row[name] = float(np.median(times[name]))
  for kind in ("fwd", "fwd+bwd"):
    row[f"speedup {kind}"] = common.ratio_stats(times, f"single {kind}", f"multi {kind}")
  print(f"{model} T={t}: speed-up fwd {row['speedup fwd'][0]:.2f}, fwd+bwd "
        f"{row['speedup fwd+bwd'][0]:.2f}", flush=True)
  return row


def table(rows) -> str:
  header = ["model", "batch", "T", "target 0.8(T+1)", "fwd: single / T+1 passes ms",
            "fwd speed-up (min-max)", "fwd FLOP ratio", "fwd+bwd: single / T+1 passes ms",
            "fwd+bwd speed-up (min-max)", "fwd+bwd FLOP ratio", "meets target"]
  out = []
  for r in rows:
    sf, sb = r["speedup fwd"], r["speedup fwd+bwd"]
    target = 0.8 * (r["T"] + 1)
    out.append([
        r["model"], r["batch"], r["T"], f"{target:.1f}",
        f"{common.fmt_ms(r['single fwd'])} / {common.fmt_ms(r['multi fwd'])}",
        f"**{sf[0]:.2f}x** ({sf[1]:.2f}-{sf[2]:.2f})",
        f"{r['multi fwd flops'] / r['single fwd flops']:.2f}",
        f"{common.fmt_ms(r['single fwd+bwd'])} / {common.fmt_ms(r['multi fwd+bwd'])}",
        f"**{sb[0]:.2f}x** ({sb[1]:.2f}-{sb[2]:.2f})",
        f"{r['multi fwd+bwd flops'] / r['single fwd+bwd flops']:.2f}",
        "yes" if min(sf[0], sb[0]) >= target else "no"])
  return common.markdown_table(header, out)


def main(argv=None) -> str:
  args = parse_args(argv)
  device = jax.devices()[0]
  print(f"device: {device.platform} ({device.device_kind})", flush=True)
  rows = [measure(m, int(t), args) for m in args.models.split(",") if m
          for t in args.replicas.split(",") if t]
  return common.publish(SECTION, [
      "## 2. Single pass vs conventional trajectory generation",
      "",
      "Time to produce a T+1-step trajectory: SPG's single apply (`SPGModel`, one base "
      "forward + T replicas and head evaluations) against T+1 whole forward passes of the "
      "base network, step t at the cumulative dropout rate "
      "`spg_jax.cumulative_dropout_rates` on the head input (the replica's view at "
      "initialisation); forward only, and forward + backward of the same SPG loss (masked, "
      "normalised). Speed-up = median time of the T+1 passes / median time of the single "
      f"pass, interleaved over {args.repeats} rounds; brackets: per-round range. FLOP ratio: "
      "XLA `cost_analysis()` of the two compiled functions. The T+1 passes run in one jitted "
      "function on separate input buffers (so XLA cannot merge them); on CPU they run one "
      "after another, as a conventional loop would.",
      "",
      table(rows),
  ], args.results)


if __name__ == "__main__":
  main()
