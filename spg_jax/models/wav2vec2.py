"""wav2vec 2.0 (Baevski et al., 2020) in Hugging Face's layout, with its two task heads.

`Wav2Vec2(config, head_type, num_classes)` maps raw audio `{"input_values": float [B, L],
"attention_mask": int [B, L] (optional, 1 = real sample)}` (a bare array is read as unpadded
audio) to the head's outputs and `aux`:

  feature_extractor  seven 1-D convs (no bias as base/large): feat_extract_norm="group":
                     GroupNorm(num_groups=C) after the first conv only (base); "layer": a
                     LayerNorm after every conv (large/lv60); exact GELU after each
  feature_projection LayerNorm + Dense(hidden) + dropout
  encoder            padded frames zeroed, positional conv embedding (kernel 128, 16 groups,
                     weight norm over the kernel axis as torch's `weight_norm(dim=2)`, the
                     last frame dropped when the kernel is even, GELU) added; post-LN layers
                     (do_stable_layer_norm=False, base) or pre-LN layers with a final
                     LayerNorm (True, large); padded keys get no attention weight
  head_type="sequence" (Wav2Vec2ForSequenceClassification): `projector` Dense(
                     classifier_proj_size), mean over the valid frames, `head` Dense -> [B, C]
  head_type="ctc" (Wav2Vec2ForCTC): dropout(final_dropout), `head` Dense(vocab_size) per
                     frame -> [B, T, vocab_size]

The frame mask comes from the sample mask through the conv length formula (Hugging Face's
`_get_feat_extract_output_lengths`): T_out = floor((T_in - kernel) / stride) + 1 per conv.
Not implemented: SpecAugment time/feature masking (`mask_time_prob`, training only in Hugging
Face) and LayerDrop (`layerdrop`, training only); eval outputs are unaffected.

aux: "features" (last hidden states [B, T, D]), "frame_mask" ([B, T] int32, 1 = real frame),
"logit_paddings" ([B, T] float, 1.0 = padded frame: what the CTC task reads), "pre_logits"
(the head's input: the last hidden states; for CTC after its dropout), "masked_features"
({"hidden_states", "attention_mask"}: those frames and their mask).

SPG (`spg_attachments(kind)`), where the reference attaches: classification replicas act on
the hidden states before the projector, per frame (`masked_features`; an HPO replica
perturbs the frames and passes the mask on), the shared head being projector + masked mean
pooling + classifier (`SequenceHead`, reading the base's top-level `projector` and `head`).
CTC replicas act on the last hidden states before `head` (`pre_logits`), the shared head
being the per-frame Dense. NAS replicas are `Wav2Vec2NASBlock`s (one pre-LN encoder layer
whose output projections start at 0: the identity at initialisation) on `masked_features`.
Verified against transformers 5.24.0 (`experiments/golden/huggingface_wav2vec2.py`, tests in
`tests/test_models_wav2vec2.py`): logits with padding within 3e-6 for base-style and
large-style sequence-classification and CTC models.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Dict, Mapping, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from spg_jax.models.layers import check_kind
from spg_jax.spg_model import MAIN_HEAD, Attachment

Dtype = Any

HEAD_TYPES = ("sequence", "ctc")
FEAT_EXTRACT_NORMS = ("group", "layer")
HIDDEN_ACTS = ("gelu",)

# name -> (layers, hidden, heads, intermediate); the conv stack is wav2vec2-base's.
SIZES = {
    "tiny": (2, 32, 4, 37),
    "base": (12, 768, 12, 3072),
    "large": (24, 1024, 16, 4096),
}


@dataclasses.dataclass(frozen=True)
class Wav2Vec2Config:
  """The architecture, with Hugging Face `Wav2Vec2Config`'s field names and defaults
  (wav2vec2-base's sizes). Rates are in [0, 1); `layer_norm_eps` is every LayerNorm's and
  of the transformer's; the conv norms use torch's default 1e-5."""
  vocab_size: int = 32
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  hidden_dropout: float = 0.1
  activation_dropout: float = 0.1
  attention_dropout: float = 0.1
  feat_proj_dropout: float = 0.0
  final_dropout: float = 0.1
  layer_norm_eps: float = 1e-5
  feat_extract_norm: str = "group"
  feat_extract_activation: str = "gelu"
  conv_dim: Tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
  conv_stride: Tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
  conv_kernel: Tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
  conv_bias: bool = False
  num_conv_pos_embeddings: int = 128
  num_conv_pos_embedding_groups: int = 16
  do_stable_layer_norm: bool = False
  classifier_proj_size: int = 256
  initializer_range: float = 0.02

  def __post_init__(self):
    for name in ("conv_dim", "conv_stride", "conv_kernel"):
      object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
    check_config(self)

  @classmethod
  def from_hf(cls, config: Mapping[str, Any], where: str = "config.json"
              ) -> "Wav2Vec2Config":
    """From a Hugging Face config dict (missing fields take Hugging Face's defaults).

    Raises:
      ValueError (one line starting with `where`): not a wav2vec2 config, a bad value.
    """
    if not isinstance(config, Mapping):
      raise ValueError(f"{where}: must be a JSON object, got {type(config).__name__}")
    model_type = config.get("model_type", "wav2vec2")
    if model_type != "wav2vec2":
      raise ValueError(f"{where}: model_type={model_type!r}; this model reads 'wav2vec2'")
    if config.get("use_weighted_layer_sum", False):
      raise ValueError(f"{where}: use_weighted_layer_sum=true; only the last layer's "
                       "output is implemented")
    if config.get("add_adapter", False):
      raise ValueError(f"{where}: add_adapter=true; the adapter is not implemented")
    names = [f.name for f in dataclasses.fields(cls)]
    values = {n: config[n] for n in names if n in config}
    try:
      return cls(**values)
    except (ValueError, TypeError) as e:
      raise ValueError(f"{where}: {e}") from None

  def kwargs(self) -> Dict[str, Any]:
    """The fields as constructor kwargs of `wav2vec2(...)`."""
    return dataclasses.asdict(self)

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads


def check_config(c: Wav2Vec2Config) -> Wav2Vec2Config:
  """`c` if every field is valid, else a one-line ValueError naming the field."""
  for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
               "intermediate_size", "num_conv_pos_embeddings",
               "num_conv_pos_embedding_groups", "classifier_proj_size"):
    value = getattr(c, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name}={value!r}: must be an integer >= 1")
  if c.hidden_size % c.num_attention_heads:
    raise ValueError(f"hidden_size={c.hidden_size}: must be a multiple of "
                     f"num_attention_heads={c.num_attention_heads}")
  if c.hidden_size % c.num_conv_pos_embedding_groups:
    raise ValueError(f"hidden_size={c.hidden_size}: must be a multiple of "
                     f"num_conv_pos_embedding_groups={c.num_conv_pos_embedding_groups}")
  if not (len(c.conv_dim) == len(c.conv_stride) == len(c.conv_kernel) >= 1):
    raise ValueError(f"conv_dim, conv_stride, conv_kernel: must have the same length >= 1, "
                     f"got {len(c.conv_dim)}, {len(c.conv_stride)}, {len(c.conv_kernel)}")
  for name in ("conv_dim", "conv_stride", "conv_kernel"):
    if min(getattr(c, name)) < 1:
      raise ValueError(f"{name}={list(getattr(c, name))}: every entry must be >= 1")
  for name in ("hidden_dropout", "activation_dropout", "attention_dropout",
               "feat_proj_dropout", "final_dropout"):
    value = getattr(c, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
      raise ValueError(f"{name}={value!r}: must be a number in [0, 1)")
  for name in ("layer_norm_eps", "initializer_range"):
    value = getattr(c, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
      raise ValueError(f"{name}={value!r}: must be a number > 0")
  if c.feat_extract_norm not in FEAT_EXTRACT_NORMS:
    raise ValueError(f"feat_extract_norm={c.feat_extract_norm!r}: must be one of "
                     f"{list(FEAT_EXTRACT_NORMS)}")
  for name in ("hidden_act", "feat_extract_activation"):
    if getattr(c, name) not in HIDDEN_ACTS:
      raise ValueError(f"{name}={getattr(c, name)!r}: must be one of {list(HIDDEN_ACTS)} "
                       "(the exact erf GELU)")
  return c


def check_head_type(value: Any) -> str:
  if value not in HEAD_TYPES:
    raise ValueError(f"head_type={value!r}: must be one of {list(HEAD_TYPES)}")
  return value


def feat_extract_output_lengths(lengths: jnp.ndarray, config: Wav2Vec2Config) -> jnp.ndarray:
  """Frames per sequence after the conv stack, from samples (Hugging Face's formula)."""
  for kernel, stride in zip(config.conv_kernel, config.conv_stride):
    lengths = (lengths - kernel) // stride + 1
  return lengths


def frame_mask(sample_mask: jnp.ndarray, num_frames: int, config: Wav2Vec2Config
               ) -> jnp.ndarray:
  """`[B, T]` int32: 1 for the frames of the valid samples (`sample_mask [B, L]`)."""
  lengths = feat_extract_output_lengths(jnp.sum(sample_mask.astype(jnp.int32), -1), config)
  return (jnp.arange(num_frames)[None] < lengths[:, None]).astype(jnp.int32)


def audio_inputs(x: Any) -> Tuple[jnp.ndarray, Optional[jnp.ndarray]]:
  """(input_values float [B, L], attention_mask [B, L] or None) from the model input."""
  if isinstance(x, Mapping):
    if "input_values" not in x:
      raise ValueError(f"wav2vec2 input: needs 'input_values' (and optionally "
                       f"'attention_mask'); got {sorted(x)}")
    values, mask = x["input_values"], x.get("attention_mask")
  else:
    values, mask = x, None
  values = jnp.asarray(values)
  if values.ndim != 2:
    raise ValueError(f"wav2vec2 input_values: must be an array [batch, samples], got "
                     f"{values.dtype}{list(values.shape)}")
  if mask is not None:
    mask = jnp.asarray(mask)
    if mask.shape != values.shape:
      raise ValueError(f"wav2vec2 attention_mask: shape {list(mask.shape)} differs from "
                       f"input_values' {list(values.shape)}")
  return values.astype(jnp.float32), mask


def _dense(c: Wav2Vec2Config, features: int, dtype: Dtype, name: Optional[str],
           zero: bool = False, **kw) -> nn.Dense:
  """Hugging Face's Linear init: N(0, initializer_range^2) weights, zero biases."""
  init = nn.initializers.zeros if zero else nn.initializers.normal(c.initializer_range)
  return nn.Dense(features, dtype=dtype, name=name, kernel_init=init, **kw)


def _gelu(x: jnp.ndarray) -> jnp.ndarray:
  return nn.gelu(x, approximate=False)


class FeatureEncoder(nn.Module):
  """The conv stack. `[B, L]` samples -> `[B, T, conv_dim[-1]]` frames."""
  config: Wav2Vec2Config
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, values: jnp.ndarray) -> jnp.ndarray:
    c = self.config
    h = values[..., None].astype(self.dtype)
    for i, (dim, kernel, stride) in enumerate(zip(c.conv_dim, c.conv_kernel, c.conv_stride)):
      h = nn.Conv(dim, (kernel,), (stride,), padding="VALID", use_bias=c.conv_bias,
                  dtype=self.dtype, kernel_init=nn.initializers.he_normal(),
                  name=f"conv_{i}")(h)
      # torch's GroupNorm/LayerNorm default epsilon (Hugging Face does not pass one).
      if c.feat_extract_norm == "layer":
        h = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name=f"norm_{i}")(h)
      elif i == 0:
        h = nn.GroupNorm(num_groups=dim, epsilon=1e-5, dtype=self.dtype,
                         use_fast_variance=False, name="norm_0")(h)
      h = _gelu(h)
    return h


class PositionalConvEmbedding(nn.Module):
  """Grouped conv over time with weight norm over the kernel axis (torch's
  `weight_norm(dim=2)`: one gain per kernel tap). `[B, T, D] -> [B, T, D]` (after GELU).

  Params: `weight_v` `[K, D / groups, D]` (flax conv layout), `weight_g` `[K]`, `bias` `[D]`.
  """
  config: Wav2Vec2Config
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, h: jnp.ndarray) -> jnp.ndarray:
    c = self.config
    k, groups, d = c.num_conv_pos_embeddings, c.num_conv_pos_embedding_groups, c.hidden_size
    v = self.param("weight_v", nn.initializers.normal(math.sqrt(4.0 / (k * d))),
                   (k, d // groups, d))
    g = self.param("weight_g", lambda key, shape: jnp.linalg.norm(
        v.reshape(k, -1), axis=1), (k,))
    bias = self.param("bias", nn.initializers.zeros, (d,))
    norm = jnp.sqrt(jnp.sum(jnp.square(v), axis=(1, 2), keepdims=True))
    kernel = (g[:, None, None] * v / norm).astype(self.dtype)
    out = jax.lax.conv_general_dilated(
        h.astype(self.dtype), kernel, (1,), [(k // 2, k // 2)],
        dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=groups)
    out = out + bias.astype(self.dtype)
    if k % 2 == 0:  # Wav2Vec2SamePadLayer: an even kernel makes one frame too many
      out = out[:, :-1]
    return _gelu(out)


class Attention(nn.Module):
  """Multi-head self-attention (q/k/v/out projections with biases). `(h [B, T, D], mask
  [B, T]) -> [B, T, D]`; padded keys get exactly zero weight; softmax in float32."""
  config: Wav2Vec2Config
  dtype: Dtype = jnp.float32
  zero_init_output: bool = False

  @nn.compact
  def __call__(self, h: jnp.ndarray, mask: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    c = self.config
    batch, length, width = h.shape
    split = lambda t: t.reshape(batch, length, c.num_attention_heads, c.head_dim)
    q, k, v = (split(_dense(c, width, self.dtype, n)(h))
               for n in ("q_proj", "k_proj", "v_proj"))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(c.head_dim)
    scores = jnp.where(mask.astype(bool)[:, None, None, :], scores,
                       jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
    probs = nn.Dropout(c.attention_dropout, deterministic=not train)(probs)
    context = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(batch, length, width)
    return _dense(c, width, self.dtype, "out_proj", zero=self.zero_init_output)(context)


class EncoderLayer(nn.Module):
  """One transformer layer, post-LN (base) or pre-LN (`do_stable_layer_norm`, large).
  `(h [B, T, D], mask [B, T]) -> [B, T, D]`."""
  config: Wav2Vec2Config
  dtype: Dtype = jnp.float32
  pre_layer_norm: Optional[bool] = None  # None: the config's `do_stable_layer_norm`
  zero_init_outputs: bool = False  # out_proj and output_dense start at 0 (NAS blocks)

  @nn.compact
  def __call__(self, h: jnp.ndarray, mask: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    c = self.config
    pre_ln = c.do_stable_layer_norm if self.pre_layer_norm is None else self.pre_layer_norm
    zero = self.zero_init_outputs
    norm = lambda name: nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype, name=name)
    dropout = lambda rate: nn.Dropout(rate, deterministic=not train)

    def attention(x):
      return dropout(c.hidden_dropout)(Attention(c, self.dtype, zero, name="attention")(
          x, mask, train=train))

    def feed_forward(x):
      x = _gelu(_dense(c, c.intermediate_size, self.dtype, "intermediate_dense")(x))
      x = dropout(c.activation_dropout)(x)
      return dropout(c.hidden_dropout)(_dense(c, c.hidden_size, self.dtype,
                                              "output_dense", zero=zero)(x))

    attention_norm, final_norm = norm("layer_norm"), norm("final_layer_norm")
    if pre_ln:
      h = h + attention(attention_norm(h))
      return h + feed_forward(final_norm(h))
    h = attention_norm(h + attention(h))
    return final_norm(h + feed_forward(h))


def classify_frames(c: Wav2Vec2Config, num_classes: int, dtype: Dtype, h: jnp.ndarray,
                    mask: jnp.ndarray) -> jnp.ndarray:
  """Hugging Face's sequence head inside the calling module: `projector` Dense, mean over
  the valid frames (`mask [B, T]`), `head` Dense. `h [B, T, D]` -> `[B, num_classes]`."""
  p = _dense(c, c.classifier_proj_size, dtype, "projector")(h)
  weights = mask.astype(p.dtype)[..., None]
  pooled = jnp.sum(p * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)
  return _dense(c, num_classes, dtype, "head")(pooled)


class SequenceHead(nn.Module):
  """The classification head as SPG's shared head (params: the model's top-level
  `projector` and `head`). `{"hidden_states": [B, T, D], "attention_mask": [B, T]}` ->
  `[B, num_classes]`."""
  config: Wav2Vec2Config
  num_classes: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, state: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
    return classify_frames(self.config, self.num_classes, self.dtype,
                           state["hidden_states"], state["attention_mask"])


class Wav2Vec2NASBlock(nn.Module):
  """SPG-NAS replica block: one extra pre-LN encoder layer whose attention output and
  feed-forward output projections start at 0, so the block is the identity at
  initialisation. `{"hidden_states", "attention_mask"}` -> the same with new states."""
  config: Wav2Vec2Config
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, state: Mapping[str, jnp.ndarray], *, train: bool
               ) -> Dict[str, jnp.ndarray]:
    h = EncoderLayer(self.config, self.dtype, pre_layer_norm=True, zero_init_outputs=True,
                     name="layer")(state["hidden_states"], state["attention_mask"],
                                   train=train)
    return {**state, "hidden_states": h}


def hidden_states(state: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
  """The frames of a `masked_features` entry (the CTC head's input after NAS replicas)."""
  return state["hidden_states"]


class Wav2Vec2(nn.Module):
  """wav2vec2 encoder with a sequence-classification or CTC head; see the module docstring.

  Attributes:
    config: the architecture (`Wav2Vec2Config`).
    head_type: "sequence" or "ctc" (`head` Dense(vocab_size) per frame).
    num_classes: the sequence head's classes; ignored by "ctc" (vocab_size from config).
    dtype: the computation dtype (params float32).
  """
  config: Wav2Vec2Config = Wav2Vec2Config()
  head_type: str = "sequence"
  num_classes: int = 2
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Any, *, train: bool):
    c = check_config(self.config)
    check_head_type(self.head_type)
    values, sample_mask = audio_inputs(x)
    h = FeatureEncoder(c, self.dtype, name="feature_extractor")(values)
    # feature_projection
    h = nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype,
                     name="feature_projection_layer_norm")(h)
    h = _dense(c, c.hidden_size, self.dtype, "feature_projection")(h)
    h = nn.Dropout(c.feat_proj_dropout, deterministic=not train)(h)
    frames = h.shape[1]
    mask = (jnp.ones(h.shape[:2], jnp.int32) if sample_mask is None
            else frame_mask(sample_mask, frames, c))
    # The encoder: padded frames are zeroed before the positional conv (as Hugging Face).
    h = h * mask[..., None].astype(h.dtype)
    h = h + PositionalConvEmbedding(c, self.dtype, name="pos_conv_embed")(h)
    encoder_norm = nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype,
                                name="encoder_layer_norm")
    if not c.do_stable_layer_norm:
      h = encoder_norm(h)
    h = nn.Dropout(c.hidden_dropout, deterministic=not train)(h)
    for i in range(c.num_hidden_layers):
      h = EncoderLayer(c, self.dtype, name=f"layer_{i}")(h, mask, train=train)
    if c.do_stable_layer_norm:
      h = encoder_norm(h)
    aux = {"features": h, "frame_mask": mask,
           # The CTC task's padded output frames (1.0 = padding).
           "logit_paddings": 1.0 - mask.astype(jnp.float32)}
    if self.head_type == "ctc":
      pre_logits = nn.Dropout(c.final_dropout, deterministic=not train)(h)
      aux["pre_logits"] = pre_logits
      aux["masked_features"] = {"hidden_states": pre_logits, "attention_mask": mask}
      return _dense(c, c.vocab_size, self.dtype, "head")(pre_logits), aux
    aux["pre_logits"] = h
    aux["masked_features"] = {"hidden_states": h, "attention_mask": mask}
    # The head's params sit at the top level (`projector`, `head`), as in Hugging Face.
    return classify_frames(c, self.num_classes, self.dtype, h, mask), aux

  def spg_attachments(self, kind: str) -> Dict[str, Attachment]:
    """`{"out": Attachment}`. HPO: CTC replicas on `pre_logits` (per frame) with the
    per-frame `head`; classification replicas per frame on `masked_features` (frames +
    mask; the replicas perturb the frames only) with `SequenceHead` (projector, masked
    mean, classifier; head_path ()). NAS: `Wav2Vec2NASBlock` layers on `masked_features`
    before the same heads."""
    c = self.config
    kind = check_kind(kind)
    if self.head_type == "ctc":
      head = _dense(c, c.vocab_size, self.dtype, None, parent=None)
      if kind == "hpo":
        return {MAIN_HEAD: Attachment(head=head, head_path=("head",),
                                      feature_key="pre_logits")}
      return {MAIN_HEAD: Attachment(head=head, head_path=("head",),
                                    feature_key="masked_features", pre_head=hidden_states,
                                    block=functools.partial(Wav2Vec2NASBlock, c, self.dtype))}
    head = SequenceHead(c, self.num_classes, self.dtype, parent=None)
    block = None if kind == "hpo" else functools.partial(Wav2Vec2NASBlock, c, self.dtype)
    return {MAIN_HEAD: Attachment(head=head, head_path=(), feature_key="masked_features",
                                  block=block)}


def wav2vec2(size: str = "base", *, head_type: str = "sequence", num_classes: int = 2,
             dtype: Dtype = jnp.float32, **config_fields) -> Wav2Vec2:
  """A `Wav2Vec2` of a named size (`SIZES`), any `Wav2Vec2Config` field overriding it.

  Raises:
    ValueError: an unknown size, field or head type, or a bad value (one line).
  """
  if size not in SIZES:
    raise ValueError(f"size={size!r}: must be one of {list(SIZES)}")
  allowed = [f.name for f in dataclasses.fields(Wav2Vec2Config)]
  unknown = sorted(set(config_fields) - set(allowed))
  if unknown:
    raise ValueError(f"wav2vec2: unknown argument {unknown[0]!r}; allowed: size, head_type, "
                     f"num_classes, dtype, {', '.join(allowed)}")
  layers, hidden, heads, mlp = SIZES[size]
  fields: Dict[str, Any] = dict(num_hidden_layers=layers, hidden_size=hidden,
                                num_attention_heads=heads, intermediate_size=mlp)
  if size == "tiny":  # a short conv stack and a small positional conv for fast tests
    # Four convs of total stride 320 as base's seven: 16000 samples -> 49 frames.
    fields.update(conv_dim=(32, 32, 32, 32), conv_stride=(5, 4, 4, 4),
                  conv_kernel=(10, 8, 4, 4), num_conv_pos_embeddings=16,
                  num_conv_pos_embedding_groups=4, classifier_proj_size=16)
  if size == "large":  # wav2vec2-large-lv60's style: LayerNorm convs with bias, pre-LN
    fields.update(feat_extract_norm="layer", conv_bias=True, do_stable_layer_norm=True)
  fields.update(config_fields)
  check_head_type(head_type)
  if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
    if head_type == "sequence":
      raise ValueError(f"num_classes={num_classes!r}: must be an integer >= 1")
    num_classes = 2
  return Wav2Vec2(Wav2Vec2Config(**fields), head_type=head_type, num_classes=num_classes,
                  dtype=jnp.dtype(dtype))
