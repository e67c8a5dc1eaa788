"""SYNTHETIC text classification for the offline demo: sentences generated procedurally with
a fixed seed (no download, no files), not a real data set.

A sentence is 1 or 3 clauses "the <noun> was [not] <adjective>", joined by "and" / "but";
each clause votes +1 (positive adjective) or -1 (negative), "not" flips the vote; the label
is 1 when the votes sum to more than 0 (an odd number of clauses: never a tie). Learning it
needs word order (negation applies to the next adjective) and counting over clauses.
The vocabulary is built from the generator's words on the fly (`spg_jax.text.vocab`).
"""
from __future__ import annotations

import functools

import numpy as np

NOUNS = ("film", "plot", "cast", "score", "ending", "script", "story", "pacing")
POSITIVE = ("good", "great", "fine", "superb", "lovely", "clever")
NEGATIVE = ("bad", "dull", "weak", "awful", "boring", "clumsy")
JOINERS = ("and", "but")
NUM_TRAIN_POOL, NUM_TEST = 4000, 1000
SEEDS = {"train": 0, "test": 1}


def generate(n: int, seed: int) -> tuple[list, np.ndarray]:
  """`n` sentences and their int32 labels `[n]` from generator `seed`."""
  rng = np.random.default_rng(seed)
  sentences, labels = [], np.zeros(n, np.int32)
  for i in range(n):
    clauses, votes = [], 0
    for _ in range(int(rng.choice((1, 3)))):
      positive = bool(rng.integers(2))
      negated = bool(rng.random() < 0.4)
      adjective = rng.choice(POSITIVE if positive else NEGATIVE)
      clauses.append(f"the {rng.choice(NOUNS)} was {'not ' if negated else ''}{adjective}")
      votes += (1 if positive else -1) * (-1 if negated else 1)
    text = clauses[0]
    for clause in clauses[1:]:
      text += f" {rng.choice(JOINERS)} {clause}"
    sentences.append(text + ".")
    labels[i] = votes > 0
  return sentences, labels


def words() -> list:
  """Every word the generator uses (the vocabulary's corpus)."""
  return list(NOUNS + POSITIVE + NEGATIVE + JOINERS) + ["the", "was", "not", "."]


@functools.lru_cache(maxsize=1)
def vocabulary() -> tuple:
  from spg_jax.text import vocab  # pylint: disable=g-import-not-at-top  (the [text] extra)
  return tuple(vocab.build_vocab(words(), lowercase=True))


def vocab_size() -> int:
  return len(vocabulary())


def tokenizer():
  """The uncased BERT WordPiece tokenizer of `vocabulary()`, built in memory."""
  import tokenizers  # pylint: disable=g-import-not-at-top
  from tokenizers import decoders, models, normalizers, pre_tokenizers, processors  # pylint: disable=g-import-not-at-top
  from spg_jax.text import tokenize  # pylint: disable=g-import-not-at-top
  vocab = {t: i for i, t in enumerate(vocabulary())}
  tok = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
  tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]),
                                                 ("[CLS]", vocab["[CLS]"]))
  tok.decoder = decoders.WordPiece(prefix="##")
  return tokenize.BertTokenizer(tok, vocab["[PAD]"], vocab["[CLS]"], vocab["[SEP]"],
                                source="synthetic")


def rows(official_split: str) -> dict:
  """`{"sentence": [...], "label": [...]}` of the generated "train" pool or "test" set."""
  n = NUM_TRAIN_POOL if official_split == "train" else NUM_TEST
  sentences, labels = generate(n, SEEDS[official_split])
  return {"sentence": tuple(sentences), "label": tuple(int(v) for v in labels)}
