"""Pretrained checkpoints of other libraries -> spg_jax model variables.

  variables, info = convert(source="torchvision", model="resnet50",
                            weights="resnet50.tv_in1k.safetensors")
  model = info.build()             # spg_jax.models.get(info.model, **info.model_kwargs)
  logits, aux = model.apply(variables, images_nhwc, train=False)

`variables` is `{"params": ..., "batch_stats": ...}` (nested dicts of float32 numpy arrays;
models without BatchNorm have no "batch_stats"). Every tensor of the file is used exactly once
(BatchNorm's `num_batches_tracked` is read and dropped) and every variable of the model is
filled exactly once with the expected shape; anything else is a one-line ValueError naming
the key and both shapes, raised before any tensor is read. Constructor arguments that the
file determines (num_classes from the head, ViT's image size, FCN's auxiliary head) are read
off it and returned in `info.model_kwargs`.

Files: `.safetensors` (read with numpy; no torch needed), or torch `.pth`/`.pt`/`.bin` through
`torch.load(weights_only=True)` when torch is installed (`common.TO_SAFETENSORS` is the
one-line conversion for machines without it). `SOURCES` lists the libraries, `MODELS[source]`
their model names; one module per source under this package (`torchvision/`, one mapping
module per model family).
"""
import dataclasses
import functools
import types
from typing import Any, Dict, Mapping, Tuple

import numpy as np

from spg_jax.models.convert import common
from spg_jax.models.convert import torchvision as torchvision_source

# source -> its module (ARCHITECTURES: name -> common.Architecture; ALIASES: other names).
_SOURCES = types.MappingProxyType({"torchvision": torchvision_source})
SOURCES: Tuple[str, ...] = tuple(_SOURCES)
MODELS = types.MappingProxyType(
    {name: tuple(module.ARCHITECTURES) for name, module in _SOURCES.items()})


@dataclasses.dataclass(frozen=True)
class ConversionInfo:
  """What a conversion read and built.

  Attributes:
    source, source_model: the library and its model name (e.g. "torchvision", "vit_b_16").
    model: the `spg_jax.models.get` name; model_kwargs: its constructor kwargs (num_classes
      and whatever else the file determines).
    num_tensors: tensors in the file; num_ignored: of these, read and dropped on purpose
      (BatchNorm counters); num_variables: Flax leaves filled; num_parameters: numbers in
      `params` (not counting `batch_stats`).
  """
  source: str
  source_model: str
  model: str
  model_kwargs: Mapping[str, Any]
  num_tensors: int
  num_ignored: int
  num_variables: int
  num_parameters: int

  @property
  def num_classes(self) -> int:
    return int(self.model_kwargs["num_classes"])

  def build(self):
    """The `spg_jax.models` module these variables belong to."""
    from spg_jax import models  # pylint: disable=g-import-not-at-top  (models imports flax)
    return models.get(self.model, **self.model_kwargs)

  def summary(self) -> str:
    """One line: what was read and what it builds."""
    kwargs = ", ".join(f"{k}={v!r}" for k, v in sorted(self.model_kwargs.items()))
    return (f"{self.source} {self.source_model} -> spg_jax.models.get({self.model!r}, "
            f"{kwargs}): num_classes={self.num_classes}, {self.num_tensors} tensors "
            f"({self.num_ignored} dropped), {self.num_variables} variables, "
            f"{self.num_parameters:,} parameters")


def architecture(source: str, model: str) -> Tuple[str, common.Architecture]:
  """`(source's model name, Architecture)`; ValueError naming the allowed values."""
  if source not in _SOURCES:
    raise ValueError(f"source={source!r}: must be one of {', '.join(SOURCES)}")
  module = _SOURCES[source]
  name = module.ALIASES.get(model, model)
  if name not in module.ARCHITECTURES:
    raise ValueError(f"model={model!r}: not a {source} model this converter knows; allowed: "
                     f"{', '.join(MODELS[source])}")
  return name, module.ARCHITECTURES[name]


