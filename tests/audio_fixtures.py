"""Tiny audio folders for the tests, written from seeded noise: a Speech Commands v0.01
pair of folders and a LibriSpeech-layout folder of WAVs with transcripts."""
import os
import wave

import numpy as np


def write_wav(path, samples: np.ndarray, rate: int = 16000) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with wave.open(str(path), "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(rate)
    w.writeframes(np.asarray(samples, "<i2").tobytes())


def clip(seed: int, n: int = 16000) -> np.ndarray:
  return np.random.default_rng(seed).integers(-3000, 3000, n).astype(np.int16)


def fake_speech_commands(root):
  """raw/: yes (3), no (2), cat (2, unknown), a 2.5 s noise file; test/: 4 clips."""
  raw, test = root / "raw", root / "test"
  files = {"yes/a_nohash_0.wav": 16000, "yes/b_nohash_0.wav": 12000,
           "yes/c_nohash_0.wav": 16000, "no/a_nohash_0.wav": 16000,
           "no/b_nohash_0.wav": 16000, "cat/a_nohash_0.wav": 16000,
           "cat/b_nohash_0.wav": 16000}
  for i, (rel, n) in enumerate(files.items()):
    write_wav(raw / rel, clip(i, n))
  write_wav(raw / "_background_noise_" / "white.wav", clip(99, 40000))  # 2 whole seconds
  (raw / "validation_list.txt").write_text("yes/b_nohash_0.wav\n")
  (raw / "testing_list.txt").write_text("no/b_nohash_0.wav\ncat/b_nohash_0.wav\n")
  for i, rel in enumerate(("yes/t.wav", "go/t.wav", "_silence_/t.wav", "_unknown_/t.wav")):
    write_wav(test / rel, clip(50 + i))
  return raw, test


TRANSCRIPTS = {"train-clean-100": {"19-198-0000": "ONE TWO", "19-198-0001": "THREE",
                                   "19-198-0002": "A VERY LONG ONE"},
               "dev-clean": {"84-121-0000": "FOUR"}, "test-clean": {"61-70-0000": "FIVE SIX"}}


def fake_librispeech(root, seconds: float = 0.4, transcripts=None):
  """`transcripts` (default TRANSCRIPTS): subset -> {utterance id: text}; a text with
  "LONG" gets 3x the audio."""
  for subset, rows in (transcripts or TRANSCRIPTS).items():
    for uid, text in rows.items():
      speaker, chapter, _ = uid.split("-")
      folder = root / subset / speaker / chapter
      n = int(seconds * 16000) * (3 if "LONG" in text else 1)
      write_wav(folder / f"{uid}.wav", clip(len(text), n))
    with open(folder / f"{speaker}-{chapter}.trans.txt", "w") as f:
      f.writelines(f"{uid} {text}\n" for uid, text in rows.items())
  return root
