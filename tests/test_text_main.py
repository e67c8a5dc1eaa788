"""The BERT recipes end to end through the command line, on tiny files the test writes
(Hugging Face parquet layout, a vocabulary built from them; nothing downloaded):

  python -m experiments.main --config=experiments/configs/glue_bert_paper.py:quick ...
  python -m experiments.main --config=experiments/configs/squad_bert_paper.py:quick ...
  python -m experiments.squad_eval --workdir=...   (and --export=... --config=...)

Every run of the protocol (base, control, finetune_hf, spg_hpo) logs its task's metrics on
the test split: GLUE's accuracy, F1 and Matthews; SQuAD's span metrics in the run and the
official EM / F1 from the exported models afterwards. About 50 s per protocol on 2 cores
(compilation: one BERT without and one with SPG)."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import text_fixtures as files

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARMS = ("base", "control", "finetune_hf", "spg_hpo")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  root = tmp_path_factory.mktemp("text_main")
  files.write_vocab(root / "vocab.txt")
  return root


def run_module(module, *args, timeout=400):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout, check=False)


def logged_test_metrics(workdir, arm):
  """The test split's metrics (the `test/` entries of the run's metrics.jsonl)."""
  lines = (workdir / "runs" / arm / "seed_0" / "metrics.jsonl").read_text().splitlines()
  test = [json.loads(line) for line in lines if '"test/' in line]
  assert len(test) == 1, f"{arm}: {len(test)} test evaluations"
  return {k[len("test/"):]: v for k, v in test[0].items() if k.startswith("test/")}


def main(config, workdir, data_dir, tokenizer):
  done = run_module("experiments.main", f"--config={config}", f"--workdir={workdir}",
                    f"--config.dataset.data_dir={data_dir}",
                    f"--config.dataset.preprocess.tokenizer={tokenizer}")
  assert done.returncode == 0, done.stderr[-3000:]
  assert (workdir / "results.md").is_file()
  return done


def test_glue_quick_protocol_logs_glue_metrics(root, tmp_path):
  folder = files.write_glue(root, "cola", n_train=40, n_val=16)
  workdir = tmp_path / "cola"
  done = main("experiments/configs/glue_bert_paper.py:quick", workdir, folder,
              root / "vocab.txt")
  assert "spg_hpo: test matthews" in done.stdout
  for arm in ARMS:
    metrics = logged_test_metrics(workdir, arm)
    assert {"accuracy", "f1", "matthews", "loss"} <= set(metrics), arm
    assert -1.0 <= metrics["matthews"] <= 1.0 and 0.0 <= metrics["f1"] <= 1.0
  # SPG ran in the SPG arm only: its replicas' survival is in its training log.
  spg_log = (workdir / "runs" / "spg_hpo" / "seed_0" / "metrics.jsonl").read_text()
  control_log = (workdir / "runs" / "control" / "seed_0" / "metrics.jsonl").read_text()
  assert "train/survival_3" in spg_log and "train/survival_1" not in control_log


def test_squad_quick_protocol_then_official_em_f1(root, tmp_path):
  folder = files.write_squad(root / "squad", n_train=24, n_val=8)
  workdir = tmp_path / "squad"
  main("experiments/configs/squad_bert_paper.py:quick", workdir, folder, root / "vocab.txt")
  for arm in ARMS:
    logged = logged_test_metrics(workdir, arm)
    assert {"exact_match", "span_f1", "start_accuracy", "end_accuracy"} <= set(logged), arm
  done = run_module("experiments.squad_eval", f"--workdir={workdir}")
  assert done.returncode == 0, done.stderr[-3000:]
  results = json.loads((workdir / "squad_official.json").read_text())
  assert results["split"] == "test"
  assert sorted(r["arm"] for r in results["results"]) == sorted(ARMS)
  for r in results["results"]:
    assert r["questions"] == 8 and r["windows"] >= 8  # every dev question, all its windows
    assert 0.0 <= r["exact_match"] <= r["f1"] <= 100.0
  table = (workdir / "squad_official.md").read_text()
  assert "| spg_hpo |" in table and "exact match %" in table
  # One model (e.g. a converted checkpoint) with its config: the same numbers.
  done = run_module("experiments.squad_eval",
                    f"--export={workdir / 'exports' / 'control' / 'seed_0'}",
                    "--config=experiments/configs/squad_bert_paper.py:quick",
                    f"--config.dataset.data_dir={folder}",
                    f"--config.dataset.preprocess.tokenizer={root / 'vocab.txt'}")
  assert done.returncode == 0, done.stderr[-3000:]
  one = json.loads(done.stdout.strip().splitlines()[-1])
  control = next(r for r in results["results"] if r["arm"] == "control")
  assert (one["exact_match"], one["f1"], one["questions"]) == (
      control["exact_match"], control["f1"], control["questions"])


@pytest.mark.parametrize("case", ["no_config_json", "both", "export_without_config"])
def test_squad_eval_bad_input_one_line(tmp_path, case):
  args = {"no_config_json": [f"--workdir={tmp_path}"],
          "both": [f"--workdir={tmp_path}", f"--export={tmp_path}"],
          "export_without_config": [f"--export={tmp_path}"]}[case]
  want = {"no_config_json": f"error: --workdir={str(tmp_path)!r}: no config.json (not a "
                            "workdir of experiments.main)",
          "both": "error: give exactly one of --workdir (a protocol's exports) and --export "
                  "(one model, with --config)",
          "export_without_config": "error: --config: required with --export (the SQuAD "
                                   "config the model fits, e.g. "
                                   "experiments/configs/squad_bert_paper.py)"}[case]
  done = run_module("experiments.squad_eval", *args, timeout=120)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines() == [want]


def test_main_without_tokenizer_is_one_line_and_writes_nothing(root, tmp_path):
  folder = files.write_glue(root, "rte")
  workdir = tmp_path / "rte"
  done = run_module("experiments.main",
                    "--config=experiments/configs/glue_bert_paper.py:rte-quick",
                    f"--workdir={workdir}", f"--config.dataset.data_dir={folder}", timeout=200)
  assert done.returncode == 2
  assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
      "error: dataset.preprocess.tokenizer=None: dataset 'glue/rte' needs the path of the "
      "model's vocab.txt, tokenizer.json or folder"]
  assert not workdir.exists()


def test_mnli_mismatched_evaluates_a_matched_model(root, tmp_path):
  """The MNLI recipe's model scored on validation_mismatched (`--config.mode=evaluate
  --config.dataset.name=glue/mnli_mismatched`): an export of the quick model (initialised,
  not trained: only the path matters here) gives different test sets for the two names."""
  import jax  # pylint: disable=g-import-not-at-top
  from experiments import main as experiments_main  # pylint: disable=g-import-not-at-top
  from experiments.configs import glue_bert_paper  # pylint: disable=g-import-not-at-top
  from spg_jax import models  # pylint: disable=g-import-not-at-top
  from spg_jax.train import checkpointing  # pylint: disable=g-import-not-at-top
  folder = files.write_glue(root, "mnli", n_val=10)
  config = glue_bert_paper.get_config("mnli-quick")
  model = models.get("bert", num_classes=3, **dict(config.model.kwargs))
  ids = np.zeros((1, 32), np.int32)
  export = str(tmp_path / "export")
  checkpointing.export_variables(export, model.init(jax.random.key(0), ids, train=False))
  results = {}
  for name in ("glue/mnli", "glue/mnli_mismatched"):
    config = glue_bert_paper.get_config("mnli-quick")
    config.mode = "evaluate"
    config.num_devices = 1
    config.dataset.name = name
    config.dataset.data_dir = str(folder)
    config.dataset.preprocess.tokenizer = str(root / "vocab.txt")
    config.protocol.init_checkpoint = export
    results[name] = experiments_main.evaluate_only(config, str(tmp_path / name))
  matched, mismatched = results["glue/mnli"], results["glue/mnli_mismatched"]
  assert matched["validation"] == mismatched["validation"]  # the same slice of train
  assert {"accuracy", "f1", "matthews"} <= set(mismatched["test"])
  assert matched["test"]["loss"] != mismatched["test"]["loss"]  # another test set


def test_squad_eval_imports_next_to_main():
  """Its flags exist only when it runs as a program: both modules import in one process
  (tests, notebooks) without a duplicate --config."""
  from experiments import main as experiments_main  # pylint: disable=g-import-not-at-top
  from experiments import squad_eval  # pylint: disable=g-import-not-at-top
  assert callable(squad_eval.evaluate_workdir) and callable(experiments_main.evaluate_only)
