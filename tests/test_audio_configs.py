"""The audio configs end to end through the command line, on data the tests write or
generate (nothing downloaded):

  python -m experiments.main --config=experiments/configs/spoken_digits_protocol.py:quick
  python -m experiments.main --config=experiments/configs/superb_ks_wav2vec2_paper.py:quick
  python -m experiments.main --config=experiments/configs/ctc_wav2vec2_large_paper.py:quick

The spoken digits are synthesised with espeak-ng; SUPERB KS reads a fake Speech Commands
v0.01 folder built with `spg_jax.data.speech_commands`; CTC reads a LibriSpeech-layout
folder of generated WAVs and transcripts. Every run logs its test metrics (accuracy; WER
and CER)."""
import importlib
import json
import math
import pathlib
import subprocess
import sys

from spg_jax import protocol as protocol_lib
from spg_jax import protocol_arms
from spg_jax.data import speech_commands

from audio_fixtures import fake_librispeech, fake_speech_commands

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name, arg=None):
  return importlib.import_module(f"experiments.configs.{name}").get_config(arg)


def run_main(config, workdir, *overrides, timeout=500):
  done = subprocess.run([sys.executable, "-m", "experiments.main", f"--config={config}",
                         f"--workdir={workdir}", *overrides], cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  assert (workdir / "results.md").is_file()
  return done


def logged_test_metrics(workdir, arm):
  """The test split's metrics (the `test/` entries of the run's metrics.jsonl)."""
  lines = (workdir / "runs" / arm / "seed_0" / "metrics.jsonl").read_text().splitlines()
  test = [json.loads(line) for line in lines if '"test/' in line]
  assert len(test) == 1, f"{arm}: {len(test)} test evaluations"
  return {k[len("test/"):]: v for k, v in test[0].items() if k.startswith("test/")}


def test_spoken_digits_protocol_values_and_quick_run(tmp_path):
  config = _load("spoken_digits_protocol")
  assert config.model.name == "audio_cnn" and config.dataset.name == "spoken_digits"
  assert config.protocol.seeds == (0, 1, 2, 3, 4)
  assert set(config.protocol.arms) == set(protocol_arms.DEFAULT_ARMS)
  arms = protocol_lib.arm_stage_configs(config, 0)
  assert arms["dropout"].model.kwargs.head_dropout == config.spg.rate
  assert len({(c.num_steps, c.batch_size) for c in arms.values()}) == 1
  workdir = tmp_path / "digits"
  done = run_main("experiments/configs/spoken_digits_protocol.py:quick", workdir,
                  f"--config.dataset.data_dir={tmp_path / 'cache'}")
  quick_arms = tuple(_load("spoken_digits_protocol", "quick").protocol.arms)
  assert {"control", "spg_hpo", "spg_nas"} <= set(quick_arms)
  for arm in ("base",) + quick_arms:
    assert f"{arm}: test accuracy" in done.stdout
    metrics = logged_test_metrics(workdir, arm)
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_superb_ks_recipe_values_and_quick_run(tmp_path):
  config = _load("superb_ks_wav2vec2_paper")
  assert (config.optimizer.name, config.optimizer.learning_rate, config.batch_size,
          config.optimizer.accumulation_steps) == ("adamw", 3e-5, 48, 4)
  assert config.optimizer.weight_decay == 0.0 and config.schedule.name == "linear"
  assert config.schedule.warmup_steps == round(0.1 * config.num_steps)
  assert config.num_steps == 4 * 5 * (51_094 // 192)  # micro-batches: 4 per update
  assert config.spg.normalize == "none" and config.spg.use_relu
  assert config.model.kwargs.size == "base" and config.dataset.name == "speech_commands"
  assert config.protocol.init_checkpoint is None and "base" not in config.protocol
  arms = protocol_lib.arm_stage_configs(config, 0)
  assert list(arms) == ["control", "spg_hpo"]
  assert len({(c.num_steps, c.batch_size) for c in arms.values()}) == 1
  raw, test = fake_speech_commands(tmp_path)
  assert speech_commands.main([f"--raw={raw}", f"--test={test}",
                               f"--out={tmp_path / 'data'}"]) == 0
  workdir = tmp_path / "ks"
  done = run_main("experiments/configs/superb_ks_wav2vec2_paper.py:quick", workdir,
                  f"--config.dataset.data_dir={tmp_path / 'data'}")
  for arm in ("base", "control", "spg_hpo"):
    assert f"{arm}: test accuracy" in done.stdout
    assert 0.0 <= logged_test_metrics(workdir, arm)["accuracy"] <= 1.0


# Enough half-second utterances for batches of 4 (ids: speaker-chapter-utterance).
CTC_TEXTS = {
    "train-clean-100": {f"19-198-{i:04d}": t for i, t in enumerate(
        ["ONE TWO", "THREE", "FOUR FIVE", "SIX", "SEVEN", "EIGHT NINE", "TEN", "ZERO"])},
    "dev-clean": {f"84-121-{i:04d}": t for i, t in enumerate(["ONE", "TWO THREE"])},
    "test-clean": {f"61-70-{i:04d}": t for i, t in enumerate(["FOUR", "FIVE SIX", "NINE"])},
}


def test_ctc_recipe_values_and_quick_run_logs_wer(tmp_path):
  config = _load("ctc_wav2vec2_large_paper")
  assert config.model.kwargs.size == "large" and config.model.kwargs.head_type == "ctc"
  assert config.task.name == "ctc" and config.task.word_delimiter == 4
  assert config.optimizer.name == "adamw" and config.schedule.name == "linear"
  quick = _load("ctc_wav2vec2_large_paper", "quick")
  assert quick.model.kwargs.do_stable_layer_norm and quick.model.kwargs.size == "tiny"
  root = fake_librispeech(tmp_path / "LibriSpeech", transcripts=CTC_TEXTS)
  workdir = tmp_path / "ctc"
  done = run_main("experiments/configs/ctc_wav2vec2_large_paper.py:quick", workdir,
                  f"--config.dataset.data_dir={root}")
  for arm in ("base", "control", "spg_hpo"):
    assert f"{arm}: test wer" in done.stdout
    metrics = logged_test_metrics(workdir, arm)
    assert metrics["wer"] >= 0.0 and metrics["cer"] >= 0.0 and math.isfinite(metrics["loss"])
