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

Hugging Face checkpoints are model folders (`config.json` + `model.safetensors` or
`pytorch_model.bin`); the architecture comes from `config.json`:

  variables, info = convert(source="huggingface", model="bert", weights="bert-base-cased/",
                            head="sequence", num_classes=2, seed=0)

`head`/`num_classes` choose the task head of a checkpoint that has none (a pretrained
`bert-base-*`); that head is then initialised fresh from `seed` and listed in `info.fresh`
(and in `info.summary()`). Tensors dropped on purpose (pretraining heads `cls.*`, buffers)
are counted in `info.num_ignored` and described in `info.ignored`.

Files: `.safetensors` (read with numpy; no torch needed), or torch `.pth`/`.pt`/`.bin` through
`torch.load(weights_only=True)` when torch is installed (`common.TO_SAFETENSORS` is the
one-line conversion for machines without it). `SOURCES` lists the libraries, `MODELS[source]`
their model names; one module per source under this package (`torchvision/`,
`huggingface/`, one mapping module per model family).
"""
import dataclasses
import functools
import types
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from spg_jax.models.convert import common
from spg_jax.models.convert import huggingface as huggingface_source
from spg_jax.models.convert import torchvision as torchvision_source

# source -> its module (ARCHITECTURES: name -> common.Architecture; ALIASES: other names).
_SOURCES = types.MappingProxyType({"torchvision": torchvision_source,
                                   "huggingface": huggingface_source})
# The option of every architecture with optional leaves: the seed of their fresh values.
SEED = "seed"
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
      (BatchNorm counters, pretraining heads); num_variables: Flax leaves filled (from the
      file or fresh); num_parameters: numbers in `params` (not counting `batch_stats`).
    ignored: `(what, count)` of the dropped tensors, when the source describes them.
    fresh: the leaves (`params/head/kernel`, ...) the file lacked, initialised fresh from
      `seed` (None when nothing is fresh).
  """
  source: str
  source_model: str
  model: str
  model_kwargs: Mapping[str, Any]
  num_tensors: int
  num_ignored: int
  num_variables: int
  num_parameters: int
  ignored: Tuple[Tuple[str, int], ...] = ()
  fresh: Tuple[str, ...] = ()
  seed: Optional[int] = None

  @property
  def num_classes(self) -> Optional[int]:
    """The head's classes (None for heads without, e.g. extractive QA)."""
    value = self.model_kwargs.get("num_classes")
    return None if value is None else int(value)

  def build(self):
    """The `spg_jax.models` module these variables belong to."""
    from spg_jax import models  # pylint: disable=g-import-not-at-top  (models imports flax)
    return models.get(self.model, **self.model_kwargs)

  def summary(self) -> str:
    """One line: what was read and what it builds."""
    kwargs = ", ".join(f"{k}={v!r}" for k, v in sorted(self.model_kwargs.items()))
    classes = "" if self.num_classes is None else f"num_classes={self.num_classes}, "
    dropped = f"{self.num_ignored} dropped"
    if self.ignored:
      dropped += ": " + ", ".join(f"{what} {count}" for what, count in self.ignored)
    line = (f"{self.source} {self.source_model} -> spg_jax.models.get({self.model!r}, "
            f"{kwargs}): {classes}{self.num_tensors} tensors ({dropped}), "
            f"{self.num_variables} variables, {self.num_parameters:,} parameters")
    if self.fresh:
      line += (f"; not in the file, initialised fresh (seed {self.seed}): "
               f"{', '.join(self.fresh)}")
    return line


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


def _input_spec(arch: common.Architecture, kwargs: Mapping[str, Any]) -> tuple:
  """The dummy input as a hashable spec: a shape, or `((name, shape, dtype), ...)`."""
  spec = arch.input_shape(kwargs)
  if isinstance(spec, Mapping):
    return tuple((str(n), tuple(int(d) for d in s), str(dt))
                 for n, (s, dt) in sorted(spec.items()))
  return ("array", tuple(int(d) for d in spec), "float32")


