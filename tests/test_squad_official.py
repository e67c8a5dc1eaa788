"""SQuAD v1.1 EM / F1 (`spg_jax.text.squad.squad_metrics`) against the official evaluation
script (evaluate-v1.1.py, Rajpurkar et al. 2016), which is written out below from its
published algorithm: normalise (lower case, drop ASCII punctuation, drop the articles
a/an/the, collapse whitespace), exact match, bag-of-tokens F1 (0 when nothing is shared),
the maximum over a question's ground truths, the mean over all questions of the dataset
in percent, an unanswered question scoring 0. The dataset is the official nested JSON,
read back through our reader (`text_files.squad_official_rows`)."""
import collections
import json
import re
import string

import pytest

from spg_jax.data import text_files
from spg_jax.text import squad


# ------------------------------------------------------------ the official v1.1 script


def official_normalize_answer(s):
  def remove_articles(text):
    return re.sub(r"\b(a|an|the)\b", " ", text)

  def white_space_fix(text):
    return " ".join(text.split())

  def remove_punc(text):
    exclude = set(string.punctuation)
    return "".join(ch for ch in text if ch not in exclude)

  def lower(text):
    return text.lower()

  return white_space_fix(remove_articles(remove_punc(lower(s))))


def official_f1_score(prediction, ground_truth):
  prediction_tokens = official_normalize_answer(prediction).split()
  ground_truth_tokens = official_normalize_answer(ground_truth).split()
  common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
  num_same = sum(common.values())
  if num_same == 0:
    return 0
  precision = 1.0 * num_same / len(prediction_tokens)
  recall = 1.0 * num_same / len(ground_truth_tokens)
  return (2 * precision * recall) / (precision + recall)


def official_exact_match_score(prediction, ground_truth):
  return official_normalize_answer(prediction) == official_normalize_answer(ground_truth)


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
  return max(metric_fn(prediction, ground_truth) for ground_truth in ground_truths)


def official_evaluate(dataset, predictions):
  f1 = exact_match = total = 0
  for article in dataset:
    for paragraph in article["paragraphs"]:
      for qa in paragraph["qas"]:
        total += 1
        if qa["id"] not in predictions:
          continue  # "Unanswered question ... will receive score 0."
        ground_truths = [x["text"] for x in qa["answers"]]
        prediction = predictions[qa["id"]]
        exact_match += metric_max_over_ground_truths(official_exact_match_score, prediction,
                                                     ground_truths)
        f1 += metric_max_over_ground_truths(official_f1_score, prediction, ground_truths)
  return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


# ------------------------------------------------------------ a hand-made dev set

# (question id, ground truths, prediction): every rule of the script is exercised.
CASES = [
    ("articles", ["Eiffel Tower"], "the Eiffel Tower"),            # articles dropped: EM
    ("an_inside", ["an apple a day"], "apple day"),                # all three articles
    ("case_punct", ["Denver Broncos!"], "denver, broncos"),         # case and punctuation
    ("second_truth", ["Eiffel Tower", "the tower"], "Tower"),      # max over ground truths
    ("partial", ["1889"], "in 1889."),                             # F1 2/3, EM 0
    ("repeat", ["the the cat cat cat"], "cat cat"),                # counts clipped: F1 0.8
    ("empty", ["anything"], ""),                                   # nothing predicted
    ("only_punct", ["..."], "!"),                                  # both normalise to ""
    ("whitespace", ["New   York\tCity"], " new york\ncity "),      # whitespace collapsed
    ("unicode", ["Zürich – Bern"], "zürich bern"),                 # "–" is not ASCII punct.
    ("article_in_word", ["another theme"], "other theme"),         # \b: "an"other stays
    ("hyphen", ["state-of-the-art"], "state of the art"),          # "-" removed, not split
    ("digits", ["3,000 km"], "3000 km"),                           # "," removed inside
    ("wrong", ["Paris"], "London"),
    ("multi", ["Saint Denis", "Denis", "St. Denis basilica"], "the basilica of St Denis"),
    ("unanswered", ["never predicted"], None),                     # scores 0
]


def dev_set():
  articles = [{"title": "hand-made", "paragraphs": []}]
  for qid, truths, _ in CASES:
    context = " ".join(truths) + " is the answer."
    answers = [{"text": t, "answer_start": context.index(t)} for t in truths]
    articles[0]["paragraphs"].append(
        {"context": context, "qas": [{"id": qid, "question": f"what is {qid}?",
                                      "answers": answers}]})
  return {"version": "1.1", "data": articles}


def predictions():
  return {qid: p for qid, _, p in CASES if p is not None}


