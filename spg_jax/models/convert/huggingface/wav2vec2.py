"""Hugging Face wav2vec2 (`Wav2Vec2Model`, `Wav2Vec2ForPreTraining`, `Wav2Vec2ForCTC`,
`Wav2Vec2ForSequenceClassification`) -> `wav2vec2`.

  {p}feature_extractor.conv_layers.{i}.conv          -> feature_extractor/conv_{i}
  {p}feature_extractor.conv_layers.{i}.layer_norm    -> feature_extractor/norm_{i}
                                                        (GroupNorm or LayerNorm)
  {p}feature_projection.layer_norm, .projection      -> feature_projection_layer_norm,
                                                        feature_projection
  {p}encoder.pos_conv_embed.conv.{weight_g, weight_v, bias}   -> pos_conv_embed/*
      (current torch: `parametrizations.weight.original0` = g, `original1` = v)
  {p}encoder.layer_norm                              -> encoder_layer_norm
  {p}encoder.layers.{i}.attention.{q,k,v,out}_proj   -> layer_{i}/attention/*
  {p}encoder.layers.{i}.{layer_norm, final_layer_norm}        -> layer_{i}/*
  {p}encoder.layers.{i}.feed_forward.{intermediate,output}_dense -> layer_{i}/*
  projector                                          -> projector   (sequence head)
  classifier | lm_head                               -> head
Linear weights are transposed, conv weights [O, I/g, K] -> [K, I/g, O]; the weight-norm gain
[1, 1, K] becomes [K]. `{p}` is "wav2vec2." for the task and pretraining models and empty
for a saved `Wav2Vec2Model` (not mixed). Read and dropped: `masked_spec_embed` (SpecAugment's
mask vector, training only) and the pretraining heads `quantizer.*`, `project_hid.*`,
`project_q.*`.

The architecture comes from `config.json`. The head: read off the file (`classifier.*`:
head_type "sequence" with num_classes from its rows; `lm_head.*`: "ctc" with config.json's
vocab_size); a checkpoint without one (a pretrained `wav2vec2-base`) needs the option `head`
("sequence", with `num_classes`, or "ctc") and gets the head (and a sequence head's
projector) initialised fresh from `seed`.
"""
import functools
import re
from typing import Any, Mapping, Optional, Tuple

import numpy as np

from spg_jax.models.convert import common
from spg_jax.models.convert.huggingface import heads

PREFIX = "wav2vec2."
OPTIONS = ("head", "num_classes")
HEAD_KEYS = {"sequence": "classifier", "ctc": "lm_head"}
HEAD_ARCHITECTURES = {"Wav2Vec2ForSequenceClassification": "sequence",
                      "Wav2Vec2ForCTC": "ctc"}
ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj")
FEED_FORWARD = ("intermediate_dense", "output_dense")
_ENCODER_ROOTS = ("feature_extractor.", "feature_projection.", "encoder.",
                  "masked_spec_embed")
POS_CONV = "encoder.pos_conv_embed.conv"
# Our weight-norm leaf -> (current torch name, old name) under POS_CONV.
WEIGHT_NORM = {"weight_g": ("parametrizations.weight.original0", "weight_g"),
               "weight_v": ("parametrizations.weight.original1", "weight_v")}

_CONV = re.compile(r"conv_(\d+)")
_NORM = re.compile(r"norm_(\d+)")
_LAYER = re.compile(r"layer_(\d+)")
_PRETRAINING = re.compile(r"(quantizer\.|project_hid\.|project_q\.)")
_SPEC_EMBED = re.compile(r"(wav2vec2\.)?masked_spec_embed")


def _weight_norm(leaf: str, shape: common.Shape, prefix: str) -> common.Source:
  current, legacy = (f"{prefix}{POS_CONV}.{name}" for name in WEIGHT_NORM[leaf])
  if leaf == "weight_g":  # torch weight_norm(dim=2): one gain per kernel tap, [1, 1, K]
    return common.Source(current, (1, 1, shape[0]), lambda x: x.reshape(-1),
                         aliases=(legacy,))
  k, group_in, out = shape
  return common.Source(current, (out, group_in, k), lambda x: np.transpose(x, (2, 1, 0)),
                       aliases=(legacy,))


def _feature_extractor(collection, names, shape, prefix: str) -> Optional[common.Source]:
  if len(names) != 2:
    return None
  conv, norm = _CONV.fullmatch(names[0]), _NORM.fullmatch(names[0])
  base = f"{prefix}feature_extractor.conv_layers"
  if conv is not None:
    return common.conv(collection, names[1:], shape, f"{base}.{conv[1]}.conv")
  if norm is not None:
    return common.layer_norm(collection, names[1:], shape, f"{base}.{norm[1]}.layer_norm")
  return None


def _layer(collection, names, shape, prefix: str) -> Optional[common.Source]:
  unit, rest = names[0], names[1:]
  if unit == "attention" and rest and rest[0] in ATTENTION:
    return common.dense(collection, rest[1:], shape, f"{prefix}.attention.{rest[0]}")
  if unit in FEED_FORWARD:
    return common.dense(collection, rest, shape, f"{prefix}.feed_forward.{unit}")
  if unit in ("layer_norm", "final_layer_norm"):
    return common.layer_norm(collection, rest, shape, f"{prefix}.{unit}")
  return None


