"""What every converter shares: reading a state dict, where each Flax leaf comes from, checks.

A converter says, for every leaf of the Flax model's variables (`params` and `batch_stats`),
which key of the source state dict fills it and how (`Source`: the key, the tensor's expected
shape in the file, the numpy function from that tensor to the leaf). `make_plan` matches this
against the file's keys and shapes before any tensor is read and refuses, with a one-line
ValueError naming the key and the shapes, anything but an exact match: a missing key, an
unexpected key, a shape that differs, a leaf that no key fills, a key read by more leaves than
it packs. `fill` then builds the variables from the tensors.

Some leaves may be optional (`Architecture.optional`: a Hugging Face task head, which a
pretrained-only checkpoint lacks): a group of them that the file lacks entirely is listed in
`Plan.fresh` and initialised fresh by the caller; a group the file holds in part is an error.
Hugging Face model folders (`config.json` + `model.safetensors` or `pytorch_model.bin`) are
read with `read_folder`.

Numpy and safetensors only (no jax, no torch at import), so the hand-run golden scripts can
load this file on its own. torch is imported only to read a `.pth`/`.pt`/`.bin` file, with
`torch.load(..., weights_only=True)`; nothing else unpickles.
"""
import dataclasses
import json
import os
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np

Shape = Tuple[int, ...]
# A file's tensors without their values: key -> (shape, dtype name).
Shapes = Mapping[str, Tuple[Shape, str]]
# A Flax leaf: its collection ("params", "batch_stats") followed by the module names.
LeafPath = Tuple[str, ...]

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")

TO_SAFETENSORS = (
    "python -c \"import sys, torch, safetensors.torch as st; st.save_file({k: v.contiguous() "
    "for k, v in torch.load(sys.argv[1], map_location='cpu', weights_only=True).items()}, "
    "sys.argv[2])\" FILE.pth FILE.safetensors")


# ---------------------------------------------------------------------------------------------
# Reading files.

def _suffix(path: str) -> str:
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in SAFETENSORS_SUFFIXES + TORCH_SUFFIXES:
    raise ValueError(f"weights={path!r}: unsupported file type {suffix or '(none)'!r}; "
                     f"allowed: {', '.join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)}")
  return suffix


def is_torch_file(path: str) -> bool:
  """Whether `path` is read with torch (`.pth`/`.pt`/`.bin`); ValueError for other suffixes
  than these and `.safetensors`."""
  return _suffix(path) in TORCH_SUFFIXES


def _check_exists(path: str) -> None:
  if not os.path.isfile(path):
    raise ValueError(f"weights={path!r}: no such file")


def _torch_load(path: str) -> Dict[str, np.ndarray]:
  """A torch state dict as numpy arrays, through torch's restricted (weights-only) unpickler."""
  try:
    import torch  # pylint: disable=g-import-not-at-top  (optional: only for .pth files)
  except ImportError:
    raise ValueError(f"weights={path!r}: reading a torch file needs torch, which is not "
                     "installed; convert it to safetensors once on a machine with torch and "
                     f"safetensors: {TO_SAFETENSORS}") from None
  try:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except  (torch raises many kinds)
    first = (str(e).strip().splitlines() or [""])[0][:200]
    raise ValueError(f"weights={path!r}: torch.load(weights_only=True) failed: "
                     f"{type(e).__name__}: {first}") from None
  if not isinstance(loaded, Mapping):
    raise ValueError(f"weights={path!r}: holds a {type(loaded).__name__}, expected a state "
                     "dict (a mapping of names to tensors)")
  out = {}
  for key, value in loaded.items():
    if not isinstance(value, torch.Tensor):
      raise ValueError(f"weights={path!r}: key {key!r} holds a {type(value).__name__}, "
                       "expected a tensor")
    value = value.detach().cpu()
    if value.dtype == torch.bfloat16:  # numpy has no bfloat16
      value = value.float()
    out[str(key)] = value.numpy()
  return out