def test_equal_to_the_official_script_on_hand_made_predictions(tmp_path):
  document = dev_set()
  path = tmp_path / "dev-v1.1.json"
  path.write_text(json.dumps(document))
  want = official_evaluate(document["data"], predictions())
  # Ours: the file read by our reader, unanswered questions predicted as "" (the official
  # script gives them 0, and "" scores 0 against any non-empty answer).
  rows = text_files.read_hf_split(str(tmp_path), "validation", text_files.SQUAD_COLUMNS)
  preds = predictions()
  got = squad.squad_metrics([preds.get(i, "") for i in rows["id"]], rows["answer_texts"])
  assert got["exact_match"] == pytest.approx(want["exact_match"], abs=1e-12)
  assert got["f1"] == pytest.approx(want["f1"], abs=1e-12)
  # Not a vacuous agreement: the set has hits, misses and partial credit.
  assert 0 < want["exact_match"] < want["f1"] < 100


@pytest.mark.parametrize("qid, truths, prediction", [c for c in CASES if c[2] is not None])
def test_every_question_scores_as_the_official_script(qid, truths, prediction):
  del qid
  got = squad.squad_metrics([prediction], [truths])
  em = metric_max_over_ground_truths(official_exact_match_score, prediction, truths)
  f1 = metric_max_over_ground_truths(official_f1_score, prediction, truths)
  assert got["exact_match"] == pytest.approx(100.0 * em, abs=1e-12)
  assert got["f1"] == pytest.approx(100.0 * f1, abs=1e-12)
  for truth in truths:
    assert squad.normalize_answer(truth) == official_normalize_answer(truth)


def test_hand_computed_values():
  """A few of the cases by hand, so the reference itself is checked."""
  assert official_normalize_answer("an apple a day") == "apple day"
  assert official_normalize_answer("another theme") == "another theme"
  assert official_normalize_answer("Zürich – Bern") == "zürich – bern"
  assert official_f1_score("in 1889.", "1889") == pytest.approx(2 / 3)
  assert official_f1_score("cat cat", "the the cat cat cat") == pytest.approx(0.8)
  assert official_f1_score("!", "...") == 0  # both empty: 0 in v1.1 (v2.0 says 1)


# ------------------------------------------------------------ windows -> text -> EM / F1


def test_evaluate_model_scores_an_oracle_and_a_shifted_model(tmp_path):
  """`squad_eval.evaluate_model` with stand-in models over real windows: logits peaked at
  each window's labelled answer give EM = F1 = 100 (the text comes back through the
  offsets, across windows and batches); peaks one token late lose EM but keep some F1,
  as the official script scores them."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import text_fixtures as files  # pylint: disable=g-import-not-at-top
  from spg_jax.text import squad_eval, tokenize  # pylint: disable=g-import-not-at-top
  tok = tokenize.load_tokenizer(files.write_vocab(tmp_path / "vocab.txt"))
  rows = files.squad_rows(6, seed=3)
  cols = text_files.columns_of(rows, text_files.SQUAD_COLUMNS, "rows")
  answers = [(s[0], t[0]) for s, t in zip(cols["answer_starts"], cols["answer_texts"])]
  labelled = tok.squad_windows(cols["question"], cols["context"], answers, max_length=32,
                               stride=8)
  assert len(labelled["input_ids"]) > 6  # several windows per question

  def model(shift):
    seen = iter(range(len(labelled["input_ids"])))

    def apply(batch):  # windows come in order, in batches; padding rows are all zero
      n, length = batch["input_ids"].shape
      start, end = np.zeros((n, length)), np.zeros((n, length))
      for i in range(n):
        if not batch["input_ids"][i].any():
          continue
        w = next(seen)
        np.testing.assert_array_equal(batch["input_ids"][i], labelled["input_ids"][w])
        s, e = labelled["start_positions"][w], labelled["end_positions"][w]
        if s < length:  # the window holds the answer
          start[i, min(s + shift, length - 1)] = end[i, min(e + shift, length - 1)] = 10.0
      return {"start_logits": start, "end_logits": end}
    return apply

  exact = squad_eval.evaluate_model(model(0), cols, tok, max_length=32, stride=8,
                                    batch_size=4)
  assert exact == {"exact_match": 100.0, "f1": 100.0, "questions": 6,
                   "windows": len(labelled["input_ids"])}
  shifted = squad_eval.evaluate_model(model(1), cols, tok, max_length=32, stride=8,
                                      batch_size=4)
  assert shifted["exact_match"] < 100.0 and 0.0 < shifted["f1"] < 100.0
