r"""The official SQuAD v1.1 EM / F1 of every model a SQuAD protocol exported.

  python -m experiments.squad_eval --workdir=/runs/squad [--split=test]
  python -m experiments.squad_eval --export=/ckpt/bert_squad \
      --config=experiments/configs/squad_bert_paper.py \
      --config.dataset.data_dir=/data/squad \
      --config.dataset.preprocess.tokenizer=/models/bert-base-uncased

Reads `<workdir>/config.json` (stored by `experiments.main`) and every
`<workdir>/exports/<arm>/seed_<k>` (each run's best-on-validation model), runs each model
over all windows of the split (test: the official dev-v1.1 set), post-processes them to
answer text (n-best 20, at most 30 tokens) and scores them with the official script's
exact match and F1 (`spg_jax.text.squad_eval`). Prints one line per model and a table of
mean ± std over seeds per arm; writes `<workdir>/squad_official.json` and
`<workdir>/squad_official.md`. With `--export` (and `--config`, as for experiments.main):
one model, e.g. a converted checkpoint already fine-tuned on SQuAD, printed as one line and
one JSON line.

Exit status: 0 done; 2 bad input (one `error:` line: no such workdir, no config.json, not
a SQuAD run, no exports, data or tokenizer missing).
"""
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

EXIT_BAD_INPUT = 2


def define_flags() -> None:
  """The command line's flags; defined only when run as a program, so that importing this
  module next to experiments.main (which has its own --config) is possible."""
  flags.DEFINE_string("workdir", None, "A SQuAD protocol's workdir.")
  flags.DEFINE_string("export", None, "One exported model (needs --config).")
  config_flags.DEFINE_config_file("config", None, "With --export: the SQuAD config "
                                  "(path[:variant]) the model fits.", lock_config=True)
  flags.DEFINE_enum("split", "test", ["validation", "test"],
                    "test: the official dev-v1.1 set; validation: the questions carved "
                    "from train.")


def exports(workdir: str) -> list[tuple[str, int, str]]:
  """(arm, seed, path) of every export under `<workdir>/exports`, sorted."""
  root = os.path.join(workdir, "exports")
  found = []
  if os.path.isdir(root):
    for arm in sorted(os.listdir(root)):
      for name in sorted(os.listdir(os.path.join(root, arm))):
        if name.startswith("seed_") and name[5:].isdigit():
          found.append((arm, int(name[5:]), os.path.join(root, arm, name)))
  if not found:
    raise ValueError(f"--workdir={workdir!r}: no exports/<arm>/seed_<k> (run the protocol "
                     "first: python -m experiments.main --config=...squad_bert_paper.py)")
  return found


def load_config(workdir: str):
  import ml_collections  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise ValueError(f"--workdir={workdir!r}: no config.json (not a workdir of "
                     "experiments.main)")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def _mean_std(values: list[float]) -> str:
  import numpy as np  # pylint: disable=g-import-not-at-top
  mean = float(np.mean(values))
  std = f"{float(np.std(values, ddof=1)):.2f}" if len(values) > 1 else "n/a"
  return f"{mean:.2f} ± {std}"


def table(results: list[dict]) -> str:
  """Markdown: per arm, EM and F1 mean ± std over seeds (sample std)."""
  lines = ["| arm | exact match % | F1 % | seeds |", "|---|---|---|---|"]
  for arm in dict.fromkeys(r["arm"] for r in results):
    rows = [r for r in results if r["arm"] == arm]
    lines.append(f"| {arm} | {_mean_std([r['exact_match'] for r in rows])} | "
                 f"{_mean_std([r['f1'] for r in rows])} | {len(rows)} |")
  return "\n".join(lines)


def evaluate_workdir(workdir: str, split: str = "test") -> list[dict]:
  """`[{"arm", "seed", "exact_match", "f1", "questions", "windows"}]`; also written to
  `<workdir>/squad_official.json` and `.md`."""
  from spg_jax.text import squad_eval  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(workdir):
    raise ValueError(f"--workdir={workdir!r}: no such folder")
  config = load_config(workdir)
  found = exports(workdir)
  results = []
  for arm, seed, path in found:
    scores = squad_eval.evaluate_export(config, path, split)
    results.append({"arm": arm, "seed": seed, **scores})
    print(f"[seed {seed}] {arm:>12}: {split} exact_match {scores['exact_match']:.2f}  "
          f"f1 {scores['f1']:.2f}  ({scores['questions']} questions, "
          f"{scores['windows']} windows)", flush=True)
  text = table(results)
  print(text)
  with open(os.path.join(workdir, "squad_official.json"), "w") as f:
    json.dump({"split": split, "results": results}, f, indent=1)
  with open(os.path.join(workdir, "squad_official.md"), "w") as f:
    f.write(f"# Official SQuAD v1.1 EM / F1 ({split} split)\n\n{text}\n")
  return results


def evaluate_one(config, export: str, split: str = "test") -> dict:
  """`--export` mode: the scores of one model, printed (a line, then a JSON line)."""
  from spg_jax.text import squad_eval  # pylint: disable=g-import-not-at-top
  if config is None:
    raise ValueError("--config: required with --export (the SQuAD config the model fits, "
                     "e.g. experiments/configs/squad_bert_paper.py)")
  scores = squad_eval.evaluate_export(config, export, split)
  print(f"{split}: exact_match {scores['exact_match']:.2f}  f1 {scores['f1']:.2f}  "
        f"({scores['questions']} questions, {scores['windows']} windows)")
  print(json.dumps({"export": export, "split": split, **scores}))
  return scores


def main(argv):
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax's INFO lines, as experiments.main
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)
  values = flags.FLAGS
  if bool(values.workdir) == bool(values.export):
    print("error: give exactly one of --workdir (a protocol's exports) and --export (one "
          "model, with --config)", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)
  try:
    if values.workdir:
      evaluate_workdir(values.workdir, values.split)
    else:
      evaluate_one(values.config, values.export, values.split)
  except ValueError as e:
    print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
  define_flags()
  app.run(main)
