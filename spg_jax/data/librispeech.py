"""Speech recognition data in the LibriSpeech layout, with wav2vec2's character vocabulary.

Layout (as the LibriSpeech archives unpack; `root` is e.g. `LibriSpeech/`):

  root/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   "<utterance-id> TEXT"
  root/<subset>/<speaker>/<chapter>/<utterance-id>.flac (or .wav)   16 kHz mono

`<subset>` is e.g. `train-clean-100`, `dev-clean`, `test-clean`. WAV files are read with
the standard library; FLAC (LibriSpeech's own format) needs the `soundfile` package
(`pip install soundfile`), else a one-line error names it.

The vocabulary (`VOCAB`) is that of Hugging Face's English wav2vec2 CTC models
(`facebook/wav2vec2-base-960h`, `-large-960h-lv60-self`): 0 `<pad>` (also CTC's blank),
1 `<s>`, 2 `</s>`, 3 `<unk>`, 4 `|` (the word delimiter, a space), then the 26 letters and
the apostrophe by frequency; 32 tokens, so a converted checkpoint's `lm_head` reads it.
"""
from __future__ import annotations

import dataclasses
import os
import wave
from typing import Sequence

import numpy as np

VOCAB = ("<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N", "I", "H", "S", "R",
         "D", "L", "U", "M", "W", "C", "F", "G", "Y", "P", "B", "V", "K", "'", "X", "J",
         "Q", "Z")
BLANK_ID, UNK_ID, DELIMITER_ID = 0, 3, 4
_IDS = {c: i for i, c in enumerate(VOCAB)}
SAMPLE_RATE = 16_000
AUDIO_SUFFIXES = (".flac", ".wav")


def encode(text: str) -> np.ndarray:
  """int32 token ids of `text`: upper-cased, spaces -> "|" (runs of spaces as one),
  characters outside the vocabulary -> `<unk>`."""
  words = text.upper().split()
  chars = "|".join(words)
  return np.asarray([_IDS.get(c, UNK_ID) for c in chars], np.int32)


def decode(ids: Sequence[int]) -> str:
  """The text of token ids: "|" -> space; blank, `<s>`, `</s>` dropped; `<unk>` as "?"."""
  out = []
  for i in ids:
    i = int(i)
    if i == DELIMITER_ID:
      out.append(" ")
    elif i == UNK_ID:
      out.append("?")
    elif 4 < i < len(VOCAB):
      out.append(VOCAB[i])
  return "".join(out).strip()


@dataclasses.dataclass(frozen=True)
class Utterance:
  """One transcribed recording: its id, audio path and transcript."""
  id: str
  path: str
  text: str


def read_wav(path: str) -> np.ndarray:
  """float32 [n] in [-1, 1) of a 16 kHz mono 16-bit WAV; one-line ValueError otherwise."""
  with wave.open(path, "rb") as w:
    rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
    raw = w.readframes(w.getnframes())
  if (rate, channels, width) != (SAMPLE_RATE, 1, 2):
    raise ValueError(f"{path}: {rate} Hz, {channels} channel(s), {8 * width}-bit; needs 16 "
                     "kHz mono 16-bit")
  return np.frombuffer(raw, np.int16).astype(np.float32) / 32768.0


def read_audio(path: str) -> np.ndarray:
  """float32 [n] of a `.wav` (standard library) or `.flac` (needs `soundfile`) file."""
  if path.endswith(".wav"):
    return read_wav(path)
  try:
    import soundfile  # pylint: disable=g-import-not-at-top  (optional: FLAC only)
  except ImportError:
    raise ValueError(f"{path}: reading FLAC needs the soundfile package (pip install "
                     "soundfile), or convert the files to 16 kHz WAV") from None
  audio, rate = soundfile.read(path, dtype="float32")
  if rate != SAMPLE_RATE or audio.ndim != 1:
    raise ValueError(f"{path}: {rate} Hz, shape {list(audio.shape)}; needs 16 kHz mono")
  return audio


def list_utterances(root: str, subsets: Sequence[str]) -> list[Utterance]:
  """Every utterance of `subsets` under `root`, sorted by id.

  Raises:
    ValueError (one line): a missing subset folder, a transcript line without its audio
      file, or no utterances at all.
  """
  out = []
  for subset in subsets:
    base = os.path.join(root, subset)
    if not os.path.isdir(base):
      raise ValueError(f"librispeech: no folder {base!r} (data_dir must hold the subsets "
                       f"{list(subsets)}, e.g. data_dir=.../LibriSpeech)")
    for folder, _, files in sorted(os.walk(base)):
      for name in sorted(f for f in files if f.endswith(".trans.txt")):
        with open(os.path.join(folder, name), encoding="utf-8") as f:
          for line in f:
            if not line.strip():
              continue
            uid, _, text = line.strip().partition(" ")
            path = next((os.path.join(folder, uid + s) for s in AUDIO_SUFFIXES
                         if os.path.isfile(os.path.join(folder, uid + s))), None)
            if path is None:
              raise ValueError(f"librispeech: {os.path.join(folder, name)} names {uid!r} "
                               f"but there is no {uid}.flac or {uid}.wav next to it")
            out.append(Utterance(uid, path, text))
  if not out:
    raise ValueError(f"librispeech: no transcripts (*.trans.txt) under {root!r} in "
                     f"{list(subsets)}")
  return sorted(out, key=lambda u: u.id)


