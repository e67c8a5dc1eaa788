"""BERT (Devlin et al., 2019) in Hugging Face's layout, with the heads the paper fine-tunes.

`Bert(config, head_type, num_classes)` maps text inputs `{"input_ids", "token_type_ids",
"attention_mask"}` (int `[B, L]`; a bare `input_ids` array is read as one unpadded segment)
to the head's outputs and `aux`:

  embeddings    word + position (absolute, 0..L-1) + token type, LayerNorm, dropout
  layer_{i}     post-LN encoder layer: h = LN(h + Dropout(Dense(SelfAttention(h)))),
                h = LN(h + Dropout(Dense(GELU(Dense(h))))); exact (erf) GELU; the attention
                mask as Hugging Face's extended mask (padded keys get no weight)
  head_type="sequence" (BertForSequenceClassification; num_classes=1 is regression):
    pooler      Dense + tanh on the [CLS] token; Dropout(classifier_dropout, else
                hidden_dropout_prob); `head` Dense(num_classes) -> logits [B, num_classes]
  head_type="qa" (BertForQuestionAnswering; no pooler, as there):
    `head`      Dense(2) on every token -> {"start_logits": [B, L], "end_logits": [B, L]}

aux: "features" (the sequence output [B, L, D]), "pre_logits" (the head's input: the pooled
output after its dropout [B, D], or the sequence output), "pooled" (sequence heads: the
pooler's output before the dropout), "masked_features" ({"hidden_states", "attention_mask"}:
what the NAS replicas read).

SPG (`spg_attachments(kind)`): HPO replicas act on the head's input, as in the authors' code:
the pooled output after dropout for sequence heads, every token of the sequence output for
QA (the shared head gives start and end logits per token). NAS replicas add encoder layers
after the last one (`BertNASBlock`, 7,087,872 parameters per replica at bert-base sizes,
198,272 at bert-tiny's) on the sequence output with its attention mask; the sequence head
then re-applies the model's own pooler, dropout and classifier to the [CLS] token.

Sizes come from a `BertConfig`, usually built from a Hugging Face `config.json`
(`BertConfig.from_hf`). Parameters are float32; `dtype` is the computation dtype (bfloat16
works: softmax and LayerNorm statistics run in float32). bert-base-cased (vocab 28996): the
encoder and pooler have 108,310,272 parameters, as transformers' `BertModel`.
"""
import dataclasses
import functools
import math
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from spg_jax.models.layers import check_kind
from spg_jax.spg_model import MAIN_HEAD, Attachment

Dtype = Any

HEAD_TYPES = ("sequence", "qa")
HIDDEN_ACTS = ("gelu",)
TEXT_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
START, END = "start_logits", "end_logits"

