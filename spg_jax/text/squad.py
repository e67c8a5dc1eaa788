"""SQuAD v1.1: window predictions back to answer text, and the official EM / F1.

`predict_answers` follows transformers' `utils_qa.postprocess_qa_predictions` (SQuAD v1.1,
no null answer): per window the `n_best` highest start and end logits, spans inside the
context with end >= start and at most `max_answer_length` tokens, scored by start + end
logit; each example's best span over its windows, cut from the context by the character
offsets. `squad_metrics` is the official v1.1 evaluation script's exact match and F1
(answers normalised: lower case, punctuation and the articles a/an/the removed, whitespace
collapsed; the maximum over the ground truths; the mean over questions, in percent).
"""
import collections
import re
import string
from typing import Dict, Mapping, Sequence

import numpy as np


def predict_answers(start_logits: np.ndarray, end_logits: np.ndarray,
                    windows: Mapping[str, np.ndarray], contexts: Sequence[str], *,
                    n_best: int = 20, max_answer_length: int = 30) -> list:
  """The answer text of every example.

  Args:
    start_logits, end_logits: `[W, L]` model outputs for the windows of
      `spg_jax.text.tokenize.BertTokenizer.squad_windows`.
    windows: that function's output (`offsets [W, L, 2]`, `example_index [W]`).
    contexts: the examples' contexts (the same order).
    n_best, max_answer_length: as transformers' run_qa.py (20, 30).

  Returns:
    one string per example ("" when no window has a valid span).
  """
  start_logits = np.asarray(start_logits, np.float64)
  end_logits = np.asarray(end_logits, np.float64)
  offsets = np.asarray(windows["offsets"])
  examples = np.asarray(windows["example_index"])
  if start_logits.shape != end_logits.shape or start_logits.shape != offsets.shape[:2]:
    raise ValueError(f"start_logits {start_logits.shape}, end_logits {end_logits.shape}: "
                     f"must both be [windows, length] = {offsets.shape[:2]}")
  best = [(-np.inf, "")] * len(contexts)
  for w in range(len(examples)):
    example = int(examples[w])
    starts = np.argsort(start_logits[w])[::-1][:n_best]
    ends = np.argsort(end_logits[w])[::-1][:n_best]
    for s in starts:
      for e in ends:
        if offsets[w, s, 0] < 0 or offsets[w, e, 0] < 0 or e < s or e - s + 1 > \
            max_answer_length:
          continue
        score = start_logits[w, s] + end_logits[w, e]
        if score > best[example][0]:
          text = contexts[example][offsets[w, s, 0]:offsets[w, e, 1]]
          best[example] = (score, text)
  return [text for _, text in best]


def normalize_answer(text: str) -> str:
  """The official script's normalisation: lower case, no punctuation, no articles, single
  spaces."""
  text = text.lower()
  text = "".join(ch for ch in text if ch not in set(string.punctuation))
  text = re.sub(r"\b(a|an|the)\b", " ", text)
  return " ".join(text.split())


def f1_score(prediction: str, ground_truth: str) -> float:
  prediction_tokens = normalize_answer(prediction).split()
  truth_tokens = normalize_answer(ground_truth).split()
  common = collections.Counter(prediction_tokens) & collections.Counter(truth_tokens)
  same = sum(common.values())
  if same == 0:
    return 0.0
  precision = same / len(prediction_tokens)
  recall = same / len(truth_tokens)
  return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> float:
  return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def squad_metrics(predictions: Sequence[str], ground_truths: Sequence[Sequence[str]]
                  ) -> Dict[str, float]:
  """`{"exact_match", "f1"}` in percent, as the official SQuAD v1.1 script: per question
  the best over its ground-truth answers, then the mean.

  Raises:
    ValueError: different counts, or a question without ground truths.
  """
  if len(predictions) != len(ground_truths):
    raise ValueError(f"predictions: {len(predictions)} for {len(ground_truths)} questions; "
                     "must be as many")
  if not predictions:
    raise ValueError("predictions: empty; need at least one question")
  em = f1 = 0.0
  for i, (prediction, truths) in enumerate(zip(predictions, ground_truths)):
    if isinstance(truths, str) or not truths:
      raise ValueError(f"ground_truths[{i}]: must be a non-empty list of answer texts")
    em += max(exact_match_score(prediction, t) for t in truths)
    f1 += max(f1_score(prediction, t) for t in truths)
  return {"exact_match": 100.0 * em / len(predictions), "f1": 100.0 * f1 / len(predictions)}