def read_shapes(path: str) -> Dict[str, Tuple[Shape, str]]:
  """`{key: (shape, dtype name)}` of a weights file; safetensors without reading the tensors.

  Raises:
    ValueError: missing file, unsupported suffix, a torch file without torch, a bad file.
  """
  _check_exists(path)
  if _suffix(path) in TORCH_SUFFIXES:
    return shapes_of(_torch_load(path))
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  try:
    with safe_open(path, framework="np") as f:
      out = {}
      for key in f.keys():
        tensor = f.get_slice(key)
        out[key] = (tuple(int(d) for d in tensor.get_shape()),
                    _safetensors_dtype(tensor.get_dtype()))
      return out
  except Exception as e:  # pylint: disable=broad-except  (safetensors raises its own kinds)
    first = (str(e).strip().splitlines() or [""])[0][:200]
    raise ValueError(f"weights={path!r}: not a readable safetensors file ({first})") from None


def _safetensors_dtype(name: str) -> str:
  """safetensors' dtype names ("F32", "BF16", "I64", ...) as numpy-style names."""
  table = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64",
           "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64", "U8": "uint8",
           "BOOL": "bool"}
  return table.get(name, name.lower())


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
  """`{key: numpy array}` of a `.safetensors` file (numpy only) or a torch `.pth`/`.pt`/`.bin`
  file (torch, weights_only=True). bfloat16 tensors are returned as float32.

  Raises:
    ValueError: as `read_shapes`.
  """
  _check_exists(path)
  if _suffix(path) in TORCH_SUFFIXES:
    return _torch_load(path)
  from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
  try:
    return dict(safetensors_numpy.load_file(path))
  except Exception as e:  # pylint: disable=broad-except
    first = (str(e).strip().splitlines() or [""])[0][:200]
    raise ValueError(f"weights={path!r}: not a readable safetensors file ({first})") from None


# A Hugging Face model folder's weights, in the order they are looked for.
FOLDER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def read_folder(path: str, config_name: str = "config.json") -> Tuple[Dict[str, Any], str]:
  """`(config, weights file)` of a Hugging Face model folder: the parsed `config_name` and
  `model.safetensors` (else `pytorch_model.bin`). `path` may also be a weights file inside
  such a folder (its `config_name` is read from beside it).

  Raises:
    ValueError (one line): no such folder or file, no config or an unreadable one, no
      weights file, a sharded checkpoint (not supported).
  """
  if os.path.isdir(path):
    folder, weights = path, None
  elif os.path.isfile(path):
    folder, weights = os.path.dirname(os.path.abspath(path)), path
  else:
    raise ValueError(f"weights={path!r}: no such folder or file (expected a Hugging Face "
                     f"model folder with {config_name} and {' or '.join(FOLDER_WEIGHTS)})")
  config_path = os.path.join(folder, config_name)
  if not os.path.isfile(config_path):
    raise ValueError(f"weights={path!r}: no {config_name} in {folder} (a Hugging Face model "
                     f"folder holds {config_name} and {' or '.join(FOLDER_WEIGHTS)})")
  try:
    with open(config_path, encoding="utf-8") as f:
      config = json.load(f)
  except (OSError, ValueError) as e:
    first = (str(e).strip().splitlines() or [""])[0][:200]
    raise ValueError(f"{config_path}: not a readable JSON file ({first})") from None
  if not isinstance(config, dict):
    raise ValueError(f"{config_path}: must hold a JSON object, got {type(config).__name__}")
  if weights is None:
    found = [n for n in FOLDER_WEIGHTS if os.path.isfile(os.path.join(folder, n))]
    if not found:
      sharded = [n for n in _SHARD_INDEXES if os.path.isfile(os.path.join(folder, n))]
      if sharded:
        raise ValueError(f"weights={path!r}: {sharded[0]} is a sharded checkpoint, which is "
                         "not supported; save the model unsharded (save_pretrained("
                         "max_shard_size='100GB'))")
      raise ValueError(f"weights={path!r}: no {' or '.join(FOLDER_WEIGHTS)} in {folder}")
    weights = os.path.join(folder, found[0])
  return config, weights


