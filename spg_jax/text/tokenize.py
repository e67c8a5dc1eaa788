"""BERT WordPiece tokenisation with the `tokenizers` package, from the user's files (never a
download): sentences and sentence pairs -> fixed-length model inputs; SQuAD question/context
pairs -> overlapping windows with character offsets and answer token positions.

  tokenizer = load_tokenizer("bert-base-cased/")      # tokenizer.json, else vocab.txt
  batch = tokenizer.encode(["A sentence."], ["Its pair."], max_length=128)
  windows = tokenizer.squad_windows(questions, contexts, answers)   # 384 / stride 128

Every output is a dict of numpy int32 arrays, `input_ids`, `token_type_ids`, `attention_mask`
`[N, max_length]` (0 / [PAD] after the last real token), as `spg_jax.models.Bert` and the
sequence and QA tasks read them.

Casing: bert-base-cased's vocabulary is used without lowercasing or accent stripping,
bert-base-uncased's with both (Hugging Face's `BertTokenizerFast`, `strip_accents` following
`lowercase`). A `tokenizer.json` carries its own normaliser; for a `vocab.txt` the casing is
the `lowercase` argument, else `do_lower_case` of a `tokenizer_config.json` beside it, else
read off the vocabulary (a cased one holds upper-case word pieces).
"""
import dataclasses
import json
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
TEXT_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
# Answers that do not lie inside a window: "ignore" (position = max_length, outside the
# window, which the extractive-QA task and transformers' loss ignore) or "cls" (the [CLS]
# index 0, as transformers' run_qa.py labels them).
OUTSIDE_WINDOW = ("ignore", "cls")


@dataclasses.dataclass(frozen=True)
class BertTokenizer:
  """A `tokenizers.Tokenizer` (no padding or truncation of its own) and its special ids.

  Attributes:
    tokenizer: the WordPiece tokenizer; `encode` and `squad_windows` set its truncation.
    pad_id, cls_id, sep_id: the ids of [PAD], [CLS], [SEP].
    source: the file it was read from.
  """
  tokenizer: tokenizers.Tokenizer
  pad_id: int
  cls_id: int
  sep_id: int
  source: str = ""

  def encode(self, texts: Sequence[str], pairs: Optional[Sequence[str]] = None, *,
             max_length: int = 128) -> Dict[str, np.ndarray]:
    """Single sentences (`[CLS] a [SEP]`) or pairs (`[CLS] a [SEP] b [SEP]`, token type 1
    for b and its [SEP]) -> int32 `[N, max_length]` model inputs, longest-first truncation
    (Hugging Face's default) and padding.

    Raises:
      ValueError: texts that are not strings, pairs of another count, max_length < 4.
    """
    texts = _strings(texts, "texts")
    if pairs is not None:
      pairs = _strings(pairs, "pairs")
      if len(pairs) != len(texts):
        raise ValueError(f"pairs: {len(pairs)} texts for {len(texts)} first texts; must be "
                         "as many")
    _check_int("max_length", max_length, 4)
    tok = self.tokenizer
    tok.no_padding()
    tok.enable_truncation(max_length=max_length, strategy="longest_first")
    inputs = list(texts) if pairs is None else list(zip(texts, pairs))
    encodings = _call(lambda: tok.encode_batch(inputs))
    out = _empty(len(encodings), max_length, self.pad_id)
    for row, encoding in enumerate(encodings):
      _put(out, row, encoding)
    return out

  def squad_windows(self, questions: Sequence[str], contexts: Sequence[str],
                    answers: Optional[Sequence[Tuple[int, str]]] = None, *,
                    max_length: int = 384, stride: int = 128,
                    outside_window: str = "ignore") -> Dict[str, np.ndarray]:
    """SQuAD features: each (question, context) becomes one or more windows
    `[CLS] question [SEP] context part [SEP]` of at most `max_length` tokens, the context
    cut into parts that overlap by `stride` tokens (only the context is truncated;
    questions are left-stripped, as transformers' run_qa.py does).

    Args:
      questions, contexts: one per example.
      answers: optional `(answer_start, text)` per example (SQuAD's character offset into
        the context and the answer's text).
      max_length, stride: window length and overlap in tokens (384 and 128 for SQuAD).
      outside_window: where an answer not wholly inside a window points (`OUTSIDE_WINDOW`).

    Returns:
      int32 arrays, W windows: the model inputs `[W, max_length]`; `offsets [W, max_length,
      2]`, the character span `[start, end)` in the context of each context token (-1 for
      the question, special tokens and padding); `example_index [W]`; with answers,
      `start_positions`, `end_positions [W]` (token indices of the answer's first and last
      token in the window).

    Raises:
      ValueError (one line naming the example): mismatched counts, an answer whose text is
        not at its offset in the context, a question too long to leave more than `stride`
        context tokens per window, bad sizes.
    """
    questions = [q.lstrip() for q in _strings(questions, "questions")]
    contexts = _strings(contexts, "contexts")
    if len(contexts) != len(questions):
      raise ValueError(f"contexts: {len(contexts)} for {len(questions)} questions; must be "
                       "as many")
    spans = None if answers is None else _answer_spans(answers, contexts)
    _check_int("max_length", max_length, 4)
    _check_int("stride", stride, 0)
    if outside_window not in OUTSIDE_WINDOW:
      raise ValueError(f"outside_window={outside_window!r}: must be one of "
                       f"{list(OUTSIDE_WINDOW)}")
    tok = self.tokenizer
    tok.no_padding()
    tok.no_truncation()
    lengths = [len(e.ids) for e in _call(lambda: tok.encode_batch(questions,
                                                                  add_special_tokens=False))]
    for i, length in enumerate(lengths):
      room = max_length - length - 3  # [CLS] question [SEP] ... [SEP]
      if room <= stride:
        raise ValueError(f"questions[{i}]: {length} tokens leave {room} context tokens per "
                         f"window of max_length={max_length}, which must be more than "
                         f"stride={stride}")
    tok.enable_truncation(max_length=max_length, stride=stride, strategy="only_second")
    encodings = _call(lambda: tok.encode_batch(list(zip(questions, contexts))))
    windows = [(i, w) for i, e in enumerate(encodings) for w in [e] + list(e.overflowing)]
    out = _empty(len(windows), max_length, self.pad_id)
    out["offsets"] = np.full((len(windows), max_length, 2), -1, np.int32)
    out["example_index"] = np.asarray([i for i, _ in windows], np.int32)
    if spans is not None:
      out["start_positions"] = np.zeros(len(windows), np.int32)
      out["end_positions"] = np.zeros(len(windows), np.int32)
    outside = max_length if outside_window == "ignore" else 0
    for row, (example, window) in enumerate(windows):
      _put(out, row, window)
      context = [t for t, s in enumerate(window.sequence_ids) if s == 1]
      for t in context:
        out["offsets"][row, t] = window.offsets[t]
      if spans is not None:
        start, end = answer_tokens(out["offsets"][row], *spans[example])
        out["start_positions"][row] = outside if start is None else start
        out["end_positions"][row] = outside if end is None else end
    return out


