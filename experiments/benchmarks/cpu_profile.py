"""Where the XLA CPU step's time goes, and what XLA's CPU options change.

  python -m experiments.benchmarks.cpu_profile                  # both tables
  python -m experiments.benchmarks.cpu_profile --parts=options  # the trainer's steps only
  python -m experiments.benchmarks.cpu_profile --quick          # tests: tiny sizes

* `ops`: the operations ResNet-18 (CIFAR stem, batch `--batch_size`) is made of, at its four
  stage shapes: a 3x3 convolution's forward, input gradient (`dx`) and kernel gradient
  (`dw`), and BatchNorm + ReLU forward + backward. JAX (jit) runs each under every
  `OPTION_SETS` entry and layout in `--layouts` (NHWC: Flax's; NCHW: torch's), PyTorch
  (NCHW, `--threads` threads) when installed; all interleaved in one process. Times are
  multiplied by how many 3x3 stride-1 convolutions of that shape the network has, so the
  column sums say where each variant spends one step's convolution time.
* `options`: the trainer's plain and SPG-HPO (T=3) ResNet-18 steps compiled under every
  `OPTION_SETS` entry (`compile(compiler_options)`, so all run interleaved in this one
  process, under the same load), medians of rounds.
Writes its section `cpu_profile` of experiments/RESULTS.md (or `--results`).
"""
from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments.benchmarks import common
from spg_jax import sharding
from spg_jax import xla_cpu

SECTION = "cpu_profile"
PARTS = ("ops", "options")
LAYOUTS = ("NHWC", "NCHW")
# (spatial size, channels, how many 3x3 stride-1 convs of that shape ResNet-18 CIFAR has)
RESNET18_CIFAR_SHAPES = ((32, 64, 5), (16, 128, 3), (8, 256, 3), (4, 512, 3))
_YNN = "xla_cpu_experimental_ynn_fusion_type"
# name -> XLA compiler options (`DebugOptions` fields). "default": the installed jaxlib's
# choices (YNNPACK convolutions, matrix products and reductions); "eigen": no YNNPACK at
# all; "ynn_reduce": YNNPACK for reductions only (spg_jax.xla_cpu.CPU_OPTIONS);
# "ynn_dots_reduce": and for matrix products; "eigen_fast_math": eigen plus fast math
# (changes rounding).
OPTION_SETS = {
    "default": {},
    "eigen": {_YNN: ""},
    "ynn_reduce": dict(xla_cpu.CPU_OPTIONS),
    "ynn_dots_reduce": {_YNN: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"},
    "eigen_fast_math": {_YNN: "", "xla_cpu_enable_fast_math": True},
}
OPS = ("conv fwd", "conv dx", "conv dw", "BN+ReLU fwd+bwd")
# What else was looked at, stated with every run so that a reader knows what the tables do
# not cover (measurements of these are in the notes, not produced by this script).
TRIED = [
    "What the tables do and do not cover:",
    "- Compiler options: the option sets above; they are per compilation "
    "(`jax.jit(..., compiler_options=...)`), so no process-wide `XLA_FLAGS` is needed. "
    "`ynn_reduce` is `spg_jax.xla_cpu.CPU_OPTIONS`.",
    "- Layouts: NHWC (Flax's) against NCHW (torch's) in the `ops` table; not a change to "
    "the models (Flax convolutions are channels-last).",
    "- A custom kernel gradient (a `jax.custom_vjp` convolution whose kernel gradient is one "
    "matrix product per kernel offset) was prototyped and dropped: faster than YNNPACK's "
    "kernel gradient, slower than Eigen's.",
    "- Not tried: thread settings (XLA's CPU pool already uses every core), bf16 compute "
    "on CPU, `jax.checkpoint` policies.",
]


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--parts", default=",".join(PARTS), help=f"subset of {list(PARTS)}")
  p.add_argument("--batch_size", type=int, default=32)
  p.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
  p.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
  p.add_argument("--options", default="default,eigen,ynn_reduce,ynn_dots_reduce",
                 help=f"compiler option sets of `options`, subset of {list(OPTION_SETS)}")
  p.add_argument("--ops_options", default="default,eigen,ynn_reduce",
                 help="option sets of `ops`")
  p.add_argument("--layouts", default="NHWC,NCHW", help=f"JAX layouts in `ops`, of {LAYOUTS}")
  p.add_argument("--torch", default="auto", choices=("auto", "no"),
                 help="auto: PyTorch columns when torch is installed")
  p.add_argument("--quick", action="store_true", help="tiny sizes (tests)")
  p.add_argument("--results", default=common.RESULTS_PATH)
  args = p.parse_args(argv)
  for flag, value, allowed in (("parts", args.parts, PARTS),
                               ("options", args.options, tuple(OPTION_SETS)),
                               ("ops_options", args.ops_options, tuple(OPTION_SETS)),
                               ("layouts", args.layouts, LAYOUTS)):
    items = [x for x in value.split(",") if x]
    if not items or any(x not in allowed for x in items):
      raise SystemExit(f"error: --{flag}={value}: must be a comma-separated subset of "
                       f"{list(allowed)}")
    setattr(args, f"{flag}_list", items)
  if args.quick:
    args.batch_size, args.repeats = 2, 2
  return args


def _with_torch(args) -> bool:
  if args.torch == "no" or "ops" not in args.parts_list:
    return False
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    return False
  torch.set_num_threads(args.threads)
  return True


# ------------------------------------------------------------------------- ops
def _jax_ops(b: int, h: int, c: int, layout: str, options: dict) -> dict:
  """op name -> zero-argument runner of the compiled JAX op, for one shape."""
  rng = np.random.default_rng(0)
  shape = (b, h, h, c) if layout == "NHWC" else (b, c, h, h)
  x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  w = jnp.asarray(0.05 * rng.standard_normal((3, 3, c, c)), jnp.float32)
  g = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  scale = jnp.ones((c,), jnp.float32)
  axes = (0, 1, 2) if layout == "NHWC" else (0, 2, 3)
  bshape = (1, 1, 1, c) if layout == "NHWC" else (1, c, 1, 1)

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), [(1, 1), (1, 1)],
                                        dimension_numbers=(layout, "HWIO", layout))

  def bn_relu(x, scale):  # train-mode BatchNorm (batch statistics) + ReLU
    mean = x.mean(axes, keepdims=True)
    var = jnp.maximum((x * x).mean(axes, keepdims=True) - mean * mean, 0.0)
    return jax.nn.relu((x - mean) * jax.lax.rsqrt(var + 1e-5) * scale.reshape(bshape))

  fns = {"conv fwd": (conv, (x, w)),
         "conv dx": (lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0], (x, w, g)),
         "conv dw": (lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0], (x, w, g)),
         "BN+ReLU fwd+bwd": (lambda x, s, g: jax.vjp(bn_relu, x, s)[1](g), (x, scale, g))}
  runners = {}
  for name, (fn, fargs) in fns.items():
    compiled = jax.jit(fn).lower(*fargs).compile(options or None)
    runners[name] = lambda compiled=compiled, fargs=fargs: compiled(*fargs)
  return runners


