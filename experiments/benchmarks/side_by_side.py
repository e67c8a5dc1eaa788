"""spg_jax against the PyTorch formulation of SPG: the same steps, interleaved, one process.

  python -m experiments.benchmarks.side_by_side                 # both (torch when installed)
  python -m experiments.benchmarks.side_by_side --frameworks=jax --quick   # tests: JAX only

For each case (ResNet-18 with the CIFAR stem at batch 32 and 128, the MNIST-1D CNN at 128):
the plain train step (T = 0) and the SPG-HPO step at T = 1, 3, 6 (batch 128 ResNet: 3), as
forward (train mode,
no gradient) and as the whole step (forward + backward + SGD-momentum update), fp32.
JAX: the trainer's jitted step from the experiment configs (`common.build_engine`),
compiled under each `--jax_options` set of XLA compiler options (`cpu_profile.OPTION_SETS`:
`default` is what the installed jaxlib picks, `ynn_reduce` the `spg_jax.xla_cpu` options);
PyTorch: `experiments.benchmarks.torch_spg` (replicas after the pooled features, shared
head, masked loss) with the same SGD settings, `torch.set_num_threads(--threads)`. All the
variants of a case run in the same rounds (rotated order, `common.interleaved`), so the
JAX / PyTorch ratios and the SPG / plain ratios are taken under the same load. The loss
parity of the two formulations is checked once on random logits.
Writes its section `side_by_side` of experiments/RESULTS.md (or `--results`).
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.benchmarks import common
from experiments.benchmarks import cpu_profile
from spg_jax import sharding

SECTION = "side_by_side"
FRAMEWORKS = ("jax", "torch")
# (model, batch, replica counts or None: `--replicas`); batch 128 ResNet-18 at T = 3 only,
# to keep one run near 15 minutes on 2 cores.
CASES = (("resnet18_cifar", 32, None), ("resnet18_cifar", 128, (3,)),
         ("cnn1d_mnist1d", 128, None))
PASSES = ("fwd", "step")


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--cases", default="", help="comma-separated model:batch[:T+T...], "
                 f"models from {sorted(common.MODELS)}; default: " + ",".join(
                     f"{m}:{b}" + (":" + "+".join(map(str, ts)) if ts else "")
                     for m, b, ts in CASES))
  p.add_argument("--replicas", default="1,3,6", help="SPG T values compared with T=0")
  p.add_argument("--frameworks", default="auto",
                 help="jax, torch or jax,torch; auto: torch too when it is installed")
  p.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
  p.add_argument("--jax_options", default="default,ynn_reduce",
                 help="XLA compiler option sets the JAX side runs under, a comma-separated "
                 f"subset of {sorted(cpu_profile.OPTION_SETS)} (cpu_profile.OPTION_SETS)")
  p.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
  p.add_argument("--iters", type=int, default=0, help="calls per round (0: per model)")
  p.add_argument("--quick", action="store_true", help="MNIST-1D CNN, batch 8, T=1, 2 "
                 "rounds of 1 call (tests)")
  p.add_argument("--results", default=common.RESULTS_PATH)
  args = p.parse_args(argv)
  if args.quick:
    args.cases, args.replicas, args.repeats, args.iters = "cnn1d_mnist1d:8", "1", 2, 1
  args.case_list = parse_cases(args.cases)
  args.framework_list = parse_frameworks(args.frameworks)
  args.jax_option_list = [o for o in args.jax_options.split(",") if o]
  if not args.jax_option_list or any(o not in cpu_profile.OPTION_SETS
                                     for o in args.jax_option_list):
    raise SystemExit(f"error: --jax_options={args.jax_options}: must be a comma-separated "
                     f"subset of {sorted(cpu_profile.OPTION_SETS)}")
  args.variant_list = [f"jax:{o}" for o in args.jax_option_list
                       if "jax" in args.framework_list]
  args.variant_list += ["torch"] if "torch" in args.framework_list else []
  return args


def parse_cases(spec: str) -> list[tuple[str, int, tuple[int, ...] | None]]:
  """`--cases=model:batch[:T+T...],...` as (model, batch, replicas or None: `--replicas`)
  (default `CASES`); exits with a one-line error."""
  if not spec:
    return list(CASES)
  cases = []
  for item in spec.split(","):
    model, _, rest = item.partition(":")
    batch, _, ts = rest.partition(":")
    valid_ts = all(t.isdigit() and int(t) > 0 for t in ts.split("+")) if ts else True
    if model not in common.MODELS or not batch.isdigit() or int(batch) < 1 or not valid_ts:
      raise SystemExit(f"error: --cases={spec}: {item!r} must be model:batch[:T+T...] with "
                       f"model in {sorted(common.MODELS)}, batch a positive integer and "
                       "the optional replica counts positive")
    cases.append((model, int(batch), tuple(int(t) for t in ts.split("+")) if ts else None))
  return cases


def parse_frameworks(spec: str) -> list[str]:
  if spec == "auto":
    return ["jax", "torch"] if importlib.util.find_spec("torch") else ["jax"]
  names = [f for f in spec.split(",") if f]
  if not names or any(f not in FRAMEWORKS for f in names):
    raise SystemExit(f"error: --frameworks={spec}: must be 'auto' or a comma-separated "
                     f"subset of {list(FRAMEWORKS)}")
  return names


def default_iters(model: str) -> int:
  return {"cnn1d_mnist1d": 20}.get(model, 1)


# ------------------------------------------------------------------------- JAX side
def jax_runners(model: str, batch_size: int, t: int, options: dict) -> tuple[dict, dict]:
  """{"fwd": runner, "step": runner} of the trainer's step at T = t compiled with XLA
  compiler `options`, and facts (FLOPs, params, compile seconds)."""
  mesh = sharding.make_mesh(1)
  batch = common.random_batch(model, batch_size, mesh)
  key = jax.random.key(0)
  config = common.variant_config(model, t, "hpo", batch_size)
  engine = common.build_engine(model, config, mesh)
  state = common.initial_state(engine, config)
  extra = {"replica_rates": state.ctrl.rates} if t else {}

  def forward(variables, x, dropout_key):
    return engine.model.apply(variables, x, train=True, rngs={"dropout": dropout_key},
                              mutable=["batch_stats"], **extra)

  variables = jax.tree.map(jnp.copy, state.variables())  # the step donates the state
  fwd = jax.jit(forward).lower(variables, batch["input"], key).compile(options or None)
  start = os.times().elapsed
  step = engine.train_step.lower(state, batch, key).compile(options or None)
  compile_s = os.times().elapsed - start
  holder = {"state": state}

  def run_step():
    holder["state"], metrics = step(holder["state"], batch, key)
    return metrics["loss"]

  facts = {"flops": common.flops_of(step), "fwd_flops": common.flops_of(fwd),
           "params": common.param_count(state.params), "compile_s": compile_s}
  return {"fwd": functools.partial(fwd, variables, batch["input"], key),
          "step": run_step}, facts


# ------------------------------------------------------------------------- PyTorch side
def torch_runners(model: str, batch_size: int, t: int) -> tuple[dict, dict]:
  """{"fwd": runner, "step": runner} of torch_spg's network at T = t with the experiment
  config's SGD settings, and facts (params)."""
  from experiments.benchmarks import torch_spg  # pylint: disable=import-outside-toplevel
  torch = torch_spg.require_torch()
  config = common.variant_config(model, t, "hpo", batch_size)
  _, input_shape, classes = common.MODELS[model]
  torch.manual_seed(0)
  if model == "resnet18_cifar":
    features, head = torch_spg.resnet18_cifar(classes)
  elif model == "cnn1d_mnist1d":
    features, head = torch_spg.cnn1d(classes, length=input_shape[0])
  else:
    raise ValueError(f"model={model!r}: no PyTorch twin (have resnet18_cifar, cnn1d_mnist1d)")
  net = torch_spg.make_spg_net(features, head, head.in_features, t, float(config.spg.rate),
                               bool(config.spg.use_relu))
  net.train()
  opt = torch.optim.SGD(net.parameters(), lr=config.optimizer.learning_rate,
                        momentum=config.optimizer.momentum,
                        weight_decay=config.optimizer.weight_decay)
  rng = np.random.default_rng(0)
  x = rng.standard_normal((batch_size,) + input_shape).astype(np.float32)
  x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))  # channels first
  y = torch.from_numpy(rng.integers(0, classes, batch_size))
  lambdas = tuple(config.spg.lambdas) if t else ()

  def run_step():
    opt.zero_grad(set_to_none=True)
    loss = torch_spg.masked_loss(net(x), y, lambdas)[0]
    loss.backward()
    opt.step()

  def run_fwd():
    with torch.no_grad():
      net(x)

  params = sum(p.numel() for p in net.parameters())
  return {"fwd": run_fwd, "step": run_step}, {"params": params}