def answer_tokens(offsets: np.ndarray, start_char: int, end_char: int
                  ) -> Tuple[Optional[int], Optional[int]]:
  """(first, last) token of the character span `[start_char, end_char)` in one window, from
  its context tokens' `offsets [L, 2]` (-1 elsewhere); (None, None) unless the window holds
  the whole span (transformers' run_qa.py rule)."""
  context = np.flatnonzero(offsets[:, 0] >= 0)
  if not len(context):
    return None, None
  first, last = context[0], context[-1]
  if not (offsets[first, 0] <= start_char and offsets[last, 1] >= end_char):
    return None, None
  starts = context[offsets[context, 0] <= start_char]
  ends = context[offsets[context, 1] >= end_char]
  return int(starts[-1]), int(ends[0])


def _answer_spans(answers: Sequence[Tuple[int, str]], contexts: Sequence[str]
                  ) -> Sequence[Tuple[int, int]]:
  if len(answers) != len(contexts):
    raise ValueError(f"answers: {len(answers)} for {len(contexts)} examples; must be as many")
  spans = []
  for i, (answer, context) in enumerate(zip(answers, contexts)):
    try:
      start, text = answer
    except (TypeError, ValueError):
      raise ValueError(f"answers[{i}]={answer!r}: must be (answer_start, text)") from None
    if (isinstance(start, bool) or not isinstance(start, (int, np.integer))
        or not isinstance(text, str) or not text):
      raise ValueError(f"answers[{i}]={answer!r}: must be (answer_start int, non-empty text)")
    found = context[start:start + len(text)]
    if found != text:
      raise ValueError(f"answers[{i}]: the context holds {found!r} at answer_start={start}, "
                       f"not the answer text {text!r}")
    spans.append((int(start), int(start) + len(text)))
  return spans


def _strings(values: Any, name: str) -> Sequence[str]:
  if isinstance(values, str):
    raise ValueError(f"{name}: must be a sequence of strings, got one string")
  values = list(values)
  bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
  if bad is not None:
    raise ValueError(f"{name}[{bad}]: must be a string, got {type(values[bad]).__name__}")
  return values


def _check_int(name: str, value: Any, minimum: int) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{name}={value!r}: must be an integer >= {minimum}")


def _call(fn):
  """`fn()`, with the tokenizer's Rust panics (not Exceptions) as one-line ValueErrors."""
  try:
    return fn()
  except BaseException as e:  # pylint: disable=broad-except  (pyo3 PanicException)
    if isinstance(e, (KeyboardInterrupt, SystemExit)):
      raise
    first = (str(e).strip().splitlines() or [""])[0][:200]
    raise ValueError(f"tokenizer: {type(e).__name__}: {first}") from None