def _torch_ops(b: int, h: int, c: int) -> dict:
  import torch  # pylint: disable=import-outside-toplevel
  from torch.nn import grad as tgrad  # pylint: disable=import-outside-toplevel
  gen = torch.Generator().manual_seed(0)
  x = torch.randn(b, c, h, h, generator=gen, requires_grad=True)
  w = 0.05 * torch.randn(c, c, 3, 3, generator=gen)
  g = torch.randn(b, c, h, h, generator=gen)
  bn = torch.nn.BatchNorm2d(c)

  def conv_fwd():
    with torch.no_grad():
      return torch.nn.functional.conv2d(x, w, padding=1)

  def bn_step():
    return torch.autograd.grad(torch.relu(bn(x)), (x, bn.weight), g)
  return {"conv fwd": conv_fwd,
          "conv dx": lambda: tgrad.conv2d_input(x.shape, w, g, padding=1),
          "conv dw": lambda: tgrad.conv2d_weight(x.detach(), w.shape, g, padding=1),
          "BN+ReLU fwd+bwd": bn_step}


def ops_table(args, with_torch: bool) -> list[str]:
  columns = [(layout, opt) for layout in args.layouts_list for opt in args.ops_options_list]
  names = [f"JAX {layout} {opt}" for layout, opt in columns]
  if with_torch:
    names.append("PyTorch")
  shapes = RESNET18_CIFAR_SHAPES[-1:] if args.quick else RESNET18_CIFAR_SHAPES
  rows, totals = [], {}
  for h, c, count in shapes:
    runners = {}
    for (layout, opt), name in zip(columns, names):
      for op, run in _jax_ops(args.batch_size, h, c, layout, OPTION_SETS[opt]).items():
        runners[name, op] = run
    if with_torch:
      runners.update({("PyTorch", op): run for op, run in _torch_ops(args.batch_size, h,
                                                                    c).items()})
    times = {k: float(np.median(v)) * count
             for k, v in common.interleaved(runners, args.repeats, 1).items()}
    for op in OPS:
      cells = [times[name, op] for name in names]
      for name, t in zip(names, cells):
        totals[name, op] = totals.get((name, op), 0.0) + t
      rows.append([f"{h}x{h}x{c}", count, op] + [common.fmt_ms(t) for t in cells])
  for op in OPS:
    rows.append(["**all**", "", op] + [f"**{common.fmt_ms(totals[n, op])}**" for n in names])
  rows.append(["**all**", "", "**sum**"] + [
      f"**{common.fmt_ms(sum(totals[n, op] for op in OPS))}**" for n in names])
  return ["### Where the time goes: ResNet-18's 3x3 convolutions and BatchNorm", "",
          f"Batch {args.batch_size}, fp32; medians of {args.repeats} interleaved rounds, "
          "times x the number of 3x3 stride-1 convolutions of that shape in the network, "
          "so each column is that variant's time for this part of one step (strided and 1x1 "
          "convolutions, pooling, the head and the optimizer are not included). `dx`: the "
          "input gradient, `dw`: the kernel gradient. JAX option sets: "
          + "; ".join(f"`{k}` = `{OPTION_SETS[k] or '(none)'}`"
                      for k in args.ops_options_list)
          + ".", "",
          common.markdown_table(["shape (HxWxC)", "convs", "op", *[f"{n} ms" for n in names]],
                                rows)]


