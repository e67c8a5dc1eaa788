"""Tiny models and in-memory datasets, one per task, for the engine's end-to-end tests.

Each model is the user's kind of model: a linen module `(x, *, train) -> (outputs, aux)`
with `aux["pre_logits"]` (the head's input) and a `spg_attachments(kind)` method (HPO
replicas on the head input); none is in the registry. Each dataset is a
`spg_jax.data.ArrayDataset` with the features its task reads, drawn from a seeded generator.
"""
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from spg_jax import data
from spg_jax.models import ClassifierHeadMixin
from spg_jax.spg_model import MAIN_HEAD, Attachment

VOCAB, LENGTH, WIDTH = 11, 6, 8


def _hpo_only(kind):
  if kind != "hpo":
    raise ValueError(f"kind={kind!r}: these fake models have HPO attachments only")


class Classifier(ClassifierHeadMixin, nn.Module):
  """Vectors `[B, D]` -> logits `[B, C]` (ClassifierHeadMixin gives spg_attachments)."""
  num_classes: int = 3
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, *, train):
    del train
    h = nn.relu(nn.Dense(WIDTH)(x))
    return self.make_head(name="head")(h), {"pre_logits": h, "features": h[:, None, :]}

  def spg_pre_head(self):
    return lambda h: h[:, 0]

  def spg_nas_block(self):
    from spg_jax.replicas import ResidualMLPBlock  # pylint: disable=import-outside-toplevel
    return ResidualMLPBlock


class PixelClassifier(nn.Module):
  """Images `[B, H, W, 3]` -> per-pixel logits `[B, H, W, C]` (a 1x1 head on a conv map)."""
  num_classes: int = 3

  @nn.compact
  def __call__(self, x, *, train):
    del train
    h = nn.relu(nn.Conv(WIDTH, (3, 3))(x))
    return nn.Dense(self.num_classes, name="head")(h), {"pre_logits": h}

  def spg_attachments(self, kind):
    _hpo_only(kind)
    return {MAIN_HEAD: Attachment(nn.Dense(self.num_classes, parent=None))}


class TextEncoder(nn.Module):
  """Token ids (with token types and an attention mask, as BERT) -> per-token features."""

  @nn.compact
  def __call__(self, inputs):
    ids = inputs["input_ids"]
    h = nn.Embed(VOCAB, WIDTH)(ids) + nn.Embed(2, WIDTH)(inputs["token_type_ids"])
    return nn.relu(nn.Dense(WIDTH)(h)) * inputs["attention_mask"][..., None]


class SequenceModel(nn.Module):
  """Text -> one output vector `[B, C]` (C = 1: regression) from the mean-pooled tokens."""
  num_classes: int = 2

  @nn.compact
  def __call__(self, inputs, *, train):
    del train
    h = jnp.mean(TextEncoder()(inputs), axis=1)
    return nn.Dense(self.num_classes, name="head")(h), {"pre_logits": h}

  def spg_attachments(self, kind):
    _hpo_only(kind)
    return {MAIN_HEAD: Attachment(nn.Dense(self.num_classes, parent=None))}


class SpanHead(nn.Module):
  """Per-token features `[B, L, D]` -> `{"start_logits": [B, L], "end_logits": [B, L]}`."""

  @nn.compact
  def __call__(self, h):
    both = nn.Dense(2)(h)
    return {"start_logits": both[..., 0], "end_logits": both[..., 1]}


class QAModel(nn.Module):
  """Text -> start and end logits per token; HPO replicas act on every token's features."""
  num_classes: int = 0

  @nn.compact
  def __call__(self, inputs, *, train):
    del train
    h = TextEncoder()(inputs)
    return SpanHead(name="head")(h), {"pre_logits": h}

  def spg_attachments(self, kind):
    _hpo_only(kind)
    return {MAIN_HEAD: Attachment(SpanHead(parent=None))}


class FrameModel(nn.Module):
  """Waveforms `[B, S]` -> frame logits `[B, S / 4, C]` (frames of 4 samples), for CTC;
  `aux["logit_paddings"]` marks no frame as padding."""
  num_classes: int = 5

  @nn.compact
  def __call__(self, x, *, train):
    del train
    frames = x.reshape(x.shape[0], -1, 4)
    h = nn.relu(nn.Dense(WIDTH)(frames))
    return nn.Dense(self.num_classes, name="head")(h), {
        "pre_logits": h, "logit_paddings": jnp.zeros(h.shape[:2], jnp.float32)}

  def spg_attachments(self, kind):
    _hpo_only(kind)
    return {MAIN_HEAD: Attachment(nn.Dense(self.num_classes, parent=None))}


