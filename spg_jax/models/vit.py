"""Vision Transformer in torchvision's layout (ViT-B/16 at 224 and 1000 classes: 86,567,656).

16x16 patch embedding conv with bias, class token, learned position embeddings, pre-norm
encoder blocks (LayerNorm eps 1e-6), final LayerNorm, `head` on the class token.
"""
import functools
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from spg_jax.models import layers

Dtype = Any

_xavier = nn.initializers.xavier_uniform()
# torch's MultiheadAttention: xavier-uniform over the stacked [3D, D] qkv matrix (variance
# 2 / (D + 3D)); the output projection keeps torch.nn.Linear's default. (Flax hands these
# initialisers the kernels flattened to [D, D].)
_qkv_init = nn.initializers.variance_scaling(0.5, "fan_avg", "uniform")
_attention_out_init = layers.torch_linear_kernel_init


class EncoderBlock(nn.Module):
  """x + MHA(LN(x)), then x + MLP(LN(x)); MLP = Dense(mlp_dim), GELU, Dense(D).

  Attributes:
    zero_init_last: start the attention output projection and the MLP's last Dense at 0, so
      the block is the identity at init (SPG NAS replicas); both still get gradient at once
      because their inputs are non-zero.
  """
  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  zero_init_last: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """[B, N, D] -> [B, N, D]."""
    width = x.shape[-1]
    zeros = nn.initializers.zeros
    layer_norm = functools.partial(nn.LayerNorm, epsilon=1e-6, dtype=self.dtype)
    dropout = functools.partial(nn.Dropout, self.dropout_rate, deterministic=not train)
    y = layer_norm(name="ln_1")(x)
    y = nn.MultiHeadDotProductAttention(
        self.num_heads, dtype=self.dtype, kernel_init=_qkv_init,
        out_kernel_init=zeros if self.zero_init_last else _attention_out_init,
        dropout_rate=self.attention_dropout_rate, deterministic=not train,
        name="self_attention")(y, y)
    x = x + dropout()(y)
    y = layer_norm(name="ln_2")(x)
    # torchvision's MLPBlock: xavier weights, biases ~ N(0, 1e-6); exact GELU.
    tiny_normal = nn.initializers.normal(1e-6)
    y = nn.Dense(self.mlp_dim, dtype=self.dtype, kernel_init=_xavier, bias_init=tiny_normal,
                 name="mlp_0")(y)
    y = dropout()(nn.gelu(y, approximate=False))
    y = nn.Dense(width, dtype=self.dtype,
                 kernel_init=zeros if self.zero_init_last else _xavier,
                 bias_init=zeros if self.zero_init_last else tiny_normal, name="mlp_1")(y)
    return x + dropout()(y)


class VisionTransformer(layers.ClassifierHeadMixin, nn.Module):
  """ViT classifier. `__call__(x [B, S, S, 3], train) -> (logits [B, num_classes], aux)`.

  S must equal image_size (the position embeddings have 1 + (S / patch_size)^2 entries).
  aux: "features" = all tokens after the final LayerNorm [B, 1 + N, D], "pre_logits" = the
  class token [B, D] (the head's input).
  """
  hidden_dim: int
  num_layers: int
  num_heads: int
  mlp_dim: int
  patch_size: int = 16
  image_size: int = 224
  num_classes: int = 1000
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  head_dropout: float = 0.0  # dropout on the head's input in training (layers.head_input)
  head_kernel_init = staticmethod(nn.initializers.zeros)  # torchvision zero-inits the head

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool):
    if x.shape[1:3] != (self.image_size, self.image_size):
      raise ValueError(f"ViT built for {self.image_size}x{self.image_size} inputs, got "
                       f"{x.shape[1]}x{x.shape[2]}; set image_size")
    p = self.patch_size
    fan_in = 3 * p * p
    x = nn.Conv(self.hidden_dim, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype,
                kernel_init=nn.initializers.truncated_normal((1.0 / fan_in) ** 0.5),
                name="conv_proj")(x.astype(self.dtype))
    x = x.reshape(x.shape[0], -1, self.hidden_dim)
    cls = self.param("class_token", nn.initializers.zeros, (1, 1, self.hidden_dim))
    x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, self.hidden_dim)).astype(
        x.dtype), x], axis=1)
    pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1,) + x.shape[1:])
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x + pos.astype(x.dtype))
    for i in range(self.num_layers):
      x = EncoderBlock(self.num_heads, self.mlp_dim, self.dropout_rate,
                       self.attention_dropout_rate, dtype=self.dtype,
                       name=f"encoder_layer_{i}")(x, train=train)
    features = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="encoder_ln")(x)
    pre_logits = layers.class_token(features)
    logits = self.make_head(name="head")(self.head_input(pre_logits, train))
    return logits, {"pre_logits": pre_logits, "features": features}

  def spg_pre_head(self) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """Parameter-free map from aux["features"] (tokens) to the head's input."""
    return layers.class_token

  def spg_nas_block(self) -> Callable[[], nn.Module]:
    """Factory of one NAS replica block: an encoder block of this ViT, identity at init."""
    return functools.partial(EncoderBlock, self.num_heads, self.mlp_dim, zero_init_last=True,
                             dtype=self.dtype)


VIT_SIZES = {  # hidden_dim, num_layers, num_heads, mlp_dim
    "ti": (192, 12, 3, 768), "s": (384, 12, 6, 1536), "b": (768, 12, 12, 3072)}


def vit(size: str, patch_size: int = 16, **kwargs) -> VisionTransformer:
  """ViT-{Ti,S,B}/patch_size; kwargs: image_size, num_classes, dropout rates, dtype."""
  return VisionTransformer(*VIT_SIZES[size], patch_size=patch_size, **kwargs)