# ------------------------------------------------------------------------- measuring
def variant_name(variant: str) -> str:
  """"jax:eigen" -> "JAX eigen", "torch" -> "PyTorch"."""
  return "PyTorch" if variant == "torch" else "JAX " + variant.split(":", 1)[1]


def measure_case(model: str, batch_size: int, replicas: list[int], variants: list[str],
                 args) -> list[dict]:
  """One row per (T, pass): median seconds per variant ("jax:<options>" or "torch"), each
  variant's SPG / plain ratio and every JAX variant's ratio to PyTorch."""
  runners, facts = {}, {}
  for t in [0] + replicas:
    for v in variants:
      if v == "torch":
        runs, facts[v, t] = torch_runners(model, batch_size, t)
      else:
        runs, facts[v, t] = jax_runners(model, batch_size, t,
                                        cpu_profile.OPTION_SETS[v.split(":", 1)[1]])
      for pass_, run in runs.items():
        runners[v, pass_, t] = run
    print(f"{model} b{batch_size} T={t}: built {variants}", flush=True)
  iters = args.iters or default_iters(model)
  times = {}
  for pass_ in PASSES:  # forwards in one set of rounds, steps in another
    subset = {k: v for k, v in runners.items() if k[1] == pass_}
    times.update(common.interleaved(subset, args.repeats, iters))
  jax_variants = [v for v in variants if v != "torch"]
  rows = []
  for t in [0] + replicas:
    for pass_ in PASSES:
      row = {"model": model, "batch": batch_size, "T": t, "pass": pass_,
             "flops": facts[jax_variants[0], t]["fwd_flops" if pass_ == "fwd" else "flops"]
             if jax_variants else float("nan")}
      for v in variants:
        row[v, "s"] = float(np.median(times[v, pass_, t]))
        row[v, "spg"] = common.ratio_stats(times, (v, pass_, 0), (v, pass_, t))
        row[v, "params"] = facts[v, t]["params"]
        if v != "torch" and "torch" in variants:
          row[v, "over_torch"] = common.ratio_stats(times, ("torch", pass_, t),
                                                    (v, pass_, t))
      rows.append(row)
  return rows


