"""Model registry: `get(name, **kwargs)` builds a model by name; `names()` lists them."""
import functools
import types
from typing import Callable, Tuple

import flax.linen as nn

from spg_jax.models import fcn, fcn_small, mobilenet, resnet, small, vit

# Read-only: building a model never changes this table.
_BUILDERS: types.MappingProxyType = types.MappingProxyType({
    "resnet18": functools.partial(resnet.resnet, 18),
    "resnet34": functools.partial(resnet.resnet, 34),
    "resnet50": functools.partial(resnet.resnet, 50),
    "resnet101": functools.partial(resnet.resnet, 101),
    "mobilenet_v2": mobilenet.MobileNetV2,
    "vit_ti16": functools.partial(vit.vit, "ti", 16),
    "vit_s16": functools.partial(vit.vit, "s", 16),
    "vit_b16": functools.partial(vit.vit, "b", 16),
    "cnn1d_mnist1d": small.CNN1D,
    "cnn_digits": small.DigitsCNN,
    "fcn_resnet50": fcn.FCN,
    "fcn_small": fcn_small.FCNSmall,
})


def names() -> Tuple[str, ...]:
  """The registered model names, sorted."""
  return tuple(sorted(_BUILDERS))


def get(name: str, **kwargs) -> nn.Module:
  """Builds model `name` with constructor kwargs (num_classes, dtype, stem, image_size, ...).

  Raises:
    ValueError: unknown name (the message lists the known ones).
  """
  builder: Callable[..., nn.Module] = _BUILDERS.get(name)
  if builder is None:
    raise ValueError(f"Unknown model {name!r}; known models: {', '.join(names())}")
  return builder(**kwargs)