def shapes_of(state_dict: Mapping[str, Any]) -> Dict[str, Tuple[Shape, str]]:
  """`{key: (shape, dtype name)}` of in-memory arrays."""
  return {str(k): (tuple(int(d) for d in np.shape(v)), np.asarray(v).dtype.name)
          for k, v in state_dict.items()}


def shapes_from_manifest(manifest: Iterable[Sequence]) -> Dict[str, Tuple[Shape, str]]:
  """`{key: (shape, dtype)}` from manifest rows `[key, shape, dtype]` (as the golden files)."""
  return {str(key): (tuple(int(d) for d in shape), str(dtype)) for key, shape, dtype in manifest}


# ---------------------------------------------------------------------------------------------
# Where a leaf comes from.

@dataclasses.dataclass(frozen=True)
class Source:
  """The state-dict tensor that fills one Flax leaf.

  Attributes:
    key: the tensor's name in the file.
    shape: the tensor's expected shape in the file.
    to_flax: numpy function from the tensor to the leaf.
    parts: how many leaves read this one tensor (ViT's packed q/k/v projection: 3).
    aliases: other names the same tensor may have in older files (at most one may be there).
  """
  key: str
  shape: Shape
  to_flax: Callable[[np.ndarray], np.ndarray]
  parts: int = 1
  aliases: Tuple[str, ...] = ()


def same(key: str, shape: Shape, aliases: Tuple[str, ...] = ()) -> Source:
  """The tensor is the leaf (biases, norms, embeddings)."""
  return Source(key, tuple(shape), lambda x: x, aliases=aliases)


def conv_kernel(key: str, shape: Shape) -> Source:
  """torch ConvNd weight [O, I/g, *k] -> Flax Conv kernel [*k, I/g, O]."""
  ndim = len(shape)
  torch_shape = (shape[-1], shape[-2]) + tuple(shape[:-2])
  axes = tuple(range(2, ndim)) + (1, 0)
  return Source(key, torch_shape, lambda x: np.transpose(x, axes))


def dense_kernel(key: str, shape: Shape, aliases: Tuple[str, ...] = ()) -> Source:
  """torch Linear weight [out, in] -> Flax Dense kernel [in, out]."""
  return Source(key, (shape[1], shape[0]), np.transpose, aliases=aliases)


def packed_kernel(key: str, shape: Shape, index: int, parts: int) -> Source:
  """Row block `index` of `parts` stacked Linear weights [parts * H * hd, D] (torch's packed
  q, k, v `in_proj_weight`) -> Flax DenseGeneral kernel [D, H, hd]."""
  width, rows = shape[0], shape[1] * shape[2]
  def to_flax(x):
    return x[index * rows:(index + 1) * rows].T.reshape(shape)
  return Source(key, (parts * rows, width), to_flax, parts=parts)


def packed_bias(key: str, shape: Shape, index: int, parts: int) -> Source:
  """Block `index` of `parts` stacked biases [parts * H * hd] -> Flax bias [H, hd]."""
  rows = int(np.prod(shape))
  def to_flax(x):
    return x[index * rows:(index + 1) * rows].reshape(shape)
  return Source(key, (parts * rows,), to_flax, parts=parts)


def heads_out_kernel(key: str, shape: Shape) -> Source:
  """torch attention output Linear weight [D, H * hd] -> Flax DenseGeneral kernel [H, hd, D]."""
  return Source(key, (shape[2], shape[0] * shape[1]), lambda x: x.T.reshape(shape))


# Flax BatchNorm leaf -> torch BatchNorm tensor name.
BATCH_NORM = {("params", "scale"): "weight", ("params", "bias"): "bias",
              ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}


def batch_norm(collection: str, names: Tuple[str, ...], shape: Shape,
               prefix: str) -> Optional[Source]:
  """A BatchNorm leaf (`names` = (leaf,)) from torch's `prefix.{weight, bias, running_*}`."""
  if len(names) != 1 or (collection, names[0]) not in BATCH_NORM:
    return None
  return same(f"{prefix}.{BATCH_NORM[collection, names[0]]}", shape)