def table(rows: list[dict], variants: list[str]) -> str:
  jax_variants = [v for v in variants if v != "torch"]
  versus = jax_variants if "torch" in variants else []
  header = ["model", "batch", "T", "pass"]
  header += [f"{variant_name(v)} ms" for v in variants]
  header += [f"{variant_name(v)} / PyTorch (min-max)" for v in versus]
  header += [f"{variant_name(v)} SPG / plain" for v in variants]
  shown = jax_variants[:1] + (["torch"] if "torch" in variants else [])  # params per framework
  header += ["XLA GFLOP", "params (M) " + " / ".join("JAX" if v != "torch" else "PyTorch"
                                                     for v in shown)]
  out = []
  for r in rows:
    cells = [r["model"], r["batch"], r["T"], "forward" if r["pass"] == "fwd" else "step"]
    cells += [common.fmt_ms(r[v, "s"]) for v in variants]
    for v in versus:
      q = r[v, "over_torch"]
      cells.append(f"**{q[0]:.2f}** ({q[1]:.2f}-{q[2]:.2f})")
    cells += [f"{r[v, 'spg'][0]:.3f}" for v in variants]
    cells += [f"{r['flops'] / 1e9:.3f}",
              " / ".join(f"{r[v, 'params'] / 1e6:.3f}" for v in shown)]
    out.append(cells)
  return common.markdown_table(header, out)