@functools.lru_cache(maxsize=32)
def _leaf_shapes(model_name: str, kwargs_items: tuple, input_shape: tuple) -> Dict:
  """`{(collection, *names): shape}` of a model's variables (traced, never run)."""
  import jax  # pylint: disable=g-import-not-at-top  (only this step needs jax)
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from spg_jax import models  # pylint: disable=g-import-not-at-top
  model = models.get(model_name, **dict(kwargs_items))
  abstract = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                            jax.ShapeDtypeStruct(input_shape, jnp.float32))
  return {tuple(str(k.key) for k in path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]}


def plan(source: str, model: str, shapes: common.Shapes
         ) -> Tuple[common.Plan, Dict, ConversionInfo]:
  """Checks a file's `{key: (shape, dtype)}` against the model, without any tensor.

  Returns (plan, leaf shapes, info); raises the one-line ValueErrors of `convert`.
  """
  name, arch = architecture(source, model)
  shapes = {str(k): (tuple(int(d) for d in s), str(dt)) for k, (s, dt) in shapes.items()}
  kwargs = arch.model_kwargs(shapes)
  leaf_shapes = _leaf_shapes(arch.model, tuple(sorted(kwargs.items())),
                             tuple(arch.input_shape(kwargs)))
  what = f"{arch.model}({', '.join(f'{k}={v!r}' for k, v in sorted(kwargs.items()))})"
  the_plan = common.make_plan(leaf_shapes, arch.source, shapes, what=what,
                              ignorable=arch.ignorable)
  num_parameters = sum(int(np.prod(s)) for p, s in leaf_shapes.items() if p[0] == "params")
  info = ConversionInfo(source=source, source_model=name, model=arch.model,
                        model_kwargs=types.MappingProxyType(dict(kwargs)),
                        num_tensors=len(shapes), num_ignored=len(the_plan.ignored),
                        num_variables=len(leaf_shapes), num_parameters=num_parameters)
  return the_plan, leaf_shapes, info


def check_shapes(source: str, model: str, shapes: common.Shapes) -> ConversionInfo:
  """What `convert` would build from a file with these `{key: (shape, dtype)}`, reading no
  tensor (e.g. a full-size key/shape manifest). Raises its one-line ValueErrors."""
  return plan(source, model, shapes)[2]


def convert_state_dict(source: str, model: str, state_dict: Mapping[str, Any]
                       ) -> Tuple[Dict[str, Any], ConversionInfo]:
  """`convert` for tensors already in memory (`{key: numpy array}`)."""
  the_plan, leaf_shapes, info = plan(source, model, common.shapes_of(state_dict))
  return common.fill(the_plan, state_dict, leaf_shapes), info


def convert(source: str, model: str, weights: str) -> Tuple[Dict[str, Any], ConversionInfo]:
  """Reads `weights` (a file of `source`'s `model`) into spg_jax variables.

  Args:
    source: one of `SOURCES` ("torchvision").
    model: one of `MODELS[source]` (torchvision spellings; spg_jax's names are accepted too).
    weights: a `.safetensors` file (its shapes are checked before any tensor is read), or
      `.pth`/`.pt`/`.bin` when torch is installed.

  Returns:
    (variables, info): `{"params", "batch_stats"}` float32 numpy trees for
    `info.build().apply(variables, x, train=False)`.

  Raises:
    ValueError: unknown source or model, unreadable file, or any key/shape mismatch (one
      line naming the key and both shapes); found before any tensor is converted.
  """
  architecture(source, model)  # names first: cheaper than reading the file
  if common.is_torch_file(weights):  # torch.load reads everything anyway: once
    return convert_state_dict(source, model, common.read_state_dict(weights))
  the_plan, leaf_shapes, info = plan(source, model, common.read_shapes(weights))
  return common.fill(the_plan, common.read_state_dict(weights), leaf_shapes), info
