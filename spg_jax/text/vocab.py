"""A WordPiece vocabulary built from a corpus on the fly (tests and the offline demo; real
runs use the checkpoint's own vocab.txt).

Tokens: the BERT special tokens, every word of the corpus (split as BERT's pre-tokenizer
splits: whitespace and punctuation), then every character alone and as a "##" continuation,
so any text over the corpus's characters tokenises without [UNK].
"""
from typing import Iterable, List

from tokenizers import normalizers, pre_tokenizers

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def build_vocab(texts: Iterable[str], *, lowercase: bool = True) -> List[str]:
  """The vocabulary (one token per id, specials first) of `texts`, normalised as BERT's
  uncased (`lowercase=True`) or cased tokenizer normalises."""
  normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=None)
  split = pre_tokenizers.BertPreTokenizer()
  words, chars = set(), set()
  for text in texts:
    for word, _ in split.pre_tokenize_str(normalizer.normalize_str(text)):
      words.add(word)
      chars.update(word)
  tokens = list(SPECIALS) + sorted(words - set(SPECIALS))
  tokens += sorted(chars - words) + ["##" + c for c in sorted(chars)]
  return tokens


def write_vocab(path: str, tokens: Iterable[str]) -> str:
  """Writes `tokens` as a vocab.txt (one per line); returns `path`."""
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(tokens) + "\n")
  return path
