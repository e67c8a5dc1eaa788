"""Shared plumbing of the benchmark scripts: environment lines, interleaved timing, tables,
and the RESULTS.md sections each script owns.

Timing method: one process; the variants A, B, ... are compiled first (compile
time measured and reported separately), then run in rounds, each round timing every variant
once in a rotated order (so slow drifts of a shared machine hit all variants alike);
`jax.block_until_ready` ends every timed call. We report medians over rounds and the ratio
of medians (and the median of per-round ratios, which is robust to load changes between
rounds).
"""
from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from spg_jax import report

RESULTS_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "RESULTS.md")
_TITLE = """# spg_jax benchmark results

Every table below was written by a script in `experiments/benchmarks/`; each script owns the
section between its `BEGIN`/`END` markers and rewrites only that one. Rerun a script to
refresh its section (the exact command is given under each table). CPU timings on a shared
machine are noisy: read the ratios, not the absolute times.
"""
# The order of the sections in RESULTS.md (the numbering).
SECTION_ORDER = ("step_overhead", "single_vs_multipass", "memory", "quality", "quality_segmentation",
                 "quality_ablation", "quality_audio", "quality_text",
                 "hpo_cost", "fidelity", "preemption_stress", "side_by_side",
                 "cpu_profile", "spg_scaling", "gpu_step")
_LIBRARIES = ("jax", "jaxlib", "flax", "optax", "numpy")


# ------------------------------------------------------------------------- environment
def cpu_model() -> str:
  """The CPU's model name (Linux /proc/cpuinfo; platform.processor() elsewhere)."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def on_accelerator() -> bool:
  """True when JAX's default device is a GPU or TPU."""
  return jax.devices()[0].platform != "cpu"


def environment_lines(command: str | None = None) -> list[str]:
  """Markdown bullet lines: command, date, hardware, devices, load, library versions."""
  env = report.environment(_LIBRARIES)
  command = command or shlex.join(["python", "-m", _module_name()] + sys.argv[1:])
  date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  return [
      f"- Command: `{command}`",
      f"- Date: {date}",
      f"- Hardware: {cpu_model()}, {os.cpu_count()} CPU cores, load average at start "
      f"{env['load']}; JAX devices: {env['devices']}",
      f"- Python {env['python']}; {env['libraries']}",
  ]


def _module_name() -> str:
  main = sys.modules.get("__main__")
  spec = getattr(main, "__spec__", None)
  if spec is not None and spec.name:
    return spec.name
  return os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0] else "<interactive>"


# ------------------------------------------------------------------------- RESULTS.md
def write_section(name: str, body: str, path: str = RESULTS_PATH) -> None:
  """Replaces (or appends) the section `<!-- BEGIN name --> ... <!-- END name -->` of
  `path`, leaving every other section untouched."""
  begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
  block = f"{begin}\n{body.rstrip()}\n{end}"
  text = _TITLE
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      text = f.read()
  pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
  if pattern.search(text):
    text = pattern.sub(lambda _: block, text)
  else:
    text = text.rstrip() + "\n\n" + block + "\n"
  text = _in_section_order(text)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text if text.endswith("\n") else text + "\n")
  os.replace(tmp, path)


def _in_section_order(text: str) -> str:
  """The sections of `text` sorted by `SECTION_ORDER` (others keep their order, after)."""
  spans = list(re.finditer(r"<!-- BEGIN (\S+) -->.*?<!-- END \1 -->", text, re.S))
  if not spans:
    return text
  rank = {name: i for i, name in enumerate(SECTION_ORDER)}
  ordered = sorted(spans, key=lambda m: rank.get(m.group(1), len(rank)))
  return (text[:spans[0].start()].rstrip() + "\n\n"
          + "\n\n".join(m.group(0) for m in ordered) + "\n")