def versions(frameworks: list[str], threads: int) -> str:
  parts = [f"jax {jax.__version__}"]
  if "torch" in frameworks:
    import torch  # pylint: disable=import-outside-toplevel
    import torchvision  # pylint: disable=import-outside-toplevel
    parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
                 f"torchvision {torchvision.__version__}")
  xla_flags = os.environ.get("XLA_FLAGS", "")
  return ("Versions: " + "; ".join(parts) + f"; XLA_FLAGS=`{xla_flags or '(none)'}`; "
          f"PyTorch threads requested {threads}")


def main(argv=None) -> str:
  args = parse_args(argv)
  started = time.perf_counter()
  frameworks = args.framework_list
  replicas = [int(t) for t in args.replicas.split(",") if t]
  load = open("/proc/loadavg", encoding="utf-8").read().split()[:3] \
      if os.path.exists("/proc/loadavg") else ["?"]
  parity = None
  if "torch" in frameworks:
    from experiments.benchmarks import torch_spg  # pylint: disable=import-outside-toplevel
    torch_spg.require_torch().set_num_threads(args.threads)
    parity = torch_spg.loss_parity()
  rows = []
  for model, batch_size, case_replicas in args.case_list:
    rows += measure_case(model, batch_size, list(case_replicas or replicas),
                         args.variant_list, args)
  parity_line = ("Loss parity (torch_spg.masked_loss vs spg_jax.losses.spg_loss, random "
                 f"logits [64, 4, 10], total, base and replica terms): max |diff| = "
                 f"{parity:.2e}." if parity is not None else
                 "PyTorch side not run (torch not installed or not requested).")
  return common.publish(SECTION, [
      "## Side by side: spg_jax and the PyTorch formulation of SPG",
      "",
      "The same work in both frameworks, in one process: the plain train step (T = 0) and "
      "the SPG-HPO step (the paper's residual-Linear replica after the pooled features, "
      "shared head, masked loss, lambdas 0.4, 0.2, 0.1, ... halving, dropout 0.2), fp32, "
      "SGD with the experiment config's momentum and weight decay. `forward`: the train-mode "
      "forward without gradient; `step`: forward + backward + update. JAX: the trainer's "
      "jitted step (it also computes the health flags and controller statistics), compiled "
      "with each XLA option set: "
      + "; ".join(f"`{o}` = `{cpu_profile.OPTION_SETS[o] or '(none)'}`"
                  for o in args.jax_option_list)
      + " (`default`: the installed jaxlib's choice, YNNPACK convolutions; `ynn_reduce`: "
      "`spg_jax.xla_cpu.CPU_OPTIONS`, XLA's own Eigen convolutions; see the CPU profile "
      "section). PyTorch: "
      "`experiments/benchmarks/torch_spg.py`, eager. All variants of a case run interleaved "
      f"in {args.repeats} rounds (rotated order); medians after one warm-up call. "
      "`JAX ... / PyTorch`: ratio of the medians (brackets: range of per-round ratios); "
      "`SPG / plain`: each framework's SPG step over its own plain step.",
      "",
      parity_line,
      "",
      table(rows, args.variant_list),
      "",
      f"- {versions(frameworks, args.threads)}; load average (1, 5, 15 min) before the run "
      f"{' '.join(load)}, after {' '.join(f'{x:.2f}' for x in os.getloadavg())}; the whole "
      f"run took {(time.perf_counter() - started) / 60:.1f} min",
  ], args.results)


if __name__ == "__main__":
  main()