def source(collection: str, names: Tuple[str, ...], shape: common.Shape,
           prefix: str = PREFIX, head_type: str = "sequence") -> Optional[common.Source]:
  """The Hugging Face key of a leaf of `spg_jax.models.wav2vec2.Wav2Vec2`."""
  if collection != "params" or not names:
    return None
  unit, rest = names[0], names[1:]
  if unit == "feature_extractor":
    return _feature_extractor(collection, rest, shape, prefix)
  if unit == "feature_projection_layer_norm":
    return common.layer_norm(collection, rest, shape, f"{prefix}feature_projection.layer_norm")
  if unit == "feature_projection":
    return common.dense(collection, rest, shape, f"{prefix}feature_projection.projection")
  if unit == "pos_conv_embed" and len(rest) == 1:
    if rest[0] in WEIGHT_NORM:
      return _weight_norm(rest[0], shape, prefix)
    if rest[0] == "bias":
      return common.same(f"{prefix}{POS_CONV}.bias", shape)
    return None
  if unit == "encoder_layer_norm":
    return common.layer_norm(collection, rest, shape, f"{prefix}encoder.layer_norm")
  layer = _LAYER.fullmatch(unit)
  if layer is not None and rest:
    return _layer(collection, rest, shape, f"{prefix}encoder.layers.{layer[1]}")
  if unit == "projector":
    return common.dense(collection, rest, shape, "projector")
  if unit == "head":
    return common.dense(collection, rest, shape, HEAD_KEYS[head_type])
  return None


def file_prefix(shapes: common.Shapes) -> str:
  """"wav2vec2." or "" as the file spells its encoder keys; mixing both is an error."""
  prefixed = [k for k in shapes if k.startswith(PREFIX)]
  bare = [k for k in shapes if k.startswith(_ENCODER_ROOTS)]
  if prefixed and bare:
    raise ValueError(f"the weights file mixes encoder keys with the {PREFIX!r} prefix "
                     f"({prefixed[0]!r}) and without it ({bare[0]!r})")
  return "" if bare else PREFIX


def source_for(shapes: common.Shapes, kwargs: Mapping[str, Any]) -> common.SourceFn:
  return functools.partial(source, prefix=file_prefix(shapes),
                           head_type=kwargs["head_type"])


def optional_group(path: common.LeafPath) -> Optional[str]:
  """The task head (with a sequence head's projector) may be missing from a file."""
  if len(path) > 1 and path[1] in ("head", "projector"):
    return "head"
  return None


def ignorable(key: str, expected: frozenset) -> bool:
  """SpecAugment's mask vector and the pretraining heads are dropped."""
  del expected
  return bool(_SPEC_EMBED.fullmatch(key) or _PRETRAINING.match(key))


def ignored_kind(key: str) -> str:
  if _PRETRAINING.match(key):
    return "pretraining heads (quantizer, project_hid, project_q)"
  return "masked_spec_embed (SpecAugment)"


def min_samples(config: Mapping[str, Any]) -> int:
  """The fewest input samples giving one output frame of the conv stack."""
  length = 1
  for kernel, stride in zip(reversed(config["conv_kernel"]), reversed(config["conv_stride"])):
    length = (length - 1) * stride + kernel
  return int(length)


def input_shape(kwargs: Mapping[str, Any]) -> dict:
  """The dummy audio input that builds the variables (one frame's worth of samples)."""
  length = min_samples(kwargs)
  return {"input_values": ((1, length), "float32"), "attention_mask": ((1, length), "int32")}


def model_kwargs(shapes: common.Shapes, config: Mapping[str, Any], head: Optional[str] = None,
                 num_classes: Optional[int] = None) -> dict:
  """`wav2vec2` kwargs: the architecture from config.json, the head from the file or `head`.

  Raises:
    ValueError (one line): a config.json this model cannot build, a head option that
      contradicts the file's head, a file without a head and no `head` option, a bad
      `num_classes`.
  """
  from spg_jax.models import wav2vec2 as model  # pylint: disable=g-import-not-at-top  (flax)
  w_config = model.Wav2Vec2Config.from_hf(config, where="config.json")
  head_type, in_file = heads.resolve_head(shapes, config, head, HEAD_KEYS,
                                          HEAD_ARCHITECTURES)
  kwargs = {**w_config.kwargs(), "head_type": head_type}
  if head_type == "ctc":
    if num_classes is not None:
      raise ValueError(f"num_classes={num_classes!r}: only for head='sequence' (a CTC head "
                       "has config.json's vocab_size outputs)")
    return kwargs
  if num_classes is None:
    if in_file:
      num_classes = common.require(shapes, "classifier.weight", 2)[0]
    else:
      num_classes = heads.num_labels(config)
  if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"num_classes={num_classes!r}: must be an integer >= 1")
  kwargs["num_classes"] = num_classes
  return kwargs