def _empty(rows: int, length: int, pad_id: int) -> Dict[str, np.ndarray]:
  return {"input_ids": np.full((rows, length), pad_id, np.int32),
          "token_type_ids": np.zeros((rows, length), np.int32),
          "attention_mask": np.zeros((rows, length), np.int32)}


def _put(out: Dict[str, np.ndarray], row: int, encoding) -> None:
  n = len(encoding.ids)
  out["input_ids"][row, :n] = encoding.ids
  out["token_type_ids"][row, :n] = encoding.type_ids
  out["attention_mask"][row, :n] = 1


# ------------------------------------------------------------------------------ loading


def load_tokenizer(path: str, *, lowercase: Optional[bool] = None) -> BertTokenizer:
  """A BERT tokenizer from `path`: a `tokenizer.json`, a `vocab.txt` (one token per line),
  or a folder holding either (tokenizer.json first).

  `lowercase` (vocab.txt only): True for uncased vocabularies, False for cased ones; None:
  `do_lower_case` of a tokenizer_config.json beside it, else read off the vocabulary.

  Raises:
    ValueError (one line): no such file, an unreadable file, a vocabulary without the
      special tokens, `lowercase` given for a tokenizer.json.
  """
  if os.path.isdir(path):
    for name in ("tokenizer.json", "vocab.txt"):
      if os.path.isfile(os.path.join(path, name)):
        return load_tokenizer(os.path.join(path, name), lowercase=lowercase)
    raise ValueError(f"tokenizer={path!r}: no tokenizer.json or vocab.txt in this folder")
  if not os.path.isfile(path):
    raise ValueError(f"tokenizer={path!r}: no such file or folder")
  if path.endswith(".json"):
    if lowercase is not None:
      raise ValueError(f"lowercase={lowercase!r}: a tokenizer.json has its own normaliser; "
                       "give lowercase only for a vocab.txt")
    tok = _call(lambda: tokenizers.Tokenizer.from_file(path))
    tok.no_padding()  # a saved tokenizer.json may pad or truncate (MiniLM's pads to 128)
    tok.no_truncation()
  else:
    tok = _from_vocab(path, lowercase)
  ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
  missing = [t for t, i in ids.items() if i is None]
  if missing:
    raise ValueError(f"tokenizer={path!r}: no {missing[0]} token (BERT needs "
                     f"{', '.join(SPECIAL_TOKENS)})")
  return BertTokenizer(tok, ids["[PAD]"], ids["[CLS]"], ids["[SEP]"], source=path)


def read_vocab(path: str) -> Dict[str, int]:
  """token -> id (its line number) of a vocab.txt."""
  try:
    with open(path, encoding="utf-8") as f:
      tokens = [line.rstrip("\n").rstrip("\r") for line in f]
  except (OSError, UnicodeDecodeError) as e:
    raise ValueError(f"tokenizer={path!r}: not a readable UTF-8 vocab.txt ({e})") from None
  while tokens and not tokens[-1]:
    tokens.pop()
  if not tokens:
    raise ValueError(f"tokenizer={path!r}: the vocabulary is empty")
  vocab = {}
  for i, token in enumerate(tokens):
    vocab.setdefault(token, i)  # a repeated token keeps its first id, as transformers
  return vocab


def vocab_is_cased(vocab: Dict[str, int]) -> bool:
  """Whether a WordPiece vocabulary holds upper-case pieces (special [..] tokens aside)."""
  return any(t != t.lower() for t in vocab if not (t.startswith("[") and t.endswith("]")))


def _lowercase_of(path: str, vocab: Dict[str, int]) -> bool:
  config = os.path.join(os.path.dirname(os.path.abspath(path)), "tokenizer_config.json")
  if os.path.isfile(config):
    try:
      with open(config, encoding="utf-8") as f:
        value = json.load(f).get("do_lower_case")
    except (OSError, ValueError, AttributeError):
      value = None
    if isinstance(value, bool):
      return value
  return not vocab_is_cased(vocab)


def _from_vocab(path: str, lowercase: Optional[bool]) -> tokenizers.Tokenizer:
  """transformers' BertTokenizerFast pipeline on a vocab.txt."""
  if lowercase is not None and not isinstance(lowercase, bool):
    raise ValueError(f"lowercase={lowercase!r}: must be True, False or None")
  vocab = read_vocab(path)
  if lowercase is None:
    lowercase = _lowercase_of(path, vocab)
  if "[UNK]" not in vocab:
    raise ValueError(f"tokenizer={path!r}: no [UNK] token (BERT needs "
                     f"{', '.join(SPECIAL_TOKENS)})")
  tok = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]",
                                              max_input_chars_per_word=100))
  tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                              strip_accents=None, lowercase=lowercase)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  if "[CLS]" in vocab and "[SEP]" in vocab:
    tok.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]),
                                                   ("[CLS]", vocab["[CLS]"]))
  tok.decoder = decoders.WordPiece(prefix="##")
  return tok