def layer_norm(collection: str, names: Tuple[str, ...], shape: Shape,
               prefix: str) -> Optional[Source]:
  """A LayerNorm leaf (scale, bias) from torch's `prefix.{weight, bias}`."""
  table = {"scale": "weight", "bias": "bias"}
  if collection != "params" or len(names) != 1 or names[0] not in table:
    return None
  return same(f"{prefix}.{table[names[0]]}", shape)


def dense(collection: str, names: Tuple[str, ...], shape: Shape, prefix: str,
          aliases: Tuple[str, ...] = ()) -> Optional[Source]:
  """A Dense leaf (kernel, bias) from torch Linear `prefix.{weight, bias}`; `aliases` are
  other prefixes of the same Linear in older files."""
  if collection != "params" or len(names) != 1:
    return None
  if names[0] == "kernel":
    return dense_kernel(f"{prefix}.weight", shape, tuple(f"{a}.weight" for a in aliases))
  if names[0] == "bias":
    return same(f"{prefix}.bias", shape, tuple(f"{a}.bias" for a in aliases))
  return None


def conv(collection: str, names: Tuple[str, ...], shape: Shape,
         prefix: str) -> Optional[Source]:
  """A Conv leaf (kernel, bias) from torch ConvNd `prefix.{weight, bias}`."""
  if collection != "params" or len(names) != 1:
    return None
  if names[0] == "kernel":
    return conv_kernel(f"{prefix}.weight", shape)
  if names[0] == "bias":
    return same(f"{prefix}.bias", shape)
  return None


def conv_bn(collection: str, names: Tuple[str, ...], shape: Shape, conv_prefix: str,
            bn_prefix: str) -> Optional[Source]:
  """A leaf of spg_jax's `ConvBN` (`names` = ("conv" | "bn", leaf)) from torch's separate
  conv (`conv_prefix`) and BatchNorm (`bn_prefix`) modules."""
  if len(names) != 2:
    return None
  if names[0] == "conv":
    return conv(collection, names[1:], shape, conv_prefix)
  if names[0] == "bn":
    return batch_norm(collection, names[1:], shape, bn_prefix)
  return None


def batch_norm_counter(key: str, expected: frozenset) -> bool:
  """torch's `*.num_batches_tracked` of a BatchNorm the model has: read and dropped (Flax
  keeps no counter; momentum-based updates do not use it)."""
  suffix = ".num_batches_tracked"
  return key.endswith(suffix) and key[:-len(suffix)] + ".running_mean" in expected


def require(shapes: Shapes, key: str, ndim: int) -> Shape:
  """The shape of `key` in the file, which must be there with `ndim` dimensions."""
  if key not in shapes:
    raise ValueError(f"missing key {key!r} (the weights file has {len(shapes)} keys)")
  shape = tuple(shapes[key][0])
  if len(shape) != ndim:
    raise ValueError(f"key {key!r}: shape {shape} in the file, expected {ndim} dimensions")
  return shape


def image_input(kwargs: Mapping[str, Any]) -> Shape:
  """The dummy NHWC input that builds an image model's variables: `image_size` if the model
  has one (ViT), else 64 (convolutional models' variables do not depend on it)."""
  size = int(kwargs.get("image_size", 64))
  return (1, size, size, 3)


def no_optional_leaves(path: LeafPath) -> Optional[str]:
  """Every leaf must come from the file."""
  del path
  return None


SourceFn = Callable[[str, Tuple[str, ...], Shape], Optional[Source]]


