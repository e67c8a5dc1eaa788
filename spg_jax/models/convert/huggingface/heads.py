"""The task head of a Hugging Face checkpoint: the file's own, the `--head` option's, or the
one config.json's `architectures` names (shared by the BERT and wav2vec2 converters).

Every model here has a "sequence" head (`classifier.*`) and one other (BERT: "qa",
`qa_outputs.*`; wav2vec2: "ctc", `lm_head.*`); `head_keys` maps head names to their
weight prefixes, `head_architectures` config.json architecture names to head names.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from spg_jax.models.convert import common


def _other(head_keys: Mapping[str, str]) -> str:
  return next(h for h in head_keys if h != "sequence")


def file_head(shapes: common.Shapes, head_keys: Mapping[str, str]) -> Optional[str]:
  """The head whose weights the file holds (None: none), or a one-line ValueError if both."""
  heads = [h for h, key in head_keys.items()
           if f"{key}.weight" in shapes or f"{key}.bias" in shapes]
  if len(heads) > 1:
    other = _other(head_keys)
    raise ValueError(f"the weights file has both a sequence head ('{head_keys['sequence']}.*')"
                     f" and a {other.upper()} head ('{head_keys[other]}.*'); expected at most "
                     f"one")
  return heads[0] if heads else None


def resolve_head(shapes: common.Shapes, config: Mapping[str, Any], head: Optional[str],
                 head_keys: Mapping[str, str], head_architectures: Mapping[str, str]
                 ) -> tuple[str, Optional[str]]:
  """`(head_type, the file's head or None)`: the file's head, else `head`, else the one of
  config.json's `architectures`.

  Raises:
    ValueError (one line): `head` unknown or contradicting the file's head; no head at all.
  """
  if head is not None and head not in head_keys:
    raise ValueError(f"head={head!r}: must be one of {list(head_keys)}")
  in_file = file_head(shapes, head_keys)
  if in_file is not None and head is not None and head != in_file:
    raise ValueError(f"head={head!r}: the weights file has a {in_file!r} head "
                     f"('{head_keys[in_file]}.*'); convert it with head={in_file!r}, or remove "
                     "those keys to start a fresh head")
  architectures = config.get("architectures") or []
  from_config = next((head_architectures[a] for a in architectures
                      if a in head_architectures), None)
  head_type = in_file or head or from_config
  if head_type is None:
    other = _other(head_keys)
    raise ValueError(f"the weights file has no task head (no '{head_keys['sequence']}.*' or "
                     f"'{head_keys[other]}.*' keys; config.json architectures={architectures}"
                     f"); choose the head to initialise: head='sequence' (with num_classes) "
                     f"or head='{other}' (--head on the command line)")
  return head_type, in_file


def num_labels(config: Mapping[str, Any]) -> int:
  """Hugging Face's number of labels: len(id2label), else num_labels, else 2."""
  id2label = config.get("id2label")
  if isinstance(id2label, Mapping) and id2label:
    return len(id2label)
  return int(config.get("num_labels", 2))
