"""Hugging Face BERT (`BertModel`, `BertForPreTraining`, `BertForMaskedLM`,
`BertForSequenceClassification`, `BertForQuestionAnswering`) -> `bert`.

  {p}embeddings.{word, position, token_type}_embeddings  -> embeddings/*/embedding
  {p}embeddings.LayerNorm                    -> embeddings/layer_norm
  {p}encoder.layer.{i}.attention.self.{query, key, value}   -> layer_{i}/attention/*
    .attention.output.dense, .attention.output.LayerNorm -> layer_{i}/attention_output,
                                                            /attention_layer_norm
    .intermediate.dense, .output.dense, .output.LayerNorm -> layer_{i}/intermediate,
                                                            /output, /output_layer_norm
  {p}pooler.dense                            -> pooler      (sequence heads only)
  classifier | qa_outputs                    -> head
Linear weights are transposed; `{p}` is "bert." for the task models and empty for a saved
`BertModel` (both accepted, not mixed); LayerNorm parameters may carry the old TF-port names
`gamma`/`beta`. Read and dropped: the `position_ids`/`token_type_ids` buffers some files
carry, the pretraining heads `cls.*` (masked-LM and next-sentence: not part of a fine-tuning
model) and, for a QA model, the pooler (BertForQuestionAnswering has none).

The architecture comes from `config.json`. The head: read off the file (`classifier.*`:
head_type "sequence" with num_classes from its rows; `qa_outputs.*`: "qa"); a checkpoint
without one (a pretrained `bert-base-*`) needs the option `head` ("sequence", with
`num_classes`, default config.json's number of labels, or "qa") and gets a head initialised
fresh from `seed` (and a fresh pooler when a sequence model's file has none, as
transformers does), reported in the conversion's summary and info.
"""
import functools
import re
from typing import Any, Mapping, Optional, Tuple

from spg_jax.models.convert import common
from spg_jax.models.convert.huggingface import heads

PREFIX = "bert."
OPTIONS = ("head", "num_classes")
HEAD_KEYS = {"sequence": "classifier", "qa": "qa_outputs"}
HEAD_ARCHITECTURES = {"BertForSequenceClassification": "sequence",
                      "BertForQuestionAnswering": "qa"}
EMBEDDINGS = ("word_embeddings", "position_embeddings", "token_type_embeddings")
QKV = ("query", "key", "value")
# Our layer units -> torch modules inside `encoder.layer.{i}`.
DENSE_UNITS = {"attention_output": "attention.output.dense",
               "intermediate": "intermediate.dense", "output": "output.dense"}
NORM_UNITS = {"attention_layer_norm": "attention.output.LayerNorm",
              "output_layer_norm": "output.LayerNorm"}
# Top-level module names of the encoder's keys (after the optional prefix).
_ENCODER_ROOTS = ("embeddings.", "encoder.", "pooler.")

_LAYER = re.compile(r"layer_(\d+)")
_BUFFER = re.compile(r"(bert\.)?embeddings\.(position_ids|token_type_ids)")
_POOLER = re.compile(r"(bert\.)?pooler\.dense\.(weight|bias)")


def layer_norm(collection: str, names: Tuple[str, ...], shape: common.Shape,
               prefix: str) -> Optional[common.Source]:
  """A LayerNorm leaf from `prefix.{weight, bias}` (old files: `prefix.{gamma, beta}`)."""
  table = {"scale": ("weight", "gamma"), "bias": ("bias", "beta")}
  if collection != "params" or len(names) != 1 or names[0] not in table:
    return None
  current, legacy = table[names[0]]
  return common.same(f"{prefix}.{current}", shape, aliases=(f"{prefix}.{legacy}",))


def _layer_source(collection, names, shape, prefix: str) -> Optional[common.Source]:
  unit, rest = names[0], names[1:]
  if unit == "attention" and rest and rest[0] in QKV:
    return common.dense(collection, rest[1:], shape, f"{prefix}.attention.self.{rest[0]}")
  if unit in DENSE_UNITS:
    return common.dense(collection, rest, shape, f"{prefix}.{DENSE_UNITS[unit]}")
  if unit in NORM_UNITS:
    return layer_norm(collection, rest, shape, f"{prefix}.{NORM_UNITS[unit]}")
  return None


