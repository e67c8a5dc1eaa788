"""Audio datasets of the catalog: the Speech Commands v0.01 builder and reader (on a fake
folder written here), the LibriSpeech-layout reader (generated WAVs and transcripts) and
the spoken-digits entry, through `spg_jax.data`'s sources and iterators."""
import os

import numpy as np
import pytest

from spg_jax import data, sharding
from spg_jax.data import librispeech, speech_commands

from audio_fixtures import clip, fake_librispeech, fake_speech_commands, write_wav


@pytest.fixture(scope="module")
def commands(tmp_path_factory):
  root = tmp_path_factory.mktemp("speech_commands")
  raw, test = fake_speech_commands(root)
  assert speech_commands.main([f"--raw={raw}", f"--test={test}", f"--out={root / 'out'}"]) == 0
  return raw, root / "out"


def test_speech_commands_splits_labels_and_records(commands):
  raw, out = commands
  labels = speech_commands.LABELS
  assert labels[:10] == ("yes", "no", "up", "down", "left", "right", "on", "off", "stop",
                         "go") and labels[10:] == ("_silence_", "_unknown_")
  got = {}
  for split in ("train", "validation", "test"):
    src = data.make_source("speech_commands", split, data_dir=str(out))
    got[split] = sorted(labels[int(src[i]["label"])] for i in range(len(src)))
  # train: yes a, c; no a; cat a (unknown); noise second 2 (second 1 -> validation).
  assert got["train"] == sorted(["yes", "yes", "no", "_unknown_", "_silence_"])
  assert got["validation"] == sorted(["yes", "_silence_"])
  assert got["test"] == sorted(["yes", "go", "_silence_", "_unknown_"])
  src = data.make_source("speech_commands", "validation", data_dir=str(out))
  short = next(src[i] for i in range(len(src)) if src[i]["label"] == 0)  # yes/b: 0.75 s
  assert short["attention_mask"].sum() == 12000 and short["input_values"].shape == (16000,)
  assert np.all(short["input_values"][12000:] == 0)
  real = short["input_values"][:12000]
  assert abs(real.mean()) < 1e-4 and abs(real.std() - 1) < 1e-3
  # The stored int16 samples are the file's.
  audio, label = speech_commands.decode_record(speech_commands.encode_record(clip(1, 12000), 0))
  np.testing.assert_array_equal(audio, clip(1, 12000))
  assert label == 0


def test_speech_commands_errors_are_one_line(tmp_path, commands):
  raw, _ = commands
  with pytest.raises(ValueError, match="build it once with: python -m spg_jax.data"):
    data.make_source("speech_commands", "train", data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="dataset.data_dir: speech_commands needs"):
    data.make_source("speech_commands", "train")
  assert speech_commands.main([f"--raw={tmp_path}", f"--test={tmp_path}",
                               f"--out={tmp_path / 'o'}"]) == 2
  write_wav(tmp_path / "bad.wav", clip(0), rate=8000)
  with pytest.raises(ValueError, match="8000 Hz"):
    speech_commands.read_wav_int16(str(tmp_path / "bad.wav"))


def test_librispeech_reader(tmp_path):
  root = fake_librispeech(tmp_path / "LibriSpeech")
  preprocess = {"max_samples": 8000, "max_tokens": 12}
  info = data.dataset_info("librispeech", preprocess)
  assert info.task == "ctc" and info.num_classes == 32
  src = data.make_source("librispeech", "train", data_dir=str(root), preprocess=preprocess)
  assert len(src) == 2  # the 1.2 s utterance is longer than max_samples: left out
  ex = src[0]
  assert librispeech.decode(ex["label"][ex["label_paddings"] == 0]) == "ONE TWO"
  assert ex["label_paddings"].tolist() == [0.0] * 7 + [1.0] * 5
  assert ex["attention_mask"].sum() == 6400 and ex["input_values"].shape == (8000,)
  mesh = sharding.make_mesh(1)
  it = data.make_iterator("librispeech", "test", global_batch_size=2, mesh=mesh, seed=0,
                          data_dir=str(root), preprocess=preprocess, drop_remainder=False,
                          shuffle=False, num_epochs=1)
  batch = next(iter(it))
  assert batch["label"].shape == (2, 12) and bool(batch["mask"][0]) and not batch["mask"][1]
  os.remove(root / "dev-clean" / "84" / "121" / "84-121-0000.wav")
  with pytest.raises(ValueError, match="no 84-121-0000.flac or 84-121-0000.wav"):
    librispeech.list_utterances(str(root), ("dev-clean",))
  with pytest.raises(ValueError, match="no folder"):
    librispeech.list_utterances(str(root), ("train-other-500",))
  with pytest.raises(ValueError, match="^dataset.data_dir: librispeech needs the folder"):
    data.make_source("librispeech", "train", preprocess=preprocess)
  with pytest.raises(ValueError, match="every utterance .* is longer than max_samples=100"):
    data.make_source("librispeech", "train", data_dir=str(root),
                     preprocess={"max_samples": 100, "max_tokens": 12})


def test_spoken_digits_in_the_catalog(tmp_path):
  preprocess = {"train_per_word": 1, "validation_per_word": 1, "test_per_word": 1}
  info = data.dataset_info("spoken_digits", preprocess)
  assert info.kind == "audio" and info.task == "sequence_classification"
  assert info.num_classes == 10 and info.features["input_values"].shape == (16000,)
  src = data.make_source("spoken_digits", "test", data_dir=str(tmp_path), preprocess=preprocess)
  assert len(src) == 10 and sorted(int(src[i]["label"]) for i in range(10)) == list(range(10))
  assert os.listdir(tmp_path)  # generated into data_dir
  with pytest.raises(ValueError, match="preprocess.train_per_word=0"):
    data.dataset_info("spoken_digits", {"train_per_word": 0})


def test_length_buckets_pad_each_batch_to_its_bucket(tmp_path):
  lengths = [100, 900, 450, 3000, 480]
  batches = librispeech.bucket_batches(lengths, 2, (500, 1000, 4000), seed=3)
  by_bucket = {}
  for idx, length in batches:
    by_bucket.setdefault(length, []).append(len(idx))
    assert all(lengths[i] <= length for i in idx)
  assert by_bucket == {500: by_bucket[500], 1000: [1], 4000: [1]}
  assert sorted(by_bucket[500]) == [1, 2]  # 100, 450, 480: one full batch and one short
  assert sorted(i for idx, _ in batches for i in idx.tolist()) == [0, 1, 2, 3, 4]
  again = librispeech.bucket_batches(lengths, 2, (500, 1000, 4000), seed=3)
  assert [(i.tolist(), n) for i, n in batches] == [(i.tolist(), n) for i, n in again]
  with pytest.raises(ValueError, match="longer than the largest bucket 4000"):
    librispeech.bucket_batches([5000], 2, (500, 4000))
  # On real files: every batch padded to its bucket, with sample and row masks.
  root = fake_librispeech(tmp_path / "LibriSpeech")
  src = librispeech.LibriSpeechSource(str(root), ("train-clean-100",), 20000, 20)
  lengths = [src.num_samples(i) for i in range(len(src))]
  assert sorted(lengths) == [6400, 6400, 19200]
  for idx, length in librispeech.bucket_batches(lengths, 2, (8000, 20000)):
    batch = librispeech.pad_rows([src.example(i, length) for i in idx], 2)
    assert batch["input_values"].shape == (2, length)
    assert batch["attention_mask"].sum(1).tolist()[:len(idx)] == [lengths[i] for i in idx]
    assert batch["mask"].tolist() == [True] * len(idx) + [False] * (2 - len(idx))
