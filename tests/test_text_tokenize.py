"""BERT tokenisation against transformers' BertTokenizerFast and run_qa.py preprocessing
(golden outputs recorded by experiments/golden/huggingface_bert.py, no transformers here),
on tiny vocabularies the tests write themselves; SQuAD post-processing and the official
v1.1 EM / F1 on hand-made predictions."""
import json
import pathlib

import numpy as np
import pytest

from spg_jax.text import squad, tokenize

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden" / "huggingface" / "tokenize.json"
INPUTS = ("input_ids", "token_type_ids", "attention_mask")


@pytest.fixture(scope="module")
def golden():
  return json.loads(GOLDEN.read_text())


def write_vocab(directory: pathlib.Path, tokens) -> pathlib.Path:
  directory.mkdir(parents=True, exist_ok=True)
  path = directory / "vocab.txt"
  path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
  return path


@pytest.fixture(scope="module", params=["uncased", "cased"])
def case(request, golden, tmp_path_factory):
  """(name, tokenizer read from a vocab.txt with its casing inferred, golden record)."""
  name = request.param
  path = write_vocab(tmp_path_factory.mktemp(name), golden["vocabularies"][name])
  return name, tokenize.load_tokenizer(str(path)), golden["cases"][name]


def squad_args(golden):
  contexts = [golden["context"]] * len(golden["questions"])
  return golden["questions"], contexts, [tuple(a) for a in golden["answers"]]


def one_line(error: pytest.ExceptionInfo) -> str:
  text = str(error.value)
  assert "\n" not in text and text
  return text


# ------------------------------------------------------------------ against transformers


def test_casing_is_read_off_the_vocabulary(case):
  name, tok, _ = case
  assert tokenize.vocab_is_cased(tokenize.read_vocab(tok.source)) == (name == "cased")
  assert (tok.pad_id, tok.cls_id, tok.sep_id) == (0, 2, 3)
  text = "A naïve Café"
  expected = ["naive", "cafe"] if name == "uncased" else ["naïve", "Café"]
  assert tok.tokenizer.encode(text, add_special_tokens=False).tokens[1:] == expected


def test_sentences_and_pairs_equal_transformers(case, golden):
  _, tok, record = case
  single = tok.encode(golden["sentences"], max_length=golden["encode_max_length"])
  pair = tok.encode(golden["sentences"], golden["pairs"],
                    max_length=golden["encode_max_length"])
  for name in INPUTS:
    assert single[name].dtype == np.int32 and single[name].shape == (5, 16)
    np.testing.assert_array_equal(single[name], record["single"][name], err_msg=name)
    np.testing.assert_array_equal(pair[name], record["pair"][name], err_msg=name)
  # The pairs really are pairs (type 1 after the first [SEP]), truncated longest-first.
  assert pair["token_type_ids"][0].max() == 1 and pair["attention_mask"][3].all()


def test_squad_windows_equal_run_qa(case, golden):
  """Windows, offsets and the window -> example map equal run_qa.py's; the answer positions
  too (outside a window: [CLS] with outside_window="cls"), except where run_qa.py's start
  loop runs past the context: the answer "1" is the last context token of its window, and
  run_qa.py labels the final [SEP] (position 23) as its start; here it is the token itself."""
  _, tok, record = case
  windows = tok.squad_windows(*squad_args(golden), max_length=golden["squad_max_length"],
                              stride=golden["squad_stride"], outside_window="cls")
  expected = record["squad"]
  for name in INPUTS + ("offsets", "example_index", "end_positions"):
    np.testing.assert_array_equal(windows[name], expected[name], err_msg=name)
  assert windows["offsets"].shape == (45, 24, 2)
  differ = np.flatnonzero(windows["start_positions"] != np.asarray(expected["start_positions"]))
  assert differ.tolist() == [41]
  row = 41
  assert expected["start_positions"][row] == 23 and windows["input_ids"][row, 23] == tok.sep_id
  start, end = windows["start_positions"][row], windows["end_positions"][row]
  assert start == end == 22
  assert golden["context"][slice(*windows["offsets"][row, start])] == "1"
  # Every labelled span is the answer's text (up to word-piece boundaries: here exact).
  answers = [a for _, a in golden["answers"]]
  for w in np.flatnonzero(windows["start_positions"] > 0):
    s, e = windows["start_positions"][w], windows["end_positions"][w]
    span = golden["context"][windows["offsets"][w, s, 0]:windows["offsets"][w, e, 1]]
    assert span == answers[windows["example_index"][w]]