# ------------------------------------------------------------------------- options
def options_table(args) -> list[str]:
  """The trainer's ResNet-18 plain and T=3 steps under every option set, interleaved."""
  mesh = sharding.make_mesh(1)
  model = "resnet18_cifar"
  batch = common.random_batch(model, args.batch_size, mesh)
  key = jax.random.key(0)
  runners, compile_s, losses = {}, {}, {}
  for opt in args.options_list:
    for t in (0, 3):
      config = common.variant_config(model, t, "hpo", args.batch_size)
      engine = common.build_engine(model, config, mesh)
      state = common.initial_state(engine, config)
      lowered = engine.train_step.lower(state, batch, key)
      start = os.times().elapsed
      compiled = lowered.compile(OPTION_SETS[opt] or None)
      compile_s[opt, t] = os.times().elapsed - start
      holder = {"state": state}

      def run(compiled=compiled, holder=holder):
        holder["state"], metrics = compiled(holder["state"], batch, key)
        return metrics["loss"]
      losses[opt, t] = float(run())  # first loss (fresh state): the same in every set
      runners[opt, t] = run
      print(f"options {opt} T={t}: compiled in {compile_s[opt, t]:.0f} s", flush=True)
  times = common.interleaved(runners, args.repeats, 1)
  ref = args.options_list[0]
  rows = []
  for opt in args.options_list:
    plain, spg = (float(np.median(times[opt, t])) for t in (0, 3))
    rows.append([f"`{opt}`", f"{compile_s[opt, 0]:.0f} / {compile_s[opt, 3]:.0f}",
                 common.fmt_ms(plain), common.fmt_ms(spg),
                 f"{common.ratio_stats(times, (ref, 0), (opt, 0))[0]:.2f}",
                 f"{common.ratio_stats(times, (ref, 3), (opt, 3))[0]:.2f}",
                 f"{common.ratio_stats(times, (opt, 0), (opt, 3))[0]:.3f}",
                 f"{abs(losses[opt, 3] - losses[ref, 3]):.1e}"])
  return ["### XLA CPU options: the trainer's ResNet-18 step", "",
          f"Batch {args.batch_size}, fp32; the trainer's jitted plain and SPG-HPO (T=3) "
          "steps compiled with each option set (`lowered.compile(compiler_options)`), all "
          f"interleaved in {args.repeats} rounds in one process. `vs {ref}`: ratio of "
          "medians; `first-loss diff`: |loss of the first T=3 step - the same under "
          f"`{ref}`| (fresh state, same batch).", "",
          common.markdown_table(["options", "compile s (plain / T=3)", "plain ms",
                                 "SPG T=3 ms", f"plain vs {ref}", f"SPG vs {ref}",
                                 "SPG / plain", "first-loss diff"], rows)]


def main(argv=None) -> str:
  args = parse_args(argv)
  with_torch = _with_torch(args)
  load = " ".join(f"{x:.2f}" for x in os.getloadavg())
  lines = ["## CPU profile: where spg_jax's step time goes, and XLA's CPU options", ""]
  if "ops" in args.parts_list:
    lines += ops_table(args, with_torch) + [""]
  if "options" in args.parts_list:
    lines += options_table(args) + [""]
  lines += TRIED + [""]
  versions = f"jax {jax.__version__}"
  if with_torch:
    import torch  # pylint: disable=import-outside-toplevel
    versions += f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
  lines.append(f"- Versions: {versions}; XLA_FLAGS of this process: "
               f"`{os.environ.get('XLA_FLAGS', '') or '(none)'}`; load average before the "
               f"run {load}, after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
  return common.publish(SECTION, lines, args.results)


if __name__ == "__main__":
  main()
