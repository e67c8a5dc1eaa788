"""Spoken digits ("zero" .. "nine") synthesised with espeak-ng: an offline keyword-spotting set.

Every clip is one word spoken by one of `VOICES` at a random speed and pitch, resampled from
espeak-ng's 22,050 Hz to 16 kHz, placed at a random offset in a 1 s buffer (cropped when
longer), mixed with white noise at a random signal-to-noise ratio and stored as int16, as
Speech Commands clips are. Everything is drawn from a seeded numpy generator per split, so
the same arguments give the same arrays (espeak-ng itself is deterministic); the arrays are
written once to `cache_dir` and read from there afterwards.

espeak-ng is a Debian/Ubuntu package (`apt-get install -y espeak-ng`); without it the first
use is one ValueError line naming that command. Nothing is downloaded.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import os
import shutil
import subprocess
import wave
from typing import Mapping

import numpy as np

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# espeak-ng voices with variants (+f: female, +m: male timbres) for speaker variety.
VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb+m3", "en-gb-scotland", "en-us+f5",
          "en-029", "en-gb-x-rp+m5")
SAMPLE_RATE = 16_000
CLIP_SAMPLES = SAMPLE_RATE  # 1 s, as Speech Commands
SPEEDS = (120, 200)  # words per minute, uniform
PITCHES = (20, 80)  # espeak-ng's 0..99 scale, uniform
SNR_DB = (10.0, 30.0)  # uniform
INSTALL = "apt-get install -y espeak-ng"
# Per-split example counts per word and their generator seeds.
DEFAULT_SIZES = {"train": 60, "validation": 10, "test": 20}
SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}


def espeak_binary() -> str:
  """The espeak-ng executable, else a one-line ValueError with the install command."""
  path = shutil.which("espeak-ng")
  if path is None:
    raise ValueError(f"spoken_digits: needs the espeak-ng speech synthesizer, which is not "
                     f"installed; install it with: {INSTALL}")
  return path


def synthesize(word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
  """float32 [n] in [-1, 1] at 16 kHz: espeak-ng's WAV (22,050 Hz, int16) resampled."""
  from scipy import signal  # pylint: disable=g-import-not-at-top  (only when generating)
  out = subprocess.run([espeak_binary(), "-v", voice, "-s", str(speed), "-p", str(pitch),
                        "--stdout", word], check=True, capture_output=True).stdout
  with wave.open(io.BytesIO(out)) as w:
    rate, raw = w.getframerate(), w.readframes(w.getnframes())
  audio = np.frombuffer(raw, np.int16).astype(np.float32) / 32768.0
  g = np.gcd(SAMPLE_RATE, rate)
  return signal.resample_poly(audio, SAMPLE_RATE // g, rate // g).astype(np.float32)


def make_clip(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """int16 [CLIP_SAMPLES]: `audio` at a random offset (or a random crop), plus noise."""
  clip = np.zeros(CLIP_SAMPLES, np.float32)
  if len(audio) >= CLIP_SAMPLES:
    start = int(rng.integers(0, len(audio) - CLIP_SAMPLES + 1))
    clip[:] = audio[start:start + CLIP_SAMPLES]
  else:
    start = int(rng.integers(0, CLIP_SAMPLES - len(audio) + 1))
    clip[start:start + len(audio)] = audio
  power = float(np.mean(np.square(audio))) if len(audio) else 0.0
  snr = rng.uniform(*SNR_DB)
  noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr / 10)) if power > 0 else 1e-3,
                     CLIP_SAMPLES)
  clip = np.clip(clip + noise, -1.0, 1.0)
  return np.round(clip * 32767).astype(np.int16)


def generate_split(per_word: int, seed: int, workers: int = 4) -> dict[str, np.ndarray]:
  """`{"audio": int16 [10 * per_word, 16000], "label": int32 [10 * per_word]}`, word-major
  order; voice, speed, pitch, offset and noise drawn from `seed`. espeak-ng runs in
  `workers` threads (subprocesses; the draws are made in order first, so the result does
  not depend on `workers`)."""
  rng = np.random.default_rng(seed)
  jobs, labels = [], []
  for label, word in enumerate(WORDS):
    for _ in range(per_word):
      voice = VOICES[int(rng.integers(len(VOICES)))]
      jobs.append((word, voice, int(rng.integers(*SPEEDS)), int(rng.integers(*PITCHES))))
      labels.append(label)
  with concurrent.futures.ThreadPoolExecutor(max(1, int(workers))) as pool:
    spoken = list(pool.map(lambda job: synthesize(*job), jobs))
  audio = [make_clip(a, rng) for a in spoken]
  return {"audio": np.stack(audio), "label": np.asarray(labels, np.int32)}


def _check_sizes(sizes: Mapping[str, int]) -> dict[str, int]:
  out = {}
  for split in SPLIT_SEEDS:
    value = sizes.get(split)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"spoken_digits sizes[{split!r}]={value!r}: must be an integer >= 1 "
                       "(clips per word)")
    out[split] = value
  return out


def load(cache_dir: str, sizes: Mapping[str, int] | None = None) -> dict[str, dict]:
  """`{split: {"audio": int16 [N, 16000], "label": int32 [N]}}`, generated into `cache_dir`
  on first use (one `.npz` per set of sizes) and read from there afterwards.

  Raises:
    ValueError (one line): espeak-ng not installed (names the install command), bad sizes.
  """
  sizes = _check_sizes(DEFAULT_SIZES if sizes is None else sizes)
  key = json.dumps({"v": 1, "sizes": sizes, "voices": VOICES}, sort_keys=True)
  path = os.path.join(cache_dir, f"spoken_digits_{hashlib.sha1(key.encode()).hexdigest()[:10]}"
                                 ".npz")
  if os.path.isfile(path):
    with np.load(path) as data:
      return {s: {"audio": data[f"{s}/audio"], "label": data[f"{s}/label"]}
              for s in SPLIT_SEEDS}
  espeak_binary()  # the one-line error before anything is written
  splits = {s: generate_split(sizes[s], SPLIT_SEEDS[s]) for s in SPLIT_SEEDS}
  os.makedirs(cache_dir, exist_ok=True)
  tmp = path + f".tmp{os.getpid()}.npz"
  np.savez(tmp, **{f"{s}/{k}": v for s, d in splits.items() for k, v in d.items()})
  os.replace(tmp, path)  # whole or not at all
  return splits


def to_model_inputs(audio: np.ndarray) -> dict[str, np.ndarray]:
  """wav2vec2's batch features from int16 clips: `input_values` float32 [N, L] scaled to
  [-1, 1) and normalised per clip to zero mean, unit variance (Wav2Vec2FeatureExtractor's
  `do_normalize`), `attention_mask` int32 [N, L] (every sample real: fixed-length clips)."""
  x = audio.astype(np.float32) / 32768.0
  x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-7)
  return {"input_values": x.astype(np.float32),
          "attention_mask": np.ones(audio.shape, np.int32)}


def dataset(cache_dir: str, sizes: Mapping[str, int] | None = None):
  """The set as a `spg_jax.data.ArrayDataset` for the `sequence_classification` task with
  `config.task.inputs=("input_values", "attention_mask")` (10 classes)."""
  from spg_jax.data.arrays import ArrayDataset  # pylint: disable=g-import-not-at-top
  splits = load(cache_dir, sizes)
  return ArrayDataset("spoken_digits", {
      s: {**to_model_inputs(d["audio"]), "label": d["label"]} for s, d in splits.items()},
      num_classes=len(WORDS), task="sequence_classification")
