"""Accelerator step cost: plain vs SPG-HPO (T=3) train steps of ResNet-50, ViT-B/16 and
BERT-base, with throughput, memory, XLA FLOPs and model FLOPs utilisation.

  python -m experiments.benchmarks.gpu_step            # on a GPU (a few minutes on an H200)
  python -m experiments.benchmarks.gpu_step --smoke    # CPU: tiny shapes, checks the plumbing

Cases: ResNet-50 at 224x224 (batch 256), ViT-B/16 at 224x224 (batch 128), BERT-base
(sequence length 128, batch 32); bf16 compute, float32 parameters; SGD with momentum 0.9;
one jitted step per variant, built here from the library's pieces (`spg_jax.models`,
`spg_jax.spg_model.build_spg_model`, `spg_jax.losses.classification_spg_loss`), so no data
set is needed. Plain and SPG steps run interleaved (`common.interleaved`). MFU = XLA's FLOPs
of the step / step time / the device's dense bf16 peak (`PEAK_TFLOPS`; unknown devices:
no MFU). When torch with CUDA is importable, the same cases run in PyTorch
(`torch_spg` replicas, bf16 autocast) and the table gains their times.
Writes its section `gpu_step` of experiments/RESULTS.md (or `--results`); with `--smoke`
the section says it is a smoke run and its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.benchmarks import common
from spg_jax import losses
from spg_jax import spg_model
from spg_jax.models import registry
from spg_jax.models import resnet
from spg_jax.models import vit

SECTION = "gpu_step"
# Dense bf16 tensor-core peak, TFLOP/s (vendor data sheets, SXM parts, no sparsity).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
# name -> (registry name or model builder, model kwargs, input kind, input shape, classes,
# batch); text inputs draw token ids below the kwargs' vocab_size (BERT's 30522 if unset).
CASES = {
    "resnet50": ("resnet50", {}, "image", (224, 224, 3), 1000, 256),
    "vit_b16": ("vit_b16", {}, "image", (224, 224, 3), 1000, 128),
    "bert_base": ("bert_base", {}, "text", (128,), 2, 32),
}
SMOKE = {  # the same model classes at tiny sizes (CPU, seconds): one bottleneck block per
    # stage, a one-layer ViT, a one-layer BERT with a small vocabulary
    "resnet50": (functools.partial(resnet.ResNet, (1, 1, 1, 1), resnet.Bottleneck),
                 {"stem": "cifar"}, "image", (16, 16, 3), 10, 2),
    "vit_b16": (functools.partial(vit.VisionTransformer, 32, 1, 2, 64),
                {"patch_size": 8, "image_size": 16}, "image", (16, 16, 3), 10, 2),
    "bert_base": ("bert_tiny", {"num_hidden_layers": 1, "vocab_size": 512}, "text", (8,), 2,
                  2),
}


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--cases", default=",".join(CASES), help=f"subset of {list(CASES)}")
  p.add_argument("--replicas", type=int, default=3, help="SPG T")
  p.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
  p.add_argument("--iters", type=int, default=10, help="calls per round")
  p.add_argument("--smoke", action="store_true", help="tiny shapes (CPU check)")
  p.add_argument("--no_torch", action="store_true", help="skip the PyTorch side")
  p.add_argument("--results", default=common.RESULTS_PATH)
  args = p.parse_args(argv)
  unknown = [c for c in args.cases.split(",") if c not in CASES]
  if unknown or not args.cases:
    raise SystemExit(f"error: --cases={args.cases}: must be a comma-separated subset of "
                     f"{list(CASES)}")
  if args.replicas < 1:
    raise SystemExit(f"error: --replicas={args.replicas}: must be >= 1")
  if args.smoke:
    args.repeats, args.iters = min(args.repeats, 2), 1
  return args


def peak_tflops(device_kind: str) -> float:
  """The dense bf16 peak of a device kind (NaN when not in `PEAK_TFLOPS`)."""
  for name, value in PEAK_TFLOPS.items():
    if name in device_kind:
      return value
  return float("nan")


def random_inputs(kind: str, shape: tuple, classes: int, batch: int, vocab: int = 30522
                  ) -> tuple:
  """(inputs, int labels [batch]): images [batch, *shape] float32, or text
  {"input_ids": [batch, *shape]} with ids below `vocab`."""
  rng = np.random.default_rng(0)
  labels = jnp.asarray(rng.integers(0, classes, batch), jnp.int32)
  if kind == "text":
    return {"input_ids": jnp.asarray(rng.integers(0, vocab, (batch,) + shape), jnp.int32)}, \
        labels
  return jnp.asarray(rng.standard_normal((batch,) + shape), jnp.float32), labels


def jax_step(case: tuple, num_replicas: int):
  """(compiled step, state, inputs, labels, facts) of one case at T = num_replicas (0:
  plain). State = (params, batch_stats, opt_state, step)."""
  builder, kwargs, kind, shape, classes, batch = case
  build = functools.partial(registry.get, builder) if isinstance(builder, str) else builder
  base = build(num_classes=classes, dtype=jnp.bfloat16, **kwargs)
  model = base
  lambdas = common.lambdas_for(num_replicas)
  if num_replicas:
    model = spg_model.build_spg_model(base, base.spg_attachments("hpo"), "hpo",
                                      num_replicas, rate=0.2)
  x, y = random_inputs(kind, shape, classes, batch, kwargs.get("vocab_size", 30522))
  # Jitted, on two examples: the variables' shapes do not depend on the batch, and an eager
  # init at batch 256 would dispatch every op separately.
  sample = jax.tree.map(lambda a: a[:2], x)
  variables = jax.jit(functools.partial(model.init, train=True))(
      {"params": jax.random.key(0), "dropout": jax.random.key(1)}, sample)
  params, batch_stats = variables["params"], variables.get("batch_stats", {})
  tx = optax.sgd(0.01, momentum=0.9)

  def step(state, x, y):
    params, batch_stats, opt_state, i = state

    def loss_fn(params):
      variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
      (out, _), updates = model.apply(variables, x, train=True,
                                      rngs={"dropout": jax.random.fold_in(jax.random.key(2),
                                                                          i)},
                                      mutable=["batch_stats"])
      out = out.astype(jnp.float32)
      if num_replicas:
        loss, _ = losses.classification_spg_loss(out, y, lambdas)
      else:
        loss = optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
      return loss, updates.get("batch_stats", {})

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state, i + 1), loss

  state = (params, batch_stats, tx.init(params), jnp.zeros((), jnp.int32))
  compiled, lower_s, compile_s = common.timed_compile(jax.jit(step, donate_argnums=0),
                                                      state, x, y)
  memory = compiled.memory_analysis()
  plan = float("nan") if memory is None else float(
      memory.argument_size_in_bytes + memory.temp_size_in_bytes
      + memory.output_size_in_bytes - memory.alias_size_in_bytes)
  facts = {"flops": common.flops_of(compiled), "compile_s": lower_s + compile_s,
           "params": common.param_count(params), "plan_bytes": plan, "batch": batch}
  return compiled, state, x, y, facts


def torch_available() -> bool:
  if importlib.util.find_spec("torch") is None:
    return False
  import torch  # pylint: disable=import-outside-toplevel
  return torch.cuda.is_available()


def torch_step(case_name: str, case: tuple, num_replicas: int, device: str = "cuda"):
  """A zero-argument PyTorch step (bf16 autocast on `device`) of one case, or None without
  a twin (BERT needs `transformers`)."""
  import torch  # pylint: disable=import-outside-toplevel
  import torchvision  # pylint: disable=import-outside-toplevel
  from experiments.benchmarks import torch_spg  # pylint: disable=import-outside-toplevel
  _, _, kind, shape, classes, batch = case
  torch.manual_seed(0)
  if case_name == "resnet50":
    features = torchvision.models.resnet50(num_classes=classes)
    head, features.fc = features.fc, torch.nn.Identity()
  elif case_name == "vit_b16":
    features = torchvision.models.vit_b_16(num_classes=classes)
    head, features.heads = features.heads.head, torch.nn.Identity()
  elif case_name == "bert_base" and importlib.util.find_spec("transformers"):
    import transformers  # pylint: disable=import-outside-toplevel
    bert = transformers.BertModel(transformers.BertConfig())
    features = torch.nn.Sequential()
    features.forward = lambda ids: torch.nn.functional.dropout(  # pooled output, dropout
        bert(input_ids=ids).pooler_output, 0.1, training=True)
    features.bert = bert
    head = torch.nn.Linear(768, classes)
  else:
    return None
  net = torch_spg.make_spg_net(features, head, head.in_features, num_replicas, 0.2).to(device)
  if kind == "image":
    net = net.to(memory_format=torch.channels_last)
  opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
  x, y = random_inputs(kind, shape, classes, batch)
  x = torch.from_numpy(np.array(x["input_ids"] if kind == "text" else x)).to(device)  # writable
  if kind == "image":
    x = x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
  y = torch.from_numpy(np.array(y)).long().to(device)
  lambdas = common.lambdas_for(num_replicas)

  def run():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device, dtype=torch.bfloat16):
      logits = net(x)
    torch_spg.masked_loss(logits.float(), y, lambdas)[0].backward()
    opt.step()
    if device == "cuda":
      torch.cuda.synchronize()
  return run


def measure(case_name: str, case: tuple, args, with_torch: bool) -> list[dict]:
  runners, facts = {}, {}
  for t in (0, args.replicas):
    compiled, state, x, y, facts[t] = jax_step(case, t)
    holder = {"state": state}

    def run(compiled=compiled, holder=holder, x=x, y=y):
      holder["state"], loss = compiled(holder["state"], x, y)
      return loss
    runners["jax", t] = run
    if with_torch:
      step = torch_step(case_name, case, t)
      if step is not None:
        runners["torch", t] = step
    print(f"{case_name} T={t}: compiled in {facts[t]['compile_s']:.1f} s", flush=True)
  times = common.interleaved(runners, args.repeats, args.iters)
  device = jax.devices()[0]
  peak = peak_tflops(device.device_kind)
  stats = device.memory_stats() or {}
  rows = []
  for t in (0, args.replicas):
    seconds = float(np.median(times["jax", t]))
    f = facts[t]
    row = {"case": case_name, "T": t, "batch": f["batch"], "ms": 1e3 * seconds,
           "ratio": common.ratio_stats(times, ("jax", 0), ("jax", t)),
           "items_s": f["batch"] / seconds, "gflop": f["flops"] / 1e9,
           "mfu": f["flops"] / seconds / (peak * 1e12), "plan_mib": f["plan_bytes"] / 2**20,
           "params": f["params"], "compile_s": f["compile_s"],
           "peak_mib": stats.get("peak_bytes_in_use", float("nan")) / 2**20}
    if ("torch", t) in times:
      row["torch_ms"] = 1e3 * float(np.median(times["torch", t]))
      row["torch_ratio"] = common.ratio_stats(times, ("torch", 0), ("torch", t))[0]
    rows.append(row)
  return rows


def table(rows: list[dict]) -> str:
  header = ["case", "batch", "T", "params", "compile s", "step ms", "SPG / plain (min-max)",
            "items/s", "XLA GFLOP", "MFU", "XLA plan MiB", "process peak MiB",
            "PyTorch ms", "PyTorch SPG / plain"]
  out = []
  for r in rows:
    ratio = r["ratio"]
    out.append([r["case"], r["batch"], r["T"], f"{r['params'] / 1e6:.2f} M",
                f"{r['compile_s']:.1f}", f"{r['ms']:.2f}",
                f"**{ratio[0]:.3f}** ({ratio[1]:.3f}-{ratio[2]:.3f})",
                f"{r['items_s']:.0f}", f"{r['gflop']:.1f}",
                "-" if np.isnan(r["mfu"]) else f"{100 * r['mfu']:.1f}%",
                f"{r['plan_mib']:.0f}", f"{r['peak_mib']:.0f}",
                f"{r['torch_ms']:.2f}" if "torch_ms" in r else "-",
                f"{r['torch_ratio']:.3f}" if "torch_ratio" in r else "-"])
  return common.markdown_table(header, out)


def main(argv=None) -> str:
  args = parse_args(argv)
  device = jax.devices()[0]
  print(f"device: {device.platform} ({device.device_kind})", flush=True)
  with_torch = not args.no_torch and not args.smoke and torch_available()
  cases = SMOKE if args.smoke else CASES
  rows = []
  for name in args.cases.split(","):
    rows += measure(name, cases[name], args, with_torch)
  note = ("**Smoke run (`--smoke`): tiny stand-in models on "
          f"{device.platform}; the numbers only show that the script works.**"
          if args.smoke else f"Device: {device.device_kind}.")
  return common.publish(SECTION, [
      "## Accelerator step cost: plain vs SPG-HPO, ResNet-50, ViT-B/16, BERT-base",
      "",
      note,
      "",
      f"bf16 compute, float32 parameters, SGD momentum; plain (T = 0) and SPG-HPO "
      f"(T = {args.replicas}, residual-Linear replicas, masked loss) steps interleaved in "
      f"{args.repeats} rounds of {args.iters} calls. MFU: XLA `cost_analysis()` FLOPs per "
      f"step / median step time / dense bf16 peak ({PEAK_TFLOPS} TFLOP/s). `XLA plan`: "
      f"arguments + temporaries + outputs - aliased of the compiled step; `process peak`: "
      f"the device's `peak_bytes_in_use` so far in this process (cumulative). PyTorch: "
      f"`torch_spg` replicas, bf16 autocast, channels_last for images, eager; "
      f"{'run' if with_torch else 'not run (no torch with CUDA)'}.",
      "",
      table(rows),
  ], args.results)


if __name__ == "__main__":
  main()