def _dummy_input(spec: tuple):
  """ShapeDtypeStructs of `_input_spec`'s spec: one array, or a dict of them."""
  import jax  # pylint: disable=g-import-not-at-top  (only this step needs jax)
  if spec and spec[0] == "array":
    return jax.ShapeDtypeStruct(spec[1], spec[2])
  return {name: jax.ShapeDtypeStruct(shape, dtype) for name, shape, dtype in spec}


def _build(model_name: str, kwargs_items: tuple):
  from spg_jax import models  # pylint: disable=g-import-not-at-top  (models imports flax)
  return models.get(model_name, **dict(kwargs_items))


@functools.lru_cache(maxsize=32)
def _leaf_shapes(model_name: str, kwargs_items: tuple, input_spec: tuple) -> Dict:
  """`{(collection, *names): shape}` of a model's variables (traced, never run)."""
  import jax  # pylint: disable=g-import-not-at-top  (only this step needs jax)
  model = _build(model_name, kwargs_items)
  abstract = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                            _dummy_input(input_spec))
  return {tuple(str(k.key) for k in path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]}


def _fresh_values(model_name: str, kwargs_items: tuple, input_spec: tuple,
                  paths: Tuple[common.LeafPath, ...], seed: int) -> Dict:
  """`{path: float32 numpy}`: the model's own initialisation of these leaves from `seed`
  (only they are computed: the rest of `init` is dead code to XLA)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  model = _build(model_name, kwargs_items)
  dummy = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), _dummy_input(input_spec))

  def init(key):
    variables = model.init(key, dummy, train=False)
    out = []
    for path in paths:
      node = variables
      for name in path:
        node = node[name]
      out.append(node)
    return out

  values = jax.jit(init)(jax.random.key(seed))
  return {path: np.asarray(v, dtype=np.float32) for path, v in zip(paths, values)}


def _check_options(source: str, name: str, arch: common.Architecture,
                   options: Mapping[str, Any]) -> None:
  allowed = tuple(arch.options)
  if arch.optional is not common.no_optional_leaves:
    allowed += (SEED,)
  for key in options:
    if key not in allowed:
      raise ValueError(f"{key}={options[key]!r}: not an option of the {source} {name} "
                       f"converter; allowed: {', '.join(allowed) or 'none'}")
  seed = options.get(SEED, 0)
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed={seed!r}: must be an integer >= 0")


def plan(source: str, model: str, shapes: common.Shapes,
         config: Optional[Mapping[str, Any]] = None, **options
         ) -> Tuple[common.Plan, Dict, ConversionInfo]:
  """Checks a file's `{key: (shape, dtype)}` against the model, without any tensor.

  `config`: the parsed config file of sources with one (Hugging Face's config.json);
  `options`: the architecture's options (Hugging Face: head, num_classes, seed).
  Returns (plan, leaf shapes, info); raises the one-line ValueErrors of `convert`.
  """
  name, arch = architecture(source, model)
  _check_options(source, name, arch, options)
  shapes = {str(k): (tuple(int(d) for d in s), str(dt)) for k, (s, dt) in shapes.items()}
  context = {k: v for k, v in options.items() if k in arch.options}
  if arch.config_file is not None:
    if not isinstance(config, Mapping):
      raise ValueError(f"config: the {source} {name} converter needs the contents of the "
                       f"model's {arch.config_file} (a dict), got {type(config).__name__}")
    context["config"] = config
  elif config is not None:
    raise ValueError(f"config: the {source} {name} converter reads no config file")
  kwargs = arch.model_kwargs(shapes, **context)
  kwargs_items = tuple(sorted(kwargs.items()))
  input_spec = _input_spec(arch, kwargs)
  leaf_shapes = _leaf_shapes(arch.model, kwargs_items, input_spec)
  what = f"{arch.model}({', '.join(f'{k}={v!r}' for k, v in kwargs_items)})"
  source_of = arch.source if arch.source_for is None else arch.source_for(shapes, kwargs)
  the_plan = common.make_plan(leaf_shapes, source_of, shapes, what=what,
                              ignorable=arch.ignorable, optional=arch.optional)
  num_parameters = sum(int(np.prod(s)) for p, s in leaf_shapes.items() if p[0] == "params")
  ignored = ()
  if arch.ignored_kind is not None:
    kinds = [arch.ignored_kind(key) for key in the_plan.ignored]
    ignored = tuple((kind, kinds.count(kind)) for kind in dict.fromkeys(kinds))
  info = ConversionInfo(source=source, source_model=name, model=arch.model,
                        model_kwargs=types.MappingProxyType(dict(kwargs)),
                        num_tensors=len(shapes), num_ignored=len(the_plan.ignored),
                        num_variables=len(leaf_shapes), num_parameters=num_parameters,
                        ignored=ignored,
                        fresh=tuple(common.leaf_name(p) for p in the_plan.fresh),
                        seed=int(options.get(SEED, 0)) if the_plan.fresh else None)
  return the_plan, leaf_shapes, info


def check_shapes(source: str, model: str, shapes: common.Shapes,
                 config: Optional[Mapping[str, Any]] = None, **options) -> ConversionInfo:
  """What `convert` would build from a file with these `{key: (shape, dtype)}`, reading no
  tensor (e.g. a full-size key/shape manifest). Raises its one-line ValueErrors."""
  return plan(source, model, shapes, config, **options)[2]


def _variables(source: str, model: str, the_plan: common.Plan, leaf_shapes: Dict,
               info: ConversionInfo, tensors: Mapping[str, Any]) -> Dict[str, Any]:
  """The plan's leaves from `tensors`, plus its fresh leaves from the model's own init."""
  variables = common.fill(the_plan, tensors, leaf_shapes)
  if the_plan.fresh:
    arch = architecture(source, model)[1]
    kwargs_items = tuple(sorted(info.model_kwargs.items()))
    values = _fresh_values(arch.model, kwargs_items, _input_spec(arch, info.model_kwargs),
                           the_plan.fresh, info.seed)
    for path, value in values.items():
      node = variables
      for name in path[:-1]:
        node = node.setdefault(name, {})
      node[path[-1]] = value
  return variables


def convert_state_dict(source: str, model: str, state_dict: Mapping[str, Any],
                       config: Optional[Mapping[str, Any]] = None, **options
                       ) -> Tuple[Dict[str, Any], ConversionInfo]:
  """`convert` for tensors already in memory (`{key: numpy array}`; Hugging Face: with the
  parsed `config` of config.json)."""
  the_plan, leaf_shapes, info = plan(source, model, common.shapes_of(state_dict), config,
                                     **options)
  return _variables(source, model, the_plan, leaf_shapes, info, state_dict), info


def convert(source: str, model: str, weights: str, **options
            ) -> Tuple[Dict[str, Any], ConversionInfo]:
  """Reads `weights` (a file or model folder of `source`'s `model`) into spg_jax variables.

  Args:
    source: one of `SOURCES` ("torchvision", "huggingface").
    model: one of `MODELS[source]` (torchvision spellings; spg_jax's names are accepted too).
    weights: a `.safetensors` file (its shapes are checked before any tensor is read), or
      `.pth`/`.pt`/`.bin` when torch is installed; for Hugging Face a model folder
      (config.json + model.safetensors or pytorch_model.bin) or a weights file in one.
    **options: the architecture's options: Hugging Face BERT's `head` ("sequence" or "qa")
      and `num_classes` for a checkpoint without a task head, and `seed` (default 0) of
      the leaves the file lacks.

  Returns:
    (variables, info): `{"params", "batch_stats"}` float32 numpy trees for
    `info.build().apply(variables, x, train=False)`.

  Raises:
    ValueError: unknown source, model or option, unreadable file, or any key/shape
      mismatch (one line naming the key and both shapes); found before any tensor is
      converted.
  """
  name, arch = architecture(source, model)  # names first: cheaper than reading the file
  _check_options(source, name, arch, options)
  config = None
  if arch.config_file is not None:
    config, weights = common.read_folder(weights, arch.config_file)
  if common.is_torch_file(weights):  # torch.load reads everything anyway: once
    return convert_state_dict(source, model, common.read_state_dict(weights), config,
                              **options)
  the_plan, leaf_shapes, info = plan(source, model, common.read_shapes(weights), config,
                                     **options)
  return _variables(source, model, the_plan, leaf_shapes, info,
                    common.read_state_dict(weights)), info
