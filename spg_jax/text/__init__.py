"""Text: BERT tokenisation (`tokenize`: the user's vocab.txt or tokenizer.json, sentence
pairs, SQuAD windows with offsets and answer positions) and SQuAD v1.1 post-processing and
metrics (`squad`). Needs the `tokenizers` package: the `[text]` extra."""
from spg_jax import validation as _validation

_validation.require_extra("tokenizers", "text")  # one line naming the extra, not a traceback
from spg_jax.text.squad import predict_answers, squad_metrics
from spg_jax.text.tokenize import BertTokenizer, answer_tokens, load_tokenizer

__all__ = ["BertTokenizer", "answer_tokens", "load_tokenizer", "predict_answers",
           "squad_metrics"]