def source(collection: str, names: Tuple[str, ...], shape: common.Shape,
           prefix: str = PREFIX, head_type: str = "sequence") -> Optional[common.Source]:
  """The Hugging Face key of a leaf of `spg_jax.models.Bert` (encoder keys under `prefix`)."""
  if collection != "params" or not names:
    return None
  unit, rest = names[0], names[1:]
  if unit == "embeddings" and rest:
    if rest[0] in EMBEDDINGS and rest[1:] == ("embedding",):
      return common.same(f"{prefix}embeddings.{rest[0]}.weight", shape)
    if rest[0] == "layer_norm":
      return layer_norm(collection, rest[1:], shape, f"{prefix}embeddings.LayerNorm")
    return None
  layer = _LAYER.fullmatch(unit)
  if layer is not None and rest:
    return _layer_source(collection, rest, shape, f"{prefix}encoder.layer.{layer[1]}")
  if unit == "pooler":
    return common.dense(collection, rest, shape, f"{prefix}pooler.dense")
  if unit == "head":
    return common.dense(collection, rest, shape, HEAD_KEYS[head_type])
  return None


def file_prefix(shapes: common.Shapes) -> str:
  """"bert." or "" as the file spells its encoder keys; a file mixing both is an error."""
  prefixed = [k for k in shapes if k.startswith(PREFIX)]
  bare = [k for k in shapes if k.startswith(_ENCODER_ROOTS)]
  if prefixed and bare:
    raise ValueError(f"the weights file mixes encoder keys with the {PREFIX!r} prefix "
                     f"({prefixed[0]!r}) and without it ({bare[0]!r})")
  return "" if bare else PREFIX


def source_for(shapes: common.Shapes, kwargs: Mapping[str, Any]) -> common.SourceFn:
  """`source` for this file's prefix and the head being built."""
  return functools.partial(source, prefix=file_prefix(shapes),
                           head_type=kwargs["head_type"])


def optional_group(path: common.LeafPath) -> Optional[str]:
  """The head and the pooler may be missing from a file (then initialised fresh)."""
  if len(path) > 1 and path[1] in ("head", "pooler"):
    return path[1]
  return None


def ignorable(key: str, expected: frozenset) -> bool:
  """Buffers, pretraining heads and (unused: QA models) the pooler are dropped."""
  del expected
  return bool(_BUFFER.fullmatch(key) or key.startswith("cls.") or _POOLER.fullmatch(key))


def ignored_kind(key: str) -> str:
  if key.startswith("cls."):
    return "pretraining heads cls.*"
  if _POOLER.fullmatch(key):
    return "pooler (a QA model has none)"
  return "buffers"


def input_shape(kwargs: Mapping[str, Any]) -> dict:
  """The dummy text input that builds the variables (one sequence of 8 tokens)."""
  del kwargs
  return {name: ((1, 8), "int32") for name in ("input_ids", "token_type_ids",
                                                "attention_mask")}


def model_kwargs(shapes: common.Shapes, config: Mapping[str, Any], head: Optional[str] = None,
                 num_classes: Optional[int] = None) -> dict:
  """`bert` kwargs: the architecture from config.json, the head from the file or `head`.

  Raises:
    ValueError (one line): a config.json this model cannot build, a head option that
      contradicts the file's head, a file without a head and no `head` option, a bad
      `num_classes`.
  """
  from spg_jax.models import bert as bert_model  # pylint: disable=g-import-not-at-top  (flax)
  bert_config = bert_model.BertConfig.from_hf(config, where="config.json")
  head_type, in_file = heads.resolve_head(shapes, config, head, HEAD_KEYS,
                                          HEAD_ARCHITECTURES)
  kwargs = {**bert_config.kwargs(), "head_type": head_type}
  if head_type == "qa":
    if num_classes is not None:
      raise ValueError(f"num_classes={num_classes!r}: only for head='sequence' (a QA head "
                       "has 2 outputs, start and end)")
    return kwargs
  if num_classes is None:
    num_classes = (common.require(shapes, "classifier.weight", 2)[0] if in_file
                   else heads.num_labels(config))
  if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"num_classes={num_classes!r}: must be an integer >= 1 (1: regression)")
  kwargs["num_classes"] = num_classes
  return kwargs
