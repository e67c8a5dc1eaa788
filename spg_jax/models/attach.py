"""Where SPG's temporary modules attach to a model: `spg_attachments(model, kind)`.

Every model family says so itself with a method `spg_attachments(kind) -> {head name:
spg_jax.spg_model.Attachment}` (the main head is named "out"): classifiers inherit it from
`ClassifierHeadMixin`, FCN-style segmenters from `FCNHeadsMixin` (which adds "aux" for the
auxiliary head). The functions here call that method and check what it returns, so a new
model needs no change in this file.

HPO replicas read the head's own input ("pre_logits"; per-pixel feature maps for FCN). NAS
replicas read the last feature map ("features") and add blocks of the model's own kind, which
is why classifiers need `pre_head` (e.g. global average pooling) before the shared head.
"""
from typing import Dict

import flax.linen as nn

from spg_jax.models.layers import KINDS, check_kind
from spg_jax.spg_model import MAIN_HEAD, Attachment

__all__ = ["KINDS", "spg_attachment", "spg_attachments"]


def spg_attachments(model: nn.Module, kind: str = "hpo") -> Dict[str, Attachment]:
  """`model.spg_attachments(kind)`: head name -> Attachment, the main head named "out".

  Raises:
    ValueError: `kind` not in KINDS, a model without the method, or one whose method does
      not return a dict of Attachments with a main head.
  """
  check_kind(kind)
  method = getattr(model, "spg_attachments", None)
  if not callable(method):
    raise ValueError(f"model={type(model).__name__}: must define spg_attachments(kind) (or "
                     f"inherit spg_jax.models.ClassifierHeadMixin)")
  attachments = method(kind)
  if (not isinstance(attachments, dict) or MAIN_HEAD not in attachments
      or not all(isinstance(a, Attachment) for a in attachments.values())):
    raise ValueError(f"{type(model).__name__}.spg_attachments({kind!r}): must return a dict "
                     f"of spg_jax.spg_model.Attachment with a main head {MAIN_HEAD!r}")
  return attachments


def spg_attachment(model: nn.Module, kind: str = "hpo") -> Attachment:
  """The Attachment of the model's main head ("out"; for FCN: `head` on the layer4 map)."""
  return spg_attachments(model, kind)[MAIN_HEAD]
