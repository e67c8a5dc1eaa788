"""WER and CER (`spg_jax.tasks.metrics.error_rates`) against a hand-computed table, on text
through the character vocabulary of wav2vec2's English CTC models (spaces are the "|"
token, which counts as a character, as jiwer's cer counts spaces)."""
import pytest

from spg_jax.data import librispeech
from spg_jax.tasks import metrics

# (reference, hypothesis, word edits, reference words, char edits, reference chars)
TABLE = [
    ("THE CAT SAT", "THE CAT SAT", 0, 3, 0, 11),  # exact
    ("THE CAT SAT", "THE BAT SAT", 1, 3, 1, 11),  # one substitution (C -> B)
    ("HELLO WORLD", "HELLO", 1, 2, 6, 11),  # one word deleted: " WORLD" (6 chars)
    ("A B", "A B C", 1, 2, 2, 3),  # one word inserted: " C" (2 chars)
    ("ONE TWO", "ONE TOO", 1, 2, 1, 7),  # one word wrong by one letter (W -> O)
    ("IT'S", "ITS", 1, 1, 1, 4),  # the apostrophe is a character of the vocabulary
]


@pytest.mark.parametrize("row", TABLE, ids=[r[0] + "/" + r[1] for r in TABLE])
def test_each_row(row):
  ref, hyp, word_edits, words, char_edits, chars = row
  rates = metrics.error_rates([librispeech.encode(hyp)], [librispeech.encode(ref)],
                              librispeech.DELIMITER_ID)
  assert (rates["word_edits"], rates["words"]) == (word_edits, words)
  assert (rates["char_edits"], rates["chars"]) == (char_edits, chars)
  assert rates["wer"] == pytest.approx(word_edits / words)
  assert rates["cer"] == pytest.approx(char_edits / chars)


def test_corpus_rates_are_total_edits_over_total_length():
  refs = [librispeech.encode(r[0]) for r in TABLE]
  hyps = [librispeech.encode(r[1]) for r in TABLE]
  rates = metrics.error_rates(hyps, refs, librispeech.DELIMITER_ID)
  # Words: (0 + 1 + 1 + 1 + 1 + 1) / (3 + 3 + 2 + 2 + 2 + 1) = 5 / 13;
  # chars: (0 + 1 + 6 + 2 + 1 + 1) / (11 + 11 + 11 + 3 + 7 + 4) = 11 / 47.
  assert rates["wer"] == pytest.approx(5 / 13)
  assert rates["cer"] == pytest.approx(11 / 47)
  # Not the mean of the per-row rates.
  assert rates["wer"] != pytest.approx(sum(r[2] / r[3] for r in TABLE) / len(TABLE))


def test_vocabulary_round_trip():
  ids = librispeech.encode("  hello   world's 7 ")
  assert librispeech.decode(ids) == "HELLO WORLD'S ?"
  assert ids.tolist()[:5] == [11, 5, 15, 15, 8] and ids.tolist()[5] == 4
  assert len(librispeech.VOCAB) == 32 and librispeech.VOCAB[librispeech.BLANK_ID] == "<pad>"
