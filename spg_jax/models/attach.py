"""Where SPG's temporary modules attach to each model (arguments for `spg_jax.SPGModel`).

An attachment is a dict with:
  head: a new unbound copy of the model's head; the wrapper applies it with the base's
    parameters found at `head_path`.
  head_path: path of the head's parameters in the base's params, e.g. ("head",).
  feature_key: which aux entry the replicas read (h_0).
  pre_head: parameter-free function from the replicas' output to the head's input, or None
    when they already match.
  block: for NAS, a zero-argument factory of one replica block (identity at init, same shape
    in and out); None for HPO.

HPO replicas read the head's own input ("pre_logits"; per-pixel feature maps for FCN). NAS
replicas read the last feature map ("features") and add blocks of the model's own kind, which
is why they need `pre_head` (e.g. global average pooling) before the shared head.
"""
import functools
from typing import Any, Dict

import flax.linen as nn

from spg_jax.models import fcn, resnet

KINDS = ("hpo", "nas")


def spg_attachments(model: nn.Module, kind: str = "hpo") -> Dict[str, Dict[str, Any]]:
  """All attachments of `model`: {"out": ...} for classifiers; FCN adds "aux" (its aux head)."""
  if kind not in KINDS:
    raise ValueError(f"Unknown SPG replica kind {kind!r}; known: {', '.join(KINDS)}")
  nas = kind == "nas"
  if isinstance(model, fcn.FCN):
    # Per-pixel heads read their maps directly; NAS blocks copy the stage they extend
    # (layer4: 512 planes at dilation 4, layer3: 256 planes at dilation 2).
    def dilated_block(planes, dilation):
      return functools.partial(resnet.Bottleneck, planes, dilation=dilation,
                               zero_init_last=True, dtype=model.dtype) if nas else None
    attachments = {"out": dict(head=model.spg_head(), head_path=("head",),
                               feature_key="features", pre_head=None,
                               block=dilated_block(512, 4))}
    if model.aux_loss:
      attachments["aux"] = dict(head=model.spg_aux_head(), head_path=("aux_head",),
                                feature_key="layer3", pre_head=None,
                                block=dilated_block(256, 2))
    return attachments
  if nas:
    out = dict(head=model.spg_head(), head_path=("head",), feature_key="features",
               pre_head=model.spg_pre_head(), block=model.spg_nas_block())
  else:
    out = dict(head=model.spg_head(), head_path=("head",), feature_key="pre_logits",
               pre_head=None, block=None)
  return {"out": out}


def spg_attachment(model: nn.Module, kind: str = "hpo") -> Dict[str, Any]:
  """The attachment of the model's main head (for FCN: `head` on the layer4 map)."""
  return spg_attachments(model, kind)["out"]
