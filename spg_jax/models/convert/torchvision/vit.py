"""torchvision VisionTransformer (`vit_b_16-*.pth`) -> `vit_b16`.

  class_token, encoder.pos_embedding         -> class_token, pos_embedding
  conv_proj                                  -> conv_proj
  encoder.layers.encoder_layer_{i}.ln_{1,2}  -> encoder_layer_{i}/ln_{1,2}
    .self_attention.in_proj_{weight, bias}   -> .../self_attention/{query, key, value}: torch
        packs q, k, v along the rows ([3D, D]); each block is transposed to [D, heads, dim]
    .self_attention.out_proj                 -> .../self_attention/out ([heads, dim, D])
    .mlp.{0, 3} (older files: mlp.linear_{1, 2})   -> .../mlp_{0, 1}
  encoder.ln                                 -> encoder_ln
  heads.head                                 -> head
The input size is read off the position embeddings (1 + (size / patch)^2 of them).
"""
import math
import re
from typing import Optional, Tuple

from spg_jax.models.convert import common

_LAYER = re.compile(r"encoder_layer_(\d+)")
_QKV = ("query", "key", "value")
PATCH_SIZE = 16


def _layer_source(collection, prefix: str, names, shape) -> Optional[common.Source]:
  unit, rest = names[0], names[1:]
  if unit in ("ln_1", "ln_2"):
    return common.layer_norm(collection, rest, shape, f"{prefix}.{unit}")
  if unit == "mlp_0":
    return common.dense(collection, rest, shape, f"{prefix}.mlp.0", (f"{prefix}.mlp.linear_1",))
  if unit == "mlp_1":
    return common.dense(collection, rest, shape, f"{prefix}.mlp.3", (f"{prefix}.mlp.linear_2",))
  if unit != "self_attention" or len(rest) != 2 or collection != "params":
    return None
  attention = f"{prefix}.self_attention"
  if rest[0] in _QKV:
    index = _QKV.index(rest[0])
    if rest[1] == "kernel" and len(shape) == 3:
      return common.packed_kernel(f"{attention}.in_proj_weight", shape, index, 3)
    if rest[1] == "bias" and len(shape) == 2:
      return common.packed_bias(f"{attention}.in_proj_bias", shape, index, 3)
  if rest[0] == "out":
    if rest[1] == "kernel" and len(shape) == 3:
      return common.heads_out_kernel(f"{attention}.out_proj.weight", shape)
    if rest[1] == "bias":
      return common.same(f"{attention}.out_proj.bias", shape)
  return None


def source(collection: str, names: Tuple[str, ...],
           shape: common.Shape) -> Optional[common.Source]:
  """The torch key of a leaf of `spg_jax.models.VisionTransformer`."""
  if collection != "params":
    return None
  unit, rest = names[0], names[1:]
  if names == ("class_token",):
    return common.same("class_token", shape)
  if names == ("pos_embedding",):
    return common.same("encoder.pos_embedding", shape)
  if unit == "conv_proj":
    return common.conv(collection, rest, shape, "conv_proj")
  if unit == "encoder_ln":
    return common.layer_norm(collection, rest, shape, "encoder.ln")
  if unit == "head":
    return common.dense(collection, rest, shape, "heads.head")
  layer = _LAYER.fullmatch(unit)
  if layer is not None and rest:
    return _layer_source(collection, f"encoder.layers.{unit}", rest, shape)
  return None


def model_kwargs(shapes: common.Shapes) -> dict:
  """num_classes from `heads.head.weight`; image_size from `encoder.pos_embedding`."""
  num_classes = common.require(shapes, "heads.head.weight", 2)[0]
  tokens = common.require(shapes, "encoder.pos_embedding", 3)[1]
  side = math.isqrt(max(tokens - 1, 0))
  if tokens < 2 or side * side != tokens - 1:
    raise ValueError(f"key 'encoder.pos_embedding': {tokens} positions in the file, expected "
                     "1 + a square number (the class token and a square grid of patches)")
  return {"num_classes": num_classes, "image_size": side * PATCH_SIZE}
