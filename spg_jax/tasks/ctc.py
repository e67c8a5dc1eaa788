"""CTC speech recognition: frame logits, greedy decoding, WER and CER over a split."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from spg_jax.correctness import greedy_ctc_decode
from spg_jax.losses import StepTerms, ctc_terms
from spg_jax.tasks import metrics
from spg_jax.tasks.base import ConfigurableInputs, Task

# Where the model reports which output frames are padding (1.0), e.g. wav2vec2 from the
# waveform's padding mask; without it every frame is real.
LOGIT_PADDINGS = "logit_paddings"


@dataclasses.dataclass(frozen=True)
class CTC(ConfigurableInputs, Task):
  """Token sequences from frames (wav2vec2 + `lm_head`).

  Batch: `input [B, S]` float waveform (or the features in `inputs`), `label [B, N]` int
  target tokens, `label_paddings [B, N]` (1.0 on padding). Model output: frame logits
  `[B, L, C]`; `aux["logit_paddings"] [B, L]` marks padded frames. Loss per step: optax's CTC
  loss; a step is correct when at least `threshold` of the target tokens match its greedy
  decoding position by position (the reference's rule). A sequence with no possible
  alignment (more target tokens, plus a blank between equal neighbours, than real frames)
  has an infinite loss, as in torch: the run stops at that step naming the term (or
  `skip_nonfinite` skips the step); `zero_infinity=True` gives such sequences loss 0 and no
  gradient instead (torch's and Hugging Face's `ctc_zero_infinity`). Eval metrics: `wer`
  (the selection metric, lower is better) and `cer` over the split, with words split at
  `word_delimiter` (wav2vec2's "|" token id; None: every token is a word), and `loss`.
  """
  name = "ctc"
  selection_metric = "wer"
  selection_mode = "min"
  eval_reduction = "concat"
  label_features = ("label", "label_paddings")
  num_classes: int = 32
  inputs: tuple[str, ...] = ("input",)
  blank_id: int = 0
  threshold: float = 0.5
  word_delimiter: int | None = None
  zero_infinity: bool = False

  def __post_init__(self):
    super().__post_init__()
    if not isinstance(self.zero_infinity, bool):
      raise ValueError(f"config.task.zero_infinity={self.zero_infinity!r}: must be True or "
                       f"False")
    if not 0.0 < self.threshold <= 1.0:
      raise ValueError(f"config.task.threshold={self.threshold!r}: must be in (0, 1]")
    if not 0 <= self.blank_id < max(self.num_classes, 1):
      raise ValueError(f"config.task.blank_id={self.blank_id!r}: must be in [0, "
                       f"{self.num_classes}) (a token of the vocabulary)")

  @staticmethod
  def _paddings(aux: Mapping[str, Any], logits: jax.Array) -> jax.Array:
    if LOGIT_PADDINGS in aux:
      return aux[LOGIT_PADDINGS].astype(jnp.float32)
    return jnp.zeros(logits.shape[:1] + logits.shape[-2:-1], jnp.float32)

  def terms(self, outputs: jax.Array, batch: Mapping[str, Any], aux: Mapping[str, Any],
            label_smoothing: float = 0.0) -> StepTerms:
    del label_smoothing  # CTC has no per-class targets to smooth
    return ctc_terms(outputs, self._paddings(aux, outputs), batch["label"],
                     batch["label_paddings"].astype(jnp.float32), self.threshold,
                     self.blank_id, self.zero_infinity)

  def eval_batch(self, outputs: jax.Array, batch: Mapping[str, Any], aux: Mapping[str, Any],
                 weights: jax.Array) -> dict[str, jax.Array]:
    del weights  # padding rows are dropped when the rows are concatenated
    paddings = self._paddings(aux, outputs)
    terms = ctc_terms(outputs[:, None], paddings, batch["label"],
                      batch["label_paddings"].astype(jnp.float32), self.threshold,
                      self.blank_id, self.zero_infinity)
    tokens, lengths = jax.vmap(greedy_ctc_decode, in_axes=(0, 0, None))(
        outputs, paddings, self.blank_id)
    return {"tokens": tokens, "lengths": lengths, "label": batch["label"],
            "label_paddings": batch["label_paddings"], "loss": terms.losses[:, 0]}

  def eval_metrics(self, totals: Mapping[str, np.ndarray]) -> dict[str, float]:
    hypotheses = [list(t[:n]) for t, n in zip(np.asarray(totals["tokens"]).tolist(),
                                               np.asarray(totals["lengths"]).tolist())]
    references = [[int(v) for v, p in zip(row, pad) if p < 0.5] for row, pad in
                  zip(np.asarray(totals["label"]).tolist(),
                      np.asarray(totals["label_paddings"]).tolist())]
    rates = metrics.error_rates(hypotheses, references, self.word_delimiter)
    loss = np.asarray(totals["loss"], np.float64)
    return {"wer": rates["wer"], "cer": rates["cer"],
            "loss": float(loss.mean()) if loss.size else 0.0}