@dataclasses.dataclass(frozen=True)
class Architecture:
  """How one source model maps onto an `spg_jax.models` model.

  Attributes:
    model: the `spg_jax.models.get` name.
    source: `(collection, names, shape) -> Source | None` for every leaf of the model.
    model_kwargs: `file shapes -> constructor kwargs` read off the file (num_classes, ...);
      with `config_file` also given `config=` (the parsed file), and the `options`.
    input_shape: `kwargs -> shape` of a dummy float32 input that builds the variables, or
      `{name: (shape, dtype name)}` for a dict input (text models).
    ignorable: `(key, expected keys) -> bool`: file keys read and dropped on purpose.
    config_file: None (the weights are one file), or the name of the config file of a model
      folder (Hugging Face: "config.json").
    options: keyword options of `convert` passed on to `model_kwargs` (e.g. Hugging Face's
      `head`, `num_classes`).
    optional: `leaf path -> group name | None`: groups of leaves that may be missing from
      the file altogether (initialised fresh from `convert`'s `seed`).
    source_for: None, or `(file shapes, kwargs) -> source function` when the key names
      depend on the file's spelling or the model built (Hugging Face's optional "bert."
      prefix, the head's name); it replaces `source`.
    ignored_kind: None, or `key -> short description` of an ignored key, for the summary.
  """
  model: str
  source: SourceFn
  model_kwargs: Callable[..., Dict[str, Any]]
  input_shape: Callable[[Mapping[str, Any]], Any] = image_input
  ignorable: Callable[[str, frozenset], bool] = batch_norm_counter
  config_file: Optional[str] = None
  options: Tuple[str, ...] = ()
  optional: Callable[[LeafPath], Optional[str]] = no_optional_leaves
  source_for: Optional[Callable[[Shapes, Mapping[str, Any]], SourceFn]] = None
  ignored_kind: Optional[Callable[[str], str]] = None


# ---------------------------------------------------------------------------------------------
# Matching a file against the leaves, and filling them.

@dataclasses.dataclass(frozen=True)
class Plan:
  """Which file key fills which leaf; the keys the file holds and what happens to them.

  Attributes:
    leaves: leaf path -> (the file's key, its `Source`), in the Flax tree's order.
    used: file keys read into leaves; ignored: file keys read and dropped on purpose.
    fresh: leaves of optional groups the file lacks entirely (to initialise fresh).
  """
  leaves: Mapping[LeafPath, Tuple[str, Source]]
  used: Tuple[str, ...]
  ignored: Tuple[str, ...]
  fresh: Tuple[LeafPath, ...] = ()


def leaf_name(path: LeafPath) -> str:
  return "/".join(path)


def _more(items: Sequence[str]) -> str:
  if len(items) <= 1:
    return ""
  shown = ", ".join(repr(k) for k in items[1:4])
  rest = f" and {len(items) - 4} more" if len(items) > 4 else ""
  return f" (also {shown}{rest})"