def audio_length(path: str) -> int:
  """Samples of an audio file, from its header (WAV: standard library; FLAC: soundfile)."""
  if path.endswith(".wav"):
    with wave.open(path, "rb") as w:
      return int(w.getnframes())
  try:
    import soundfile  # pylint: disable=g-import-not-at-top  (optional: FLAC only)
  except ImportError:
    raise ValueError(f"{path}: reading FLAC needs the soundfile package (pip install "
                     "soundfile), or convert the files to 16 kHz WAV") from None
  return int(soundfile.info(path).frames)


class LibriSpeechSource:
  """Random-access examples of the utterances of `subsets` for the `ctc` task, read from
  disk on access (a LibriSpeech subset does not fit in memory as padded arrays):

    input_values   float32 [max_samples]  normalised per utterance (zero mean, unit
                                          variance over its real samples), 0 on padding
    attention_mask int32   [max_samples]  1 = real sample
    label          int32   [max_tokens]   `encode(text)`, 0 on padding
    label_paddings float32 [max_tokens]   1.0 on padding

  Utterances longer than `max_samples` samples or `max_tokens` tokens are left out (as the
  fine-tuning recipes filter by duration); `len(source)` counts the rest.

  Raises:
    ValueError (one line): see `list_utterances`; every utterance too long.
  """

  def __init__(self, root: str, subsets: Sequence[str], max_samples: int, max_tokens: int):
    self.max_samples, self.max_tokens = int(max_samples), int(max_tokens)
    self._rows = [u for u in list_utterances(root, subsets)
                  if audio_length(u.path) <= self.max_samples
                  and 0 < len(encode(u.text)) <= self.max_tokens]
    if not self._rows:
      raise ValueError(f"librispeech: every utterance under {root!r} {list(subsets)} is "
                       f"longer than max_samples={max_samples} or max_tokens={max_tokens}")

  def __len__(self) -> int:
    return len(self._rows)

  def utterance(self, i: int) -> Utterance:
    return self._rows[i]

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    return self.example(i, self.max_samples)

  def num_samples(self, i: int) -> int:
    """Samples of utterance `i` (from its file's header)."""
    return audio_length(self._rows[int(i)].path)

  def example(self, i: int, length: int) -> dict[str, np.ndarray]:
    """Utterance `i` padded to `length` samples (>= its own; see `bucket_batches`)."""
    u = self._rows[int(i)]
    audio, tokens = read_audio(u.path), encode(u.text)
    if len(audio) > length:
      raise ValueError(f"{u.path}: {len(audio)} samples, more than length={length}")
    x = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
    out = {"input_values": np.zeros(length, np.float32),
           "attention_mask": np.zeros(length, np.int32),
           "label": np.zeros(self.max_tokens, np.int32),
           "label_paddings": np.ones(self.max_tokens, np.float32)}
    out["input_values"][:len(x)] = x
    out["attention_mask"][:len(x)] = 1
    out["label"][:len(tokens)] = tokens
    out["label_paddings"][:len(tokens)] = 0.0
    return out


def bucket_of(n: int, buckets: Sequence[int]) -> int:
  """The smallest bucket length >= n; one-line ValueError when n exceeds them all."""
  for b in sorted(buckets):
    if n <= b:
      return int(b)
  raise ValueError(f"length {n}: longer than the largest bucket {max(buckets)}")


def bucket_batches(lengths: Sequence[int], batch_size: int, buckets: Sequence[int],
                   seed: int = 0, shuffle: bool = True) -> list[tuple[np.ndarray, int]]:
  """Length bucketing: `[(indices [<= batch_size], bucket length)]`, every example in the
  batch of the smallest bucket that holds it, so a batch is padded to its bucket instead of
  to the longest utterance of the set (a few buckets: a few compiled shapes). Within a
  bucket the order is shuffled (seeded) and cut into batches (the last may be short: pad
  it with `pad_rows`); the batches are then shuffled across buckets."""
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size!r}: must be >= 1")
  rng = np.random.default_rng(seed)
  groups: dict[int, list[int]] = {}
  for i, n in enumerate(lengths):
    groups.setdefault(bucket_of(int(n), buckets), []).append(i)
  batches = []
  for length in sorted(groups):
    idx = np.asarray(groups[length])
    if shuffle:
      idx = rng.permutation(idx)
    batches.extend((idx[k:k + batch_size], length) for k in range(0, len(idx), batch_size))
  if shuffle:
    batches = [batches[k] for k in rng.permutation(len(batches))]
  return batches


def pad_rows(examples: Sequence[dict[str, np.ndarray]], batch_size: int
             ) -> dict[str, np.ndarray]:
  """Stacks examples of one bucket into `[batch_size, ...]` arrays, zero rows after them,
  and a bool `"mask" [batch_size]` (False on the padding rows), as the pipeline's padded
  batches."""
  if not 1 <= len(examples) <= batch_size:
    raise ValueError(f"{len(examples)} examples for batch_size={batch_size}")
  out = {k: np.zeros((batch_size,) + v.shape, v.dtype) for k, v in examples[0].items()}
  for row, example in enumerate(examples):
    for k, v in example.items():
      out[k][row] = v
  out["mask"] = np.arange(batch_size) < len(examples)
  return out
