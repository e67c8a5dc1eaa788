"""Speech Commands v0.01 for SUPERB keyword spotting: a one-time builder from the raw files
(no TensorFlow, no download) and the reader of what it writes.

  python -m spg_jax.data.speech_commands --raw=DIR --test=DIR --out=DIR

`--raw`: the unpacked `speech_commands_v0.01.tar.gz` (one folder per word of 16 kHz 16-bit
mono WAV clips, `_background_noise_/`, `validation_list.txt`, `testing_list.txt`);
`--test`: the unpacked `speech_commands_test_set_v0.01.tar.gz` (folders of the 10 words,
`_silence_` and `_unknown_`), SUPERB's test set (3081 clips).

Splits, as SUPERB's: validation = the files of `validation_list.txt`, train = every other
file of the raw folder except those of `testing_list.txt`; words outside the 10 are
`_unknown_`. `_silence_` in train and validation: the background-noise recordings cut
into 1 s clips (every 10th clip of each recording to validation, the rest to train; SUPERB
crops random 1 s windows of the whole recordings on the fly instead). Labels in SUPERB's
order (`LABELS`, as `superb/wav2vec2-base-superb-ks`'s id2label).

Written: `<out>/speech_commands_v0.01/{train,validation,test}.array_record` (one record
per clip: int32 little-endian label, then the int16 little-endian samples) and
`info.json` (labels, counts). Read with `SpeechCommandsSource` (no TensorFlow).
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import wave
from typing import Sequence

import numpy as np

LABELS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
          "_silence_", "_unknown_")
WORDS = LABELS[:10]
SILENCE, UNKNOWN = LABELS.index("_silence_"), LABELS.index("_unknown_")
NOISE_DIR = "_background_noise_"
SAMPLE_RATE = 16_000
CLIP_SAMPLES = SAMPLE_RATE
SPLITS = ("train", "validation", "test")
VALIDATION_EVERY = 10  # every 10th 1 s noise clip goes to validation
FOLDER = "speech_commands_v0.01"
_HEADER = struct.Struct("<i")


def read_wav_int16(path: str) -> np.ndarray:
  """int16 [n] samples of a 16 kHz mono 16-bit WAV; one-line ValueError otherwise."""
  with wave.open(path, "rb") as w:
    rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
    raw = w.readframes(w.getnframes())
  if (rate, channels, width) != (SAMPLE_RATE, 1, 2):
    raise ValueError(f"{path}: {rate} Hz, {channels} channel(s), {8 * width}-bit; Speech "
                     "Commands clips are 16 kHz mono 16-bit")
  return np.frombuffer(raw, "<i2").astype(np.int16)


def label_of(word: str) -> int:
  """The SUPERB label id of a folder name."""
  if word in WORDS:
    return LABELS.index(word)
  return SILENCE if word in ("_silence_", NOISE_DIR) else UNKNOWN


def _read_list(path: str) -> set[str]:
  if not os.path.isfile(path):
    raise ValueError(f"speech_commands: no {path} (--raw must be the unpacked "
                     "speech_commands_v0.01 folder)")
  with open(path, encoding="utf-8") as f:
    return {line.strip() for line in f if line.strip()}


def _wavs(root: str) -> list[str]:
  """Relative `word/file.wav` paths under `root`, sorted, background noise excluded."""
  out = []
  for word in sorted(os.listdir(root)):
    folder = os.path.join(root, word)
    if word == NOISE_DIR or not os.path.isdir(folder):
      continue
    out.extend(f"{word}/{name}" for name in sorted(os.listdir(folder)) if name.endswith(".wav"))
  return out


def split_files(raw: str, test: str) -> dict[str, list[tuple[str, int]]]:
  """`{split: [(absolute path, label)]}` of the word clips (no noise), sorted by path."""
  validation = _read_list(os.path.join(raw, "validation_list.txt"))
  testing = _read_list(os.path.join(raw, "testing_list.txt"))
  out = {s: [] for s in SPLITS}
  for rel in _wavs(raw):
    split = ("validation" if rel in validation else None if rel in testing else "train")
    if split is not None:
      out[split].append((os.path.join(raw, rel), label_of(rel.split("/")[0])))
  if not os.path.isdir(test):
    raise ValueError(f"speech_commands: no folder {test!r} (--test must be the unpacked "
                     "speech_commands_test_set_v0.01)")
  out["test"] = [(os.path.join(test, rel), label_of(rel.split("/")[0])) for rel in _wavs(test)]
  for split, rows in out.items():
    if not rows:
      raise ValueError(f"speech_commands: split {split!r} has no clips")
  return out


def noise_clips(raw: str) -> dict[str, list[np.ndarray]]:
  """`{"train": [...], "validation": [...]}` int16 [16000] clips cut from the background
  noise recordings (their tails shorter than 1 s dropped)."""
  folder = os.path.join(raw, NOISE_DIR)
  out = {"train": [], "validation": []}
  if not os.path.isdir(folder):
    raise ValueError(f"speech_commands: no {folder} (the _silence_ class is cut from it)")
  for name in sorted(os.listdir(folder)):
    if not name.endswith(".wav"):
      continue
    audio = read_wav_int16(os.path.join(folder, name))
    for i in range(len(audio) // CLIP_SAMPLES):
      split = "validation" if i % VALIDATION_EVERY == 0 else "train"
      out[split].append(audio[i * CLIP_SAMPLES:(i + 1) * CLIP_SAMPLES])
  return out


def encode_record(audio: np.ndarray, label: int) -> bytes:
  return _HEADER.pack(int(label)) + np.asarray(audio, "<i2").tobytes()


def decode_record(record: bytes) -> tuple[np.ndarray, int]:
  """(int16 [n] samples, label) of one record."""
  (label,) = _HEADER.unpack_from(record)
  return np.frombuffer(record, "<i2", offset=_HEADER.size).astype(np.int16), int(label)


def build(raw: str, test: str, out: str) -> str:
  """Writes the three splits into `<out>/speech_commands_v0.01/`; returns that folder.

  Raises:
    ValueError (one line): a missing list, folder or split; a clip not 16 kHz mono 16-bit.
  """
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  files = split_files(raw, test)
  noise = noise_clips(raw)
  folder = os.path.join(out, FOLDER)
  os.makedirs(folder, exist_ok=True)
  counts = {}
  for split in SPLITS:
    tmp = os.path.join(folder, f"{split}.array_record.tmp")
    writer = array_record_module.ArrayRecordWriter(tmp, "group_size:1")
    per_label = [0] * len(LABELS)
    for path, label in files[split]:
      writer.write(encode_record(read_wav_int16(path), label))
      per_label[label] += 1
    for clip in noise.get(split, ()):
      writer.write(encode_record(clip, SILENCE))
      per_label[SILENCE] += 1
    writer.close()
    os.replace(tmp, os.path.join(folder, f"{split}.array_record"))  # whole or not at all
    counts[split] = dict(zip(LABELS, per_label))
  with open(os.path.join(folder, "info.json"), "w", encoding="utf-8") as f:
    json.dump({"labels": list(LABELS), "counts": counts, "sample_rate": SAMPLE_RATE}, f,
              indent=1)
  return folder


def split_path(data_dir: str, split: str) -> str:
  """The array_record file of `split` under `data_dir` (the builder's `--out`)."""
  path = os.path.join(data_dir, FOLDER, f"{split}.array_record")
  if not os.path.isfile(path):
    raise ValueError(f"speech_commands: no {path}; build it once with: python -m "
                     "spg_jax.data.speech_commands --raw=DIR --test=DIR "
                     f"--out={data_dir}")
  return path


class SpeechCommandsSource:
  """Random-access examples of one split, decoded on access:
  `{"input_values": float32 [16000] (scaled to [-1, 1), normalised per clip over its
  real samples), "attention_mask": int32 [16000] (1 = real sample; shorter clips are
  zero-padded, longer ones cut), "label": int32 []}`."""

  def __init__(self, data_dir: str, split: str):
    from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
    self._path = split_path(data_dir, split)
    self._source = array_record_data_source.ArrayRecordDataSource([self._path])

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    audio, label = decode_record(self._source[int(i)])
    x = audio[:CLIP_SAMPLES].astype(np.float32) / 32768.0
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7) if len(x) else x
    values = np.zeros(CLIP_SAMPLES, np.float32)
    mask = np.zeros(CLIP_SAMPLES, np.int32)
    values[:len(x)], mask[:len(x)] = x, 1
    return {"input_values": values, "attention_mask": mask, "label": np.int32(label)}

  def __getstate__(self):  # grain's workers pickle sources: reopen the file there
    return {"path": self._path}

  def __setstate__(self, state):
    from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
    self._path = state["path"]
    self._source = array_record_data_source.ArrayRecordDataSource([self._path])


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--raw", required=True, help="unpacked speech_commands_v0.01")
  parser.add_argument("--test", required=True,
                      help="unpacked speech_commands_test_set_v0.01")
  parser.add_argument("--out", required=True, help="data_dir to write into")
  args = parser.parse_args(argv)
  try:
    folder = build(args.raw, args.test, args.out)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  with open(os.path.join(folder, "info.json"), encoding="utf-8") as f:
    counts = json.load(f)["counts"]
  print(f"wrote {folder}: " + ", ".join(f"{s} {sum(c.values())}" for s, c in counts.items()))
  return 0


if __name__ == "__main__":
  sys.exit(main())