def publish(name: str, lines: Sequence[str], path: str = RESULTS_PATH) -> str:
  """Prints `lines` plus the environment lines and writes them as section `name` of `path`;
  returns the section's text."""
  body = "\n".join([*lines, "", *environment_lines()])
  print(body)
  write_section(name, body, path)
  return body


def add_protocol_args(parser: Any) -> None:
  """The argparse flags every protocol benchmark takes: seeds, stage lengths, the quick
  variant, the workdir and the results file."""
  parser.add_argument("--seeds", default="", help="comma-separated; default: the config's")
  parser.add_argument("--base_steps", type=int, default=0, help="0: the config's")
  parser.add_argument("--retrain_steps", type=int, default=0, help="0: the config's")
  parser.add_argument("--quick", action="store_true",
                      help="the configs' quick variants (tests)")
  parser.add_argument("--workdir", default="", help="default: a new temporary directory")
  parser.add_argument("--results", default=RESULTS_PATH)


def dataset_names(spec: str, known: Mapping[str, Any]) -> list[str]:
  """`--datasets=a,b` as a list; exits with a one-line error naming any unknown one."""
  names = [d for d in spec.split(",") if d]
  unknown = [n for n in names if n not in known]
  if unknown:
    raise SystemExit(f"error: --datasets={spec}: unknown {unknown}; known: {sorted(known)}")
  return names


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A GitHub markdown table; cells are str()-ed."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- timing
def timed_compile(jitted: Callable, *args) -> tuple[Any, float, float]:
  """Lowers and compiles `jitted` for `args`; returns (compiled, lower_s, compile_s)."""
  t0 = time.perf_counter()
  lowered = jitted.lower(*args)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  return compiled, t1 - t0, time.perf_counter() - t1


def flops_of(compiled: Any) -> float:
  """XLA's FLOP estimate of a compiled executable (NaN when the backend gives none)."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return float("nan")
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get("flops", float("nan")))


def interleaved(runners: Mapping[str, Callable[[], Any]], repeats: int, iters: int
                ) -> dict[str, np.ndarray]:
  """Times every runner `iters` calls per round for `repeats` rounds, rotating the order.

  A runner is a zero-argument callable doing one call and returning its outputs (blocked on
  here). Returns name -> per-round seconds per call `[repeats]`. One untimed call of each
  runner first (warm caches, first-run allocations).
  """
  names = list(runners)
  for name in names:
    jax.block_until_ready(runners[name]())
  times = {name: np.zeros(repeats) for name in names}
  for r in range(repeats):
    order = names[r % len(names):] + names[:r % len(names)]
    for name in order:
      t0 = time.perf_counter()
      for _ in range(iters):
        out = runners[name]()
      jax.block_until_ready(out)
      times[name][r] = (time.perf_counter() - t0) / iters
  return times


def ratio_stats(times: Mapping[str, np.ndarray], reference: str, name: str
                ) -> tuple[float, float, float]:
  """(ratio of medians, min and max of the per-round ratios) of `name` over `reference`."""
  per_round = times[name] / times[reference]
  return (float(np.median(times[name]) / np.median(times[reference])),
          float(per_round.min()), float(per_round.max()))


def fmt_ms(seconds: float) -> str:
  return f"{1e3 * seconds:.1f}"


def fmt_bytes(n: float) -> str:
  """Bytes in MiB with 2 decimals (exact byte counts are given where they matter)."""
  return f"{n / 2**20:.2f}"


# ------------------------------------------------------------------------- models
# Benchmark model name -> (experiment config module, input shape, classes): the configs users
# run, so what is measured is what they train.
MODELS = {
    "resnet18_cifar": ("experiments.configs.cifar10_resnet18_spg", (32, 32, 3), 10),
    "cnn1d_mnist1d": ("experiments.configs.mnist1d_spg", (40, 1), 10),
    "resnet50_224": ("experiments.configs.imagenet_resnet50_spg", (224, 224, 3), 1000),
}


def lambdas_for(num_replicas: int) -> tuple[float, ...]:
  """Replica weights for T replicas: the reference (0.4, 0.2, 0.1), continued by halving."""
  return tuple(0.4 * 0.5 ** t for t in range(num_replicas))


# Benchmark replica kinds: "hpo" is the paper's HPO replica (a residual Linear, which
# learns), "hpo_relu" the authors' (Linear + ReLU: pure dropout, built without parameters),
# "nas" extra depth.
REPLICA_KINDS = ("hpo", "hpo_relu", "nas")


def variant_config(model: str, num_replicas: int, kind: str = "hpo",
                   batch_size: int | None = None) -> Any:
  """The model's experiment config with SPG-`kind` (`REPLICA_KINDS`) at T = `num_replicas`
  (0: SPG off). The HPO replica is set explicitly, whatever the config's own choice."""
  import importlib  # pylint: disable=import-outside-toplevel
  if kind not in REPLICA_KINDS:
    raise ValueError(f"kind={kind!r}: must be one of {list(REPLICA_KINDS)}")
  module, _, _ = MODELS[model]
  config = importlib.import_module(module).get_config()
  config.spg.enabled = num_replicas > 0
  config.spg.use_relu = kind == "hpo_relu"
  kind = "hpo" if kind == "hpo_relu" else kind
  config.spg.kind = kind
  if num_replicas > 0:
    config.spg.num_replicas = num_replicas
    config.spg.lambdas = lambdas_for(num_replicas)
    if kind == "nas":
      config.spg.form = "reinforce"
  if batch_size:
    config.batch_size = batch_size
  config.num_devices = 1
  return config