class TokenModel(nn.Module):
  """Token ids `[B, L]` -> per-token logits `[B, L, C]`, for per-token seq2seq."""
  num_classes: int = VOCAB

  @nn.compact
  def __call__(self, x, *, train):
    del train
    h = nn.relu(nn.Dense(WIDTH)(nn.Embed(VOCAB, WIDTH)(x)))
    return nn.Dense(self.num_classes, name="head")(h), {"pre_logits": h}

  def spg_attachments(self, kind):
    _hpo_only(kind)
    return {MAIN_HEAD: Attachment(nn.Dense(self.num_classes, parent=None))}


# ----------------------------------------------------------------------------- data
def _text(rng, n):
  mask = np.ones((n, LENGTH), np.int32)
  mask[:, -1] = 0  # one padding token per sequence
  return {"input_ids": rng.integers(1, VOCAB, (n, LENGTH)).astype(np.int32) * mask,
          "token_type_ids": np.repeat([[0, 0, 0, 1, 1, 1]], n, axis=0).astype(np.int32),
          "attention_mask": mask}


def _split(rng, task, n):
  if task == "classification":
    return {"input": rng.normal(size=(n, 5)).astype(np.float32),
            "label": rng.integers(0, 3, n).astype(np.int32)}
  if task == "segmentation":
    label = rng.integers(0, 3, (n, 4, 4)).astype(np.int32)
    label[:, 0, 0] = 255  # an ignored pixel in every image
    return {"input": rng.normal(size=(n, 4, 4, 3)).astype(np.float32), "label": label}
  if task == "sequence_classification":
    return {**_text(rng, n), "label": rng.integers(0, 2, n).astype(np.int32)}
  if task == "sequence_regression":
    return {**_text(rng, n), "label": rng.uniform(0, 5, n).astype(np.float32)}
  if task == "extractive_qa":
    start = rng.integers(0, LENGTH - 1, n).astype(np.int32)
    end = np.minimum(start + rng.integers(0, 2, n), LENGTH - 2).astype(np.int32)
    start[0] = LENGTH + 3  # an answer outside the window: ignored, not an error
    return {**_text(rng, n), "start_positions": start, "end_positions": end}
  if task == "ctc":
    paddings = np.zeros((n, 3), np.float32)
    paddings[:, -1] = 1.0
    return {"input": rng.normal(size=(n, 16)).astype(np.float32),
            "label": rng.integers(1, 5, (n, 3)).astype(np.int32), "label_paddings": paddings}
  if task == "seq2seq":
    paddings = np.zeros((n, LENGTH), np.float32)
    paddings[:, -2:] = 1.0
    return {"input": rng.integers(1, VOCAB, (n, LENGTH)).astype(np.int32),
            "targets": rng.integers(0, VOCAB, (n, LENGTH)).astype(np.int32),
            "target_paddings": paddings}
  raise ValueError(task)


# task -> (model, num_classes, ignore label)
CASES = {
    "classification": (Classifier(num_classes=3), 3, None),
    "segmentation": (PixelClassifier(num_classes=3), 3, 255),
    "sequence_classification": (SequenceModel(num_classes=2), 2, None),
    "sequence_regression": (SequenceModel(num_classes=1), 1, None),
    "extractive_qa": (QAModel(), LENGTH, None),
    "ctc": (FrameModel(num_classes=5), 5, None),
    "seq2seq": (TokenModel(num_classes=VOCAB), VOCAB, None),
}


def dataset(task: str, n_train: int = 16, n_eval: int = 12) -> data.ArrayDataset:
  """The in-memory dataset of `task` (seeded)."""
  rng = np.random.default_rng(0)
  _, num_classes, ignore = CASES[task]
  return data.ArrayDataset(f"fake_{task}", {"train": _split(rng, task, n_train),
                                            "validation": _split(rng, task, n_eval),
                                            "test": _split(rng, task, n_eval)},
                           num_classes, task=task, ignore_label=ignore)