def make_plan(leaf_shapes: Mapping[LeafPath, Shape],
              source_of: Callable[[str, Tuple[str, ...], Shape], Optional[Source]],
              file_shapes: Shapes, *, what: str,
              ignorable: Callable[[str, frozenset], bool] = batch_norm_counter,
              optional: Callable[[LeafPath], Optional[str]] = no_optional_leaves) -> Plan:
  """Matches the leaves of a model (`what` names it in messages) against a file's tensors.

  Args:
    leaf_shapes: `{(collection, *names): shape}` of every variable of the Flax model.
    source_of: `(collection, names, shape) -> Source` (None: the converter knows no key).
    file_shapes: `{key: (shape, dtype)}` of the file.
    ignorable: `(key, expected keys) -> bool`: file keys dropped on purpose.
    optional: `leaf path -> group | None`: a group none of whose keys is in the file goes
      to `Plan.fresh`; one that is there in part is checked like any other leaf.

  Raises:
    ValueError (one line, naming the key and the shapes): a leaf no key fills, a key that is
      missing, there twice (current and legacy name), of the wrong shape or not floating
      point, a key no leaf reads.
  """
  wanted = {}  # path -> Source
  readers = {}  # key -> [path, ...]
  for path, shape in leaf_shapes.items():
    shape = tuple(shape)
    source = source_of(path[0], tuple(path[1:]), shape)
    if source is None:
      raise ValueError(f"Flax leaf {leaf_name(path)} {shape} of {what}: no key of the "
                       "weights file maps to it (the converter does not know this leaf)")
    wanted[path] = source
    readers.setdefault(source.key, []).append(path)
  expected = frozenset(readers) | frozenset(
      a for s in wanted.values() for a in s.aliases)

  def in_file(source: Source) -> bool:
    return any(k in file_shapes for k in (source.key,) + source.aliases)

  groups: Dict[str, bool] = {}  # optional group -> any of its keys in the file
  for path, source in wanted.items():
    group = optional(path)
    if group is not None:
      groups[group] = groups.get(group, False) or in_file(source)
  absent = frozenset(g for g, present in groups.items() if not present)

  leaves, resolved, fresh = {}, {}, []
  for path, source in wanted.items():
    if optional(path) in absent:
      fresh.append(path)
      continue
    if source.key not in resolved:
      present = [k for k in (source.key,) + source.aliases if k in file_shapes]
      if not present:
        missing = [s.key for p, s in wanted.items()
                   if optional(p) not in absent and not in_file(s)]
        missing = list(dict.fromkeys(missing))
        raise ValueError(
            f"missing key {source.key!r} (expected shape {source.shape}, for Flax leaf "
            f"{leaf_name(path)} {tuple(leaf_shapes[path])}) in the weights file for "
            f"{what}{_more(missing)}")
      if len(present) > 1:
        raise ValueError(f"keys {present[0]!r} and {present[1]!r} are the same tensor under "
                         "its current and its legacy name; the file must hold only one")
      key = present[0]
      file_shape, dtype = tuple(file_shapes[key][0]), file_shapes[key][1]
      if file_shape != source.shape:
        raise ValueError(f"key {key!r}: shape {file_shape} in the file, expected "
                         f"{source.shape} (for Flax leaf {leaf_name(path)} "
                         f"{tuple(leaf_shapes[path])} of {what})")
      if dtype not in FLOAT_DTYPES:
        raise ValueError(f"key {key!r}: dtype {dtype} in the file, expected one of "
                         f"{', '.join(FLOAT_DTYPES)}")
      if len(readers[source.key]) != source.parts:
        names = ", ".join(leaf_name(p) for p in readers[source.key])
        raise ValueError(f"key {key!r} would fill {len(readers[source.key])} Flax leaves "
                         f"({names}), expected {source.parts}: a converter error")
      resolved[source.key] = key
    leaves[path] = (resolved[source.key], source)

  used = tuple(dict.fromkeys(resolved.values()))
  used_set = frozenset(used)
  ignored, extra = [], []
  for key in file_shapes:
    if key in used_set:
      continue
    (ignored if ignorable(key, expected) else extra).append(key)
  if extra:
    raise ValueError(f"unexpected key {extra[0]!r} {tuple(file_shapes[extra[0]][0])} in the "
                     f"weights file: no Flax leaf of {what} reads it{_more(extra)}")
  return Plan(leaves, used, tuple(ignored), tuple(fresh))


def fill(plan: Plan, tensors: Mapping[str, Any],
         leaf_shapes: Mapping[LeafPath, Shape]) -> Dict[str, Any]:
  """The nested `{collection: {module: ... {leaf: float32 array}}}` of a plan's leaves.

  Raises:
    ValueError: a planned key missing from `tensors`, or a leaf of the wrong shape.
  """
  variables: Dict[str, Any] = {}
  for path, (key, source) in plan.leaves.items():
    if key not in tensors:
      raise ValueError(f"missing key {key!r} in the tensors read from the weights file")
    value = source.to_flax(np.asarray(tensors[key], dtype=np.float32))
    value = np.ascontiguousarray(value, dtype=np.float32)
    if value.shape != tuple(leaf_shapes[path]):
      raise ValueError(f"key {key!r} gives Flax leaf {leaf_name(path)} shape {value.shape}, "
                       f"expected {tuple(leaf_shapes[path])}: a converter error")
    node = variables
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = value
  return variables