def test_answers_outside_a_window_are_ignored_by_default(case, golden):
  _, tok, _ = case
  args = squad_args(golden)
  ignore = tok.squad_windows(*args, max_length=24, stride=6)
  cls = tok.squad_windows(*args, max_length=24, stride=6, outside_window="cls")
  outside = (cls["start_positions"] == 0) & (cls["end_positions"] == 0)
  assert 0 < outside.sum() < len(outside)
  np.testing.assert_array_equal(ignore["start_positions"][outside], 24)  # = max_length
  np.testing.assert_array_equal(ignore["end_positions"][outside], 24)
  np.testing.assert_array_equal(ignore["start_positions"][~outside],
                                cls["start_positions"][~outside])
  # Each example's answer is inside at least one of its windows.
  inside = np.unique(ignore["example_index"][ignore["start_positions"] < 24])
  assert inside.tolist() == list(range(len(golden["questions"])))


def test_tokenizer_json_and_folders(case, golden, tmp_path):
  """A saved tokenizer.json (with padding and truncation switched on, as MiniLM's) reads
  back the same; a folder prefers tokenizer.json; tokenizer_config.json gives the casing."""
  name, tok, record = case
  tok.tokenizer.enable_padding(length=128)
  tok.tokenizer.save(str(tmp_path / "tokenizer.json"))
  tok.tokenizer.no_padding()
  for path in (tmp_path / "tokenizer.json", tmp_path):
    again = tokenize.load_tokenizer(str(path))
    pair = again.encode(golden["sentences"], golden["pairs"], max_length=16)
    np.testing.assert_array_equal(pair["input_ids"], record["pair"]["input_ids"])
  vocab = golden["vocabularies"][name]
  folder = tmp_path / "snapshot"
  write_vocab(folder, vocab)
  (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
  cased_ids = tokenize.load_tokenizer(str(folder)).encode(["The Seine"], max_length=6)
  lowered_ids = tokenize.load_tokenizer(str(folder / "vocab.txt"), lowercase=True).encode(
      ["The Seine"], max_length=6)
  unk = tokenize.read_vocab(str(folder / "vocab.txt"))["[UNK]"]
  # Not lowercased: the uncased vocabulary knows neither "The" nor "Seine".
  assert (cased_ids["input_ids"][0, 1:3] == unk).all() == (name == "uncased")
  assert (lowered_ids["input_ids"][0, 1:3] != unk).all()


# ------------------------------------------------------------------ errors


def test_bad_files_and_arguments(golden, tmp_path):
  vocab = golden["vocabularies"]["uncased"]
  def error_of(fn):
    with pytest.raises(ValueError) as error:
      fn()
    return one_line(error)
  no_cls = write_vocab(tmp_path / "no_cls", [t for t in vocab if t != "[CLS]"])
  assert error_of(lambda: tokenize.load_tokenizer(str(no_cls))) == (
      f"tokenizer={str(no_cls)!r}: no [CLS] token (BERT needs [PAD], [UNK], [CLS], [SEP])")
  empty = write_vocab(tmp_path / "empty", [])
  assert error_of(lambda: tokenize.load_tokenizer(str(empty))).endswith(
      "the vocabulary is empty")
  assert error_of(lambda: tokenize.load_tokenizer(str(tmp_path / "none"))).endswith(
      "no such file or folder")
  assert error_of(lambda: tokenize.load_tokenizer(str(tmp_path))).endswith(
      "no tokenizer.json or vocab.txt in this folder")
  tok = tokenize.load_tokenizer(str(write_vocab(tmp_path / "ok", vocab)))
  tok.tokenizer.save(str(tmp_path / "tokenizer.json"))
  assert error_of(lambda: tokenize.load_tokenizer(str(tmp_path / "tokenizer.json"),
                                                  lowercase=True)).startswith(
      "lowercase=True: a tokenizer.json has its own normaliser")
  broken = tmp_path / "broken.json"
  broken.write_text("{")
  assert error_of(lambda: tokenize.load_tokenizer(str(broken))).startswith("tokenizer: ")
  context = golden["context"]
  assert error_of(lambda: tok.encode("one string")) == (
      "texts: must be a sequence of strings, got one string")
  assert error_of(lambda: tok.encode(["a", "b"], ["c"])) == (
      "pairs: 1 texts for 2 first texts; must be as many")
  assert error_of(lambda: tok.encode(["a"], max_length=3)) == (
      "max_length=3: must be an integer >= 4")
  assert error_of(lambda: tok.squad_windows(["q?"], [context], [(1, "Paris")])) == (
      "answers[0]: the context holds 'aris ' at answer_start=1, not the answer text 'Paris'")
  assert error_of(lambda: tok.squad_windows(["q?"], [context], [("0", "Paris")])).startswith(
      "answers[0]=('0', 'Paris'): must be (answer_start int, non-empty text)")
  assert error_of(lambda: tok.squad_windows(["the dog sat on the mat ?"], [context],
                                            max_length=16, stride=6)) == (
      "questions[0]: 7 tokens leave 6 context tokens per window of max_length=16, which "
      "must be more than stride=6")
  assert error_of(lambda: tok.squad_windows(["q"], [context], outside_window="drop")) == (
      "outside_window='drop': must be one of ['ignore', 'cls']")


# ------------------------------------------------------------------ SQuAD post-processing


def test_predicted_spans_come_back_as_the_answer_texts(case, golden):
  """Logits peaked at each window's labelled span give back every answer's text; a higher
  but invalid pair (end before start, in the question, too long) is never chosen."""
  _, tok, _ = case
  questions, contexts, answers = squad_args(golden)
  windows = tok.squad_windows(questions, contexts, answers, max_length=24, stride=6)
  n, length = windows["input_ids"].shape
  start = np.full((n, length), -5.0)
  end = np.full((n, length), -5.0)
  for w in range(n):
    start[w, 1] = end[w, 1] = 9.0  # a question token: never an answer
    s, e = windows["start_positions"][w], windows["end_positions"][w]
    if s < length:
      start[w, s] = end[w, e] = 3.0
      start[w, e + 1] = 8.0  # starts after the answer's end ...
      end[w, s - 1] = 8.0  # ... and an end before its start: only invalid pairs
  predicted = squad.predict_answers(start, end, windows, contexts)
  assert predicted == [a for _, a in answers]
  # max_answer_length counts tokens: "a quick brown fox" has 4.
  shorter = squad.predict_answers(start, end, windows, contexts, max_answer_length=3)
  assert shorter[3] != "a quick brown fox" and shorter[:3] == predicted[:3]


def test_official_exact_match_and_f1_by_hand():
  predictions = ["the Eiffel Tower", "Tower", "in 1889.", "Denver Broncos", ""]
  truths = [["Eiffel Tower"], ["Eiffel Tower", "the tower"], ["1889"],
            ["Broncos", "Denver Broncos!"], ["anything"]]
  # EM: articles and punctuation are ignored (1), "tower" = "the tower" (1), "in 1889" !=
  # "1889" (0), "denver broncos" (1), "" (0): 3 / 5.
  # F1: 1; 1 (second truth); precision 1/2, recall 1 -> 2/3; 1; 0: (3 + 2/3) / 5.
  scores = squad.squad_metrics(predictions, truths)
  assert scores["exact_match"] == pytest.approx(100 * 3 / 5)
  assert scores["f1"] == pytest.approx(100 * (3 + 2 / 3) / 5)
  assert squad.normalize_answer("  The  Denver, Broncos! ") == "denver broncos"
  assert squad.f1_score("x b c d", "b c e") == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
  with pytest.raises(ValueError, match=r"^predictions: 1 for 2 questions"):
    squad.squad_metrics(["x"], [["x"], ["y"]])
  with pytest.raises(ValueError, match=r"^ground_truths\[0\]: must be a non-empty list"):
    squad.squad_metrics(["x"], ["x"])