# Google's BERT sizes (Turc et al. 2019 for the small ones): layers, hidden, heads, MLP.
SIZES = {
    "tiny": (2, 128, 2, 512),
    "mini": (4, 256, 4, 1024),
    "small": (4, 512, 8, 2048),
    "medium": (8, 512, 8, 2048),
    "base": (12, 768, 12, 3072),
    "large": (24, 1024, 16, 4096),
}


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The architecture, with Hugging Face `BertConfig`'s field names and defaults
  (bert-base-uncased's sizes).

  Attributes:
    vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
      max_position_embeddings, type_vocab_size: the sizes (hidden_size a multiple of
      num_attention_heads).
    layer_norm_eps: every LayerNorm's epsilon (BERT: 1e-12; Flax's default would be 1e-6).
    hidden_dropout_prob, attention_probs_dropout_prob: dropout rates in [0, 1).
    classifier_dropout: the dropout before the sequence classifier (None: hidden_dropout_prob).
    hidden_act: "gelu" only (Hugging Face's "gelu" is the exact erf form).
    initializer_range: std of the normal initialisation of weights and embeddings.
  """
  vocab_size: int = 30522
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  classifier_dropout: Optional[float] = None
  hidden_act: str = "gelu"
  initializer_range: float = 0.02

  def __post_init__(self):
    check_config(self)

  @classmethod
  def from_hf(cls, config: Mapping[str, Any], where: str = "config.json") -> "BertConfig":
    """From a Hugging Face config dict (missing fields take Hugging Face's defaults).

    Raises:
      ValueError (one line starting with `where`): not a BERT config, a feature this model
        does not have (relative positions, a decoder, cross-attention), a bad value.
    """
    if not isinstance(config, Mapping):
      raise ValueError(f"{where}: must be a JSON object, got {type(config).__name__}")
    model_type = config.get("model_type", "bert")
    if model_type != "bert":
      raise ValueError(f"{where}: model_type={model_type!r}; this model reads 'bert'")
    position = config.get("position_embedding_type", "absolute")
    if position != "absolute":
      raise ValueError(f"{where}: position_embedding_type={position!r}; only 'absolute' "
                       "is implemented")
    for flag in ("is_decoder", "add_cross_attention"):
      if config.get(flag, False):
        raise ValueError(f"{where}: {flag}=true; only BERT encoders are implemented")
    names = [f.name for f in dataclasses.fields(cls)]
    values = {n: config[n] for n in names if n in config}
    return _checked(lambda: cls(**values), where)

  def kwargs(self) -> Dict[str, Any]:
    """The fields as constructor kwargs of `bert(...)` (classifier_dropout only when set)."""
    out = dataclasses.asdict(self)
    if out["classifier_dropout"] is None:
      del out["classifier_dropout"]
    return out

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  @property
  def classifier_dropout_rate(self) -> float:
    return (self.hidden_dropout_prob if self.classifier_dropout is None
            else self.classifier_dropout)


def _checked(build: Callable[[], Any], where: str) -> Any:
  try:
    return build()
  except ValueError as e:
    raise ValueError(f"{where}: {e}") from None


def _positive_int(config: BertConfig, name: str) -> None:
  value = getattr(config, name)
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"{name}={value!r}: must be an integer >= 1")


def _rate(config: BertConfig, name: str) -> None:
  value = getattr(config, name)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
    raise ValueError(f"{name}={value!r}: must be a number in [0, 1)")


def check_config(config: BertConfig) -> BertConfig:
  """`config` if every field is valid, else a one-line ValueError naming the field."""
  for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
               "intermediate_size", "max_position_embeddings", "type_vocab_size"):
    _positive_int(config, name)
  if config.hidden_size % config.num_attention_heads:
    raise ValueError(f"hidden_size={config.hidden_size}: must be a multiple of "
                     f"num_attention_heads={config.num_attention_heads}")
  for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
    _rate(config, name)
  if config.classifier_dropout is not None:
    _rate(config, "classifier_dropout")
  for name in ("layer_norm_eps", "initializer_range"):
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
      raise ValueError(f"{name}={value!r}: must be a number > 0")
  if config.hidden_act not in HIDDEN_ACTS:
    raise ValueError(f"hidden_act={config.hidden_act!r}: must be one of {list(HIDDEN_ACTS)} "
                     "(the exact erf GELU, Hugging Face's 'gelu')")
  return config


def check_head_type(value: Any) -> str:
  if value not in HEAD_TYPES:
    raise ValueError(f"head_type={value!r}: must be one of {list(HEAD_TYPES)}")
  return value


def text_inputs(x: Any) -> Tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """(input_ids, token_type_ids, attention_mask), int `[B, L]` each, from the model input:
  a dict with `input_ids` (token types default to 0, the mask to all ones) or an array of
  token ids."""
  if isinstance(x, Mapping):
    if "input_ids" not in x:
      raise ValueError(f"BERT input: needs 'input_ids' (and optionally 'token_type_ids', "
                       f"'attention_mask'); got {sorted(x)}")
    ids = x["input_ids"]
    types = x.get("token_type_ids")
    mask = x.get("attention_mask")
  else:
    ids, types, mask = x, None, None
  ids = jnp.asarray(ids)
  if ids.ndim != 2 or not jnp.issubdtype(ids.dtype, jnp.integer):
    raise ValueError(f"BERT input_ids: must be an integer array [batch, length], got "
                     f"{ids.dtype}{list(ids.shape)}")
  types = jnp.zeros_like(ids) if types is None else jnp.asarray(types)
  mask = jnp.ones_like(ids) if mask is None else jnp.asarray(mask)
  for name, value in (("token_type_ids", types), ("attention_mask", mask)):
    if value.shape != ids.shape:
      raise ValueError(f"BERT {name}: shape {list(value.shape)} differs from input_ids' "
                       f"{list(ids.shape)}")
  return ids, types, mask


def _init(config: BertConfig) -> Callable:
  """Hugging Face's initialisation of weights and embeddings: N(0, initializer_range^2)."""
  return nn.initializers.normal(config.initializer_range)


def _dense(config: BertConfig, features: int, dtype: Dtype, name: Optional[str],
           zero: bool = False, **kwargs) -> nn.Dense:
  """Dense with Hugging Face's init (`zero`: weights 0; biases start at 0 either way)."""
  return nn.Dense(features, dtype=dtype, name=name,
                  kernel_init=nn.initializers.zeros if zero else _init(config), **kwargs)


class BertEmbeddings(nn.Module):
  """Word + position + token-type embeddings, LayerNorm, dropout. `(ids, types) [B, L]` ->
  `[B, L, D]`."""
  config: BertConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, input_ids: jnp.ndarray, token_type_ids: jnp.ndarray, *,
               train: bool) -> jnp.ndarray:
    c = self.config
    length = input_ids.shape[1]
    if length > c.max_position_embeddings:
      raise ValueError(f"BERT input: sequence length {length} exceeds "
                       f"max_position_embeddings={c.max_position_embeddings}")
    embed = functools.partial(nn.Embed, features=c.hidden_size, embedding_init=_init(c),
                              dtype=self.dtype)
    x = embed(c.vocab_size, name="word_embeddings")(input_ids)
    x = x + embed(c.type_vocab_size, name="token_type_embeddings")(token_type_ids)
    x = x + embed(c.max_position_embeddings, name="position_embeddings")(
        jnp.arange(length)[None])
    x = nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype, name="layer_norm")(x)
    return nn.Dropout(c.hidden_dropout_prob, deterministic=not train)(x)


