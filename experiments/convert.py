r"""Converts another library's pretrained checkpoint into an spg_jax export.

  python -m experiments.convert --source=torchvision --model=resnet50 \
      --weights=resnet50.tv_in1k.safetensors --out=/tmp/resnet50_tv
  python -m experiments.convert --source=huggingface --model=bert \
      --weights=/models/bert-base-cased --head=sequence --num_classes=2 --out=/tmp/bert

writes `--out` with `spg_jax.train.checkpointing.export_variables`: a `{"params",
"batch_stats"}` tree that `spg_jax.load_exported(out)` reads back, usable as
`config.init_checkpoint` / `config.protocol.init_checkpoint` of a run whose model is the
one printed (name and constructor arguments, e.g. num_classes). Models: `--model` takes the
source's spelling (torchvision: resnet18/34/50/101, mobilenet_v2, vit_b_16, fcn_resnet50,
efficientnet_v2_m; huggingface: bert). Weights: `.safetensors` (numpy only), or
`.pth`/`.pt`/`.bin` when torch is installed (read with `torch.load(weights_only=True)`); for
huggingface a model folder (config.json + model.safetensors or pytorch_model.bin), whose
config.json gives the architecture. A Hugging Face checkpoint without a task head (a
pretrained bert-base-*) needs `--head=sequence` (with `--num_classes`, default config.json's
number of labels) or `--head=qa`; that head is initialised fresh from `--seed` (default 0)
and the summary line says so. The pretraining heads (`cls.*`) are dropped.

The conversion happens fully in memory and is checked key by key (every tensor used once,
every variable filled once, shapes equal) before anything is written; the export goes to a
temporary sibling folder, renamed to `--out` when complete. An existing `--out` is refused
unless `--overwrite` (and then only if it is an export or empty).

Exit status: 0 written (one summary line on stdout); 2 bad input: one line `error: ...` on
stderr (a flag, an unknown source or model, a missing or unreadable file, any key or shape
mismatch, an unwritable or existing `--out`), with nothing written.
"""
import argparse
import os
import shutil
import sys
from typing import Optional, Sequence

EXIT_BAD_INPUT = 2
# Files every orbax export has at its top level (what `--overwrite` may replace).
_EXPORT_MARKER = "_CHECKPOINT_METADATA"


class _Parser(argparse.ArgumentParser):
  """argparse that reports its errors as ValueError (one line, no usage text)."""

  def error(self, message: str):
    raise ValueError(message)


def _parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="python -m experiments.convert", allow_abbrev=False,
                   description="Convert a pretrained checkpoint into an spg_jax export.")
  parser.add_argument("--source", default="torchvision",
                      help="library the weights come from (default: torchvision)")
  parser.add_argument("--model", required=True, help="the source's model name, e.g. resnet50")
  parser.add_argument("--weights", required=True,
                      help="weights file: .safetensors, or .pth/.pt/.bin with torch "
                      "installed; huggingface: the model folder (config.json + weights)")
  parser.add_argument("--out", required=True, help="export directory to write")
  parser.add_argument("--overwrite", action="store_true",
                      help="replace an existing export at --out")
  parser.add_argument("--head", default=None,
                      help="huggingface bert / wav2vec2: the task head of a checkpoint "
                      "without one (bert: sequence or qa; wav2vec2: sequence or ctc)")
  parser.add_argument("--num_classes", type=int, default=None,
                      help="huggingface bert / wav2vec2: the fresh sequence head's "
                      "classes (bert: 1 for regression)")
  parser.add_argument("--seed", type=int, default=None,
                      help="seed of the variables a checkpoint lacks (default 0)")
  return parser


# Converter options: given on the command line only when set (other sources have none).
_OPTIONS = ("head", "num_classes", "seed")


def check_out(out: str, overwrite: bool) -> str:
  """The absolute `--out`, if it may be written; else a one-line ValueError."""
  if not out:
    raise ValueError("--out: must be a directory path")
  out = os.path.abspath(out)
  if os.path.lexists(out):
    if not overwrite:
      raise ValueError(f"--out={out}: exists; pass --overwrite to replace it")
    if not os.path.isdir(out) or os.path.islink(out):
      raise ValueError(f"--out={out}: exists and is not a directory; not replaced")
    if os.listdir(out) and not os.path.exists(os.path.join(out, _EXPORT_MARKER)):
      raise ValueError(f"--out={out}: exists and is not an spg_jax export; not replaced")
  parent = _existing_ancestor(os.path.dirname(out))
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
    raise ValueError(f"--out={out}: {parent} is not a writable directory")
  return out


def _existing_ancestor(path: str) -> str:
  while not os.path.exists(path):
    path = os.path.dirname(path)
  return path


def write_export(out: str, variables) -> None:
  """Exports `variables` to a temporary sibling of `out`, then renames it to `out` (an
  existing `out` is replaced only once the new export is complete)."""
  from spg_jax.train import checkpointing  # pylint: disable=g-import-not-at-top  (jax, orbax)
  parent, name = os.path.split(out)
  os.makedirs(parent, exist_ok=True)
  tmp = os.path.join(parent, f".{name}.tmp-{os.getpid()}")
  old = tmp + ".old"
  try:
    checkpointing.export_variables(tmp, variables)
    if os.path.exists(out):
      os.replace(out, old)
    os.replace(tmp, out)
  except OSError as e:
    raise ValueError(f"--out={out}: cannot write the export ({e.strerror or e})") from None
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


def run(argv: Optional[Sequence[str]] = None) -> str:
  """Parses `argv` (without the program name), converts and writes; returns the summary.

  Raises:
    ValueError: any bad input (one line), before anything is written.
  """
  args = _parser().parse_args(argv)
  out = check_out(args.out, args.overwrite)
  from spg_jax.models import convert  # pylint: disable=g-import-not-at-top  (imports jax)
  options = {k: getattr(args, k) for k in _OPTIONS if getattr(args, k) is not None}
  variables, info = convert.convert(source=args.source, model=args.model,
                                    weights=args.weights, **options)
  write_export(out, variables)
  return f"wrote {out}: {info.summary()}"


def main(argv: Optional[Sequence[str]] = None) -> int:
  """The command: prints the summary (exit 0) or one `error: ...` line (exit 2)."""
  try:
    summary = run(argv)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_BAD_INPUT
  print(summary)
  return 0


if __name__ == "__main__":
  sys.exit(main())
