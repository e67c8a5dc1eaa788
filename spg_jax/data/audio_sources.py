"""Audio datasets of the catalog (kind "audio"): generated or built locally, never downloaded.

* "spoken_digits": the espeak-ng spoken digits (`spg_jax.data.spoken_digits`), generated on
  first use into `data_dir` (default `$XDG_CACHE_HOME/spg_jax` or `~/.cache/spg_jax`) and
  read from there afterwards. Its splits are its own (train / validation / test drawn from
  different seeds), so `validation_fraction` does not apply. Preprocessing options: the
  clips per word of each split (`train_per_word`, `validation_per_word`, `test_per_word`).
* "speech_commands": Speech Commands v0.01 as SUPERB's keyword spotting (12 labels), as
  `python -m spg_jax.data.speech_commands` built it into `data_dir`, read on access.
* "librispeech": transcribed speech in the LibriSpeech layout under `data_dir`
  (`spg_jax.data.librispeech`; train = `train-clean-100`, validation = `dev-clean`, test =
  `test-clean`), read from disk on access, for the `ctc` task with wav2vec2's character
  vocabulary (32 tokens, blank 0, word delimiter 4). Options: `max_samples` (utterances
  are padded to it; longer ones are left out) and `max_tokens` (the same for transcripts).

Keyword-spotting (spoken digits, speech commands) examples: `{"input_values": float32 [16000] (normalised per clip), "attention_mask": int32
[16000] (1 = real sample), "label": int32 []}`; a model reads `input_values` alone (a
waveform CNN) or with its mask (wav2vec2: `config.task.inputs`).
"""
from __future__ import annotations

import functools
import os
from typing import Any, Mapping

import numpy as np

from spg_jax.data import librispeech
from spg_jax.data import sources
from spg_jax.data import speech_commands
from spg_jax.data import spoken_digits

AUDIO = ("spoken_digits", "speech_commands", "librispeech")
LIBRISPEECH_SUBSETS = {"train": "train-clean-100", "validation": "dev-clean",
                       "test": "test-clean"}
# Option name -> split of `spoken_digits.load`'s sizes.
SPOKEN_DIGITS_OPTIONS = {"train_per_word": "train", "validation_per_word": "validation",
                         "test_per_word": "test"}


def default_cache_dir() -> str:
  """Where generated audio sets are kept: `$XDG_CACHE_HOME/spg_jax` or `~/.cache/spg_jax`."""
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(root, "spg_jax")


def spoken_digits_sizes(options: Mapping[str, Any]) -> dict[str, int]:
  """`spoken_digits.load`'s `sizes` from the catalog options (defaults filled in)."""
  return {split: int(options.get(name, spoken_digits.DEFAULT_SIZES[split]))
          for name, split in SPOKEN_DIGITS_OPTIONS.items()}


@functools.lru_cache(maxsize=2)
def _spoken_digits_arrays(cache_dir: str, sizes: tuple) -> dict[str, dict[str, np.ndarray]]:
  # Cached per process: a protocol builds dozens of iterators over the same clips.
  splits = spoken_digits.load(cache_dir, dict(sizes))
  out = {}
  for split, d in splits.items():
    arrays = {**spoken_digits.to_model_inputs(d["audio"]), "label": d["label"]}
    for a in arrays.values():
      a.setflags(write=False)  # shared between sources: forbid edits
    out[split] = arrays
  return out


@functools.lru_cache(maxsize=6)
def _librispeech_source(root: str, subset: str, max_samples: int, max_tokens: int
                        ) -> librispeech.LibriSpeechSource:
  # Cached per process: listing a subset reads every transcript and audio header.
  return librispeech.LibriSpeechSource(root, (subset,), max_samples, max_tokens)


def make_audio_parts(name: str, split: str, *, data_dir: str | None,
                     options: Mapping[str, Any]) -> sources.Parts:
  """`sources.Parts` of an audio dataset's split (already features: identity transform).

  Raises:
    ValueError (one line): an unknown audio dataset; espeak-ng missing (spoken_digits, on
      first use, with the install command).
  """
  if name == "speech_commands":
    if not data_dir:
      raise ValueError("dataset.data_dir: speech_commands needs the folder the builder "
                       "wrote (python -m spg_jax.data.speech_commands --out=DIR)")
    return sources.Parts(speech_commands.SpeechCommandsSource(data_dir, split),
                         sources.identity, None)
  if name == "librispeech":
    if not data_dir:
      raise ValueError("dataset.data_dir: librispeech needs the folder holding "
                       f"{sorted(set(LIBRISPEECH_SUBSETS.values()))} (LibriSpeech layout)")
    return sources.Parts(_librispeech_source(data_dir, LIBRISPEECH_SUBSETS[split],
                                             int(options["max_samples"]),
                                             int(options["max_tokens"])),
                         sources.identity, None)
  if name != "spoken_digits":
    raise ValueError(f"dataset={name!r}: not an audio dataset; audio datasets are "
                     f"{list(AUDIO)}")
  sizes = tuple(sorted(spoken_digits_sizes(options).items()))
  arrays = _spoken_digits_arrays(data_dir or default_cache_dir(), sizes)[split]
  return sources.Parts(sources.ArraySource(dict(arrays)), sources.identity, None)