class BertSelfAttention(nn.Module):
  """Multi-head self-attention with separate query/key/value Dense layers (torch's Linear
  layout, one to one). `(h [B, L, D], mask [B, L]) -> context [B, L, D]` (before the output
  dense). Padded keys (mask 0) get exactly zero weight; the softmax runs in float32."""
  config: BertConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, h: jnp.ndarray, mask: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    c = self.config
    batch, length, width = h.shape
    split = lambda t: t.reshape(batch, length, c.num_attention_heads, c.head_dim)
    q, k, v = (split(_dense(c, width, self.dtype, name)(h))
               for name in ("query", "key", "value"))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32)
    scores = scores / math.sqrt(c.head_dim)
    # Hugging Face adds finfo.min to padded keys' scores; the same weights (exactly 0).
    keep = mask.astype(bool)[:, None, None, :]
    scores = jnp.where(keep, scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
    probs = nn.Dropout(c.attention_probs_dropout_prob, deterministic=not train)(probs)
    context = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
    return context.reshape(batch, length, width)


class BertLayer(nn.Module):
  """One encoder layer. `(h [B, L, D], mask [B, L]) -> [B, L, D]`.

  Attributes:
    pre_layer_norm: False (BERT's post-LN: `h = LN(h + f(h))` per sublayer); True: the same
      parameters in pre-LN order, `h = h + f(LN(h))`, which with `zero_init_outputs` is
      exactly the identity at initialisation (a post-LN layer cannot be: its LayerNorm
      renormalises trained features), used by `BertNASBlock`.
    zero_init_outputs: start the attention output dense and the output dense (weights and
      biases) at 0.
  """
  config: BertConfig
  dtype: Dtype = jnp.float32
  pre_layer_norm: bool = False
  zero_init_outputs: bool = False

  @nn.compact
  def __call__(self, h: jnp.ndarray, mask: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    c = self.config
    layer_norm = functools.partial(nn.LayerNorm, epsilon=c.layer_norm_eps, dtype=self.dtype)
    dropout = functools.partial(nn.Dropout, c.hidden_dropout_prob, deterministic=not train)
    attention_norm = layer_norm(name="attention_layer_norm")
    output_norm = layer_norm(name="output_layer_norm")

    def attention(x):
      context = BertSelfAttention(c, self.dtype, name="attention")(x, mask, train=train)
      return dropout()(_dense(c, c.hidden_size, self.dtype, "attention_output",
                              zero=self.zero_init_outputs)(context))

    def feed_forward(x):
      x = nn.gelu(_dense(c, c.intermediate_size, self.dtype, "intermediate")(x),
                  approximate=False)
      return dropout()(_dense(c, c.hidden_size, self.dtype, "output",
                              zero=self.zero_init_outputs)(x))

    if self.pre_layer_norm:
      h = h + attention(attention_norm(h))
      return h + feed_forward(output_norm(h))
    h = attention_norm(h + attention(h))
    return output_norm(h + feed_forward(h))


class BertNASBlock(nn.Module):
  """SPG NAS replica block: one more encoder layer (`BertLayer` in pre-LN order with its
  output denses zero-initialised: the identity at init, trainable). It reads and returns
  `{"hidden_states": [B, L, D], "attention_mask": [B, L]}` (the mask passes through)."""
  config: BertConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, state: Mapping[str, jnp.ndarray], *, train: bool
               ) -> Dict[str, jnp.ndarray]:
    mask = state["attention_mask"]
    hidden = BertLayer(self.config, self.dtype, pre_layer_norm=True, zero_init_outputs=True,
                       name="layer")(state["hidden_states"], mask, train=train)
    return {"hidden_states": hidden, "attention_mask": mask}


class SpanHead(nn.Dense):
  """Extractive-QA head (`qa_outputs`): Dense(2) on every token, split into
  `{"start_logits": [B, L], "end_logits": [B, L]}`; its params are the Dense's own."""

  @nn.compact
  def __call__(self, inputs: jnp.ndarray) -> Dict[str, jnp.ndarray]:
    both = super().__call__(inputs)
    return {START: both[..., 0], END: both[..., 1]}


class PooledClassifier(nn.Module):
  """The sequence head from the [CLS] token on (for NAS replicas, applied with the base
  model's variables): `pooler` Dense + tanh, Dropout, `head` Dense. `[B, D] ->
  [B, num_classes]`. SPG applies shared heads without a train flag, with a "dropout" rng in
  training (each replica step its own mask) and without one while initialising, so the
  dropout is on exactly when there is an rng."""
  config: BertConfig
  num_classes: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, cls_token: jnp.ndarray) -> jnp.ndarray:
    c = self.config
    pooled = jnp.tanh(_dense(c, c.hidden_size, self.dtype, "pooler")(cls_token))
    pooled = nn.Dropout(c.classifier_dropout_rate,
                        deterministic=not self.has_rng("dropout"))(pooled)
    return _dense(c, self.num_classes, self.dtype, "head")(pooled)


