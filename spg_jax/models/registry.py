"""Model registry: `get(name, **kwargs)` builds a model by name; `names()` lists them.

torchvision's spellings are accepted as aliases (`vit_b_16` is `vit_b16`; `resnet50`,
`mobilenet_v2`, `efficientnet_v2_m` and `fcn_resnet50` are spelled alike in both);
`canonical_name(name)` resolves one, `aliases()` lists them; `names()` lists canonical names.
"""
import functools
import types
from typing import Callable, Mapping, Tuple

import flax.linen as nn

from spg_jax.models import (audio_cnn, bert, efficientnet, fcn, fcn_small, mobilenet, resnet,
                            small, vit, wav2vec2)

# Read-only: building a model never changes this table.
_BUILDERS: types.MappingProxyType = types.MappingProxyType({
    "resnet18": functools.partial(resnet.resnet, 18),
    "resnet34": functools.partial(resnet.resnet, 34),
    "resnet50": functools.partial(resnet.resnet, 50),
    "resnet101": functools.partial(resnet.resnet, 101),
    "mobilenet_v2": mobilenet.MobileNetV2,
    "efficientnet_v2_m": efficientnet.efficientnet_v2_m,
    "vit_ti16": functools.partial(vit.vit, "ti", 16),
    "vit_s16": functools.partial(vit.vit, "s", 16),
    "vit_b16": functools.partial(vit.vit, "b", 16),
    "cnn1d_mnist1d": small.CNN1D,
    "cnn1d_mnist1d_wide": small.CNN1DWide,
    "cnn_digits": small.DigitsCNN,
    "fcn_resnet50": fcn.FCN,
    "fcn_small": fcn_small.FCNSmall,
    # BERT: `bert(size=..., head_type=..., **BertConfig fields)`; the presets fix the size.
    "bert": bert.bert,
    "bert_tiny": functools.partial(bert.bert, "tiny"),
    "bert_base": functools.partial(bert.bert, "base"),
    # wav2vec2: `wav2vec2(size=..., head_type="sequence" | "ctc", **Wav2Vec2Config fields)`.
    "wav2vec2": wav2vec2.wav2vec2,
    "wav2vec2_tiny": functools.partial(wav2vec2.wav2vec2, "tiny"),
    "wav2vec2_base": functools.partial(wav2vec2.wav2vec2, "base"),
    "wav2vec2_large_lv60": functools.partial(wav2vec2.wav2vec2, "large"),
    # A small log-mel CNN keyword spotter trained from scratch (the spoken-digits demo).
    "audio_cnn": audio_cnn.AudioCNN,
})

# torchvision's model-builder names that differ from ours: alias -> canonical name.
_ALIASES: types.MappingProxyType = types.MappingProxyType({
    "vit_b_16": "vit_b16",
})


def names() -> Tuple[str, ...]:
  """The registered (canonical) model names, sorted."""
  return tuple(sorted(_BUILDERS))


def aliases() -> Mapping[str, str]:
  """Other accepted spellings (torchvision's): alias -> canonical name."""
  return dict(_ALIASES)


def canonical_name(name: str) -> str:
  """`name` itself if registered, the canonical name of an alias, else a one-line ValueError
  listing the known names."""
  if name in _BUILDERS:
    return name
  if name in _ALIASES:
    return _ALIASES[name]
  aliases_text = ", ".join(f"{a} = {c}" for a, c in sorted(_ALIASES.items()))
  raise ValueError(f"Unknown model {name!r}; known models: {', '.join(names())} (aliases: "
                   f"{aliases_text})")


def get(name: str, **kwargs) -> nn.Module:
  """Builds model `name` (or an alias) with constructor kwargs (num_classes, dtype, stem,
  image_size, bn_running_var, spg_attach, ...; BERT: head_type and `BertConfig` fields).

  Raises:
    ValueError: unknown name (the message lists the known ones), or a bad setting the model
      checks when it is built.
  """
  builder: Callable[..., nn.Module] = _BUILDERS[canonical_name(name)]
  return builder(**kwargs)