def build_engine(model: str, config: Any, mesh: Any) -> Any:
  """`spg_jax.train.engine.build_engine` of `config` (uncached: every variant gets its own).

  The config's dataset supplies the example features and classes; they must be the ones
  `MODELS` lists, which the benchmark batches are drawn from.
  """
  # pylint: disable=import-outside-toplevel
  from spg_jax import data
  from spg_jax.train import engine as engine_lib
  _, input_shape, num_classes = MODELS[model]
  info = data.dataset_info(config.dataset.name)
  if (tuple(info.input_shape), info.num_classes) != (input_shape, num_classes):
    raise ValueError(f"config.dataset.name={config.dataset.name!r}: inputs "
                     f"{tuple(info.input_shape)} and {info.num_classes} classes, but MODELS"
                     f"[{model!r}] says {input_shape} and {num_classes}")
  return engine_lib.build_engine(engine_lib.spec_from_config(config, mesh, info))


def initial_state(engine: Any, config: Any, seed: int = 0) -> Any:
  """A fresh `TrainState` of the engine (replicated on its mesh)."""
  from spg_jax.train import engine as engine_lib  # pylint: disable=import-outside-toplevel
  variables = engine.init(jax.random.key(seed))
  return engine.create_state(variables, engine_lib.optimizer_hparams(config),
                             np.asarray(engine.spec.rates, np.float32))


def random_batch(model: str, batch_size: int, mesh: Any, seed: int = 0) -> dict:
  """A fixed random batch `{"input", "label"}` sharded over the mesh's 'data' axis."""
  from spg_jax import sharding  # pylint: disable=import-outside-toplevel
  _, input_shape, num_classes = MODELS[model]
  rng = np.random.default_rng(seed)
  batch = {"input": rng.standard_normal((batch_size,) + input_shape).astype(np.float32),
           "label": rng.integers(0, num_classes, batch_size).astype(np.int32)}
  return jax.device_put(batch, sharding.batch_sharding(mesh))


def param_count(tree: Any) -> int:
  return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(tree)))


def tree_bytes(tree: Any) -> int:
  return int(sum(np.prod(np.shape(x)) * np.dtype(x.dtype).itemsize
                 for x in jax.tree.leaves(tree)))