def cls_hidden_state(state: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
  """`[B, D]`: the [CLS] token of a NAS replica's state."""
  return state["hidden_states"][:, 0]


def hidden_states(state: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
  """`[B, L, D]`: the tokens of a NAS replica's state."""
  return state["hidden_states"]


class Bert(nn.Module):
  """BERT encoder with a sequence (classification/regression) or extractive-QA head.

  `__call__(x, *, train) -> (outputs, aux)`; see the module docstring.

  Attributes:
    config: the architecture (`BertConfig`).
    head_type: "sequence" (pooler, dropout, `head` Dense(num_classes)) or "qa" (`head`
      Dense(2) on every token, no pooler).
    num_classes: the sequence head's outputs (1: regression); ignored by "qa".
    dtype: the computation dtype (params are float32).
  """
  config: BertConfig = BertConfig()
  head_type: str = "sequence"
  num_classes: int = 2
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Any, *, train: bool):
    c = check_config(self.config)
    check_head_type(self.head_type)
    input_ids, token_type_ids, mask = text_inputs(x)
    h = BertEmbeddings(c, self.dtype, name="embeddings")(input_ids, token_type_ids,
                                                          train=train)
    for i in range(c.num_hidden_layers):
      h = BertLayer(c, self.dtype, name=f"layer_{i}")(h, mask, train=train)
    aux = {"features": h, "masked_features": {"hidden_states": h, "attention_mask": mask}}
    if self.head_type == "qa":
      aux["pre_logits"] = h
      return self._span_head(name="head")(h), aux
    pooled = jnp.tanh(_dense(c, c.hidden_size, self.dtype, "pooler")(h[:, 0]))
    pre_logits = nn.Dropout(c.classifier_dropout_rate, deterministic=not train)(pooled)
    logits = _dense(c, self.num_classes, self.dtype, "head")(pre_logits)
    aux.update(pooled=pooled, pre_logits=pre_logits)
    return logits, aux

  def _span_head(self, **kwargs) -> SpanHead:
    return SpanHead(2, dtype=self.dtype, kernel_init=_init(self.config), **kwargs)

  def spg_attachments(self, kind: str) -> Dict[str, Attachment]:
    """`{"out": Attachment}`: HPO replicas on the head's input (`aux["pre_logits"]`), NAS
    replicas (`BertNASBlock`) on the sequence output with its mask, followed by the
    model's own pooler, dropout and classifier (sequence) or span head (QA)."""
    c = self.config
    if check_kind(kind) == "hpo":
      head = (self._span_head(parent=None) if self.head_type == "qa" else
              _dense(c, self.num_classes, self.dtype, None, parent=None))
      return {MAIN_HEAD: Attachment(head=head, head_path=("head",),
                                    feature_key="pre_logits")}
    block = functools.partial(BertNASBlock, c, self.dtype)
    if self.head_type == "qa":
      return {MAIN_HEAD: Attachment(head=self._span_head(parent=None), head_path=("head",),
                                    feature_key="masked_features", pre_head=hidden_states,
                                    block=block)}
    # The pooler and the classifier both belong to the NAS head: it reads the whole base
    # params (head_path ()), of which it uses `pooler` and `head`.
    head = PooledClassifier(c, self.num_classes, self.dtype, parent=None)
    return {MAIN_HEAD: Attachment(head=head, head_path=(), feature_key="masked_features",
                                  pre_head=cls_hidden_state, block=block)}


def bert(size: str = "base", *, head_type: str = "sequence", num_classes: int = 2,
         dtype: Dtype = jnp.float32, **config_fields) -> Bert:
  """A `Bert` of a named size (`SIZES`: tiny, mini, small, medium, base, large), any
  `BertConfig` field overriding it (e.g. vocab_size=28996 for bert-base-cased).

  Raises:
    ValueError: an unknown size, field or head type, or a bad field value (one line).
  """
  if size not in SIZES:
    raise ValueError(f"size={size!r}: must be one of {list(SIZES)}")
  allowed = [f.name for f in dataclasses.fields(BertConfig)]
  unknown = sorted(set(config_fields) - set(allowed))
  if unknown:
    raise ValueError(f"bert: unknown argument {unknown[0]!r}; allowed: size, head_type, "
                     f"num_classes, dtype, {', '.join(allowed)}")
  layers, hidden, heads, mlp = SIZES[size]
  fields = dict(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                intermediate_size=mlp)
  fields.update(config_fields)
  check_head_type(head_type)
  if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
    if head_type == "sequence":
      raise ValueError(f"num_classes={num_classes!r}: must be an integer >= 1 (1: "
                       "regression)")
    num_classes = 2  # unused by the QA head; the engine passes the dataset's value
  return Bert(BertConfig(**fields), head_type=head_type, num_classes=num_classes,
              dtype=jnp.dtype(dtype))
