"""The SPG wrapper: a base model plus T temporary replicas per head, in ONE apply.

* `Attachment`: where one head's replicas attach to a base model (which `aux` entry is
  `h_0`, where the head's variables live, what to apply before the head, the NAS block, and
  the head's weight in the loss). Models give theirs with `model.spg_attachments(kind)`.
* `SPGModel`: wraps any base model `base(x, *, train) -> (outputs, aux)`; reads `h_0 =
  aux[feature_key]`, chains the replicas and applies the base's own head (same parameters)
  to every `h_t`. The head's output may be one array or a pytree of arrays (extractive QA:
  start and end logits); every leaf is stacked along a new step axis 1. Train mode returns
  `[B, T+1, ...]` step outputs; eval mode returns the base outputs as `[B, 1, ...]` and
  never touches the replicas. Further heads of the same base (FCN's auxiliary head) get
  their own replicas through `extra_heads`.
* `step_outputs`: the engine's uniform view, `{head name: [B, T+1, ...]}`, of a model's
  output with or without SPG.
* `strip_replicas` / `with_base`: from SPGModel variables to the base's and back.

A head with BatchNorm (FCN's conv-BN-ReLU-dropout-conv) runs in train mode at every step.
`head_batch_stats` says which of those applications update its running statistics:
"base" (default) only the base model's own pass, so the statistics describe the features
the deployed head sees; "every_step" every one, in order (base first, then replica 1..T),
as the authors' PyTorch code does by calling the head module 1+T times in train mode.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from spg_jax import replicas as replicas_lib

# The name of a model's main head (its first output); other heads are named by the model.
MAIN_HEAD = "out"
# Where SPGModel puts the step outputs of `extra_heads` in `aux` (train mode).
EXTRA_STEP_OUTPUTS = "extra_step_outputs"
# Which head applications update a shared head's BatchNorm statistics (see the module note).
HEAD_BATCH_STATS = ("base", "every_step")


@dataclasses.dataclass(frozen=True)
class Attachment:
  """How SPG's temporary modules attach to one head of a base model.

  Attributes:
    head: an unbound copy of the head's definition (e.g. `nn.Dense(C, parent=None)`), applied
      to every `h_t` with the base's own head variables.
    head_path: where the head's variables sit inside the base's variables.
    feature_key: the `aux` entry that holds `h_0` (the head's input for HPO; a feature map
      for NAS, then give `pre_head`).
    pre_head: optional parameter-free function applied to each `h_t` before the head (e.g.
      global average pooling when NAS replicas act on feature maps).
    output_key: where step 0 (the base's own prediction of this head) is: None for the
      base's main output, else `aux[output_key]` (FCN: "aux_logits").
    block: NAS only, a zero-argument factory of one replica block (identity at init, same
      shape in and out); None for HPO.
    loss_weight: weight of this head's loss in the total (torchvision's FCN recipe: 1.0 for
      `out`, 0.5 for `aux`).
  """
  head: nn.Module
  head_path: tuple[str, ...] = ("head",)
  feature_key: str = "pre_logits"
  pre_head: Callable[[jax.Array], jax.Array] | None = None
  output_key: str | None = None
  block: Callable[[], nn.Module] | None = None
  loss_weight: float = 1.0


def _subtree(tree: Any, path: Sequence[str]) -> Any:
  for key in path:
    tree = tree[key]
  return tree


def head_variables(base_variables: dict, head_path: Sequence[str]) -> dict:
  """The head's variables (every collection that has them) inside the base's variables."""
  out = {}
  for collection, tree in base_variables.items():
    try:
      out[collection] = _subtree(tree, head_path)
    except (KeyError, TypeError):
      continue
  if "params" not in out:
    raise ValueError(f"head_path={tuple(head_path)!r}: no such entry in the base model's "
                     f"params (top-level names: {sorted(base_variables.get('params', {}))})")
  return out


def apply_shared_head(head: nn.Module, variables: dict, h: jax.Array,
                      rngs: dict | None = None) -> Any:
  """Applies an unbound head definition with the base's head variables.

  Batch-statistics updates made by the head (BatchNorm in train mode) are discarded: only
  the base pass updates running statistics.
  """
  mutable = [c for c in variables if c != "params"]
  if not mutable:
    return head.apply(variables, h, rngs=rngs)
  return head.apply(variables, h, rngs=rngs, mutable=mutable)[0]


def _stack_steps(steps: Sequence[Any]) -> Any:
  """Per-step pytrees `[B, ...]` -> one pytree of `[B, T+1, ...]` (step 0 first)."""
  first = steps[0]
  steps = [jax.tree.map(lambda s, f: s.astype(f.dtype), s, first) for s in steps]
  return jax.tree.map(lambda *leaves: jnp.stack(leaves, axis=1), *steps)


def _replace_subtree(tree: dict, path: Sequence[str], value: Any) -> dict:
  """A copy of nested dict `tree` with `tree[path[0]]...[path[-1]] = value`."""
  if not path:
    return value
  out = dict(tree)
  out[path[0]] = _replace_subtree(tree[path[0]], path[1:], value)
  return out


def _trajectory(module: nn.Module, base_outputs: Any, aux: dict, head: nn.Module,
                head_path: Sequence[str], feature_key: str, pre_head: Callable | None,
                replicas: Sequence[nn.Module], replica_rates: jax.Array | None,
                replica_train: bool = True) -> Any:
  """One head's step outputs: the base's (step 0) then each replica's through the head.

  `replica_train=False` (only while initialising in eval mode) runs the replicas without
  dropout and updates no statistics: it only creates their parameters. With
  `module.head_batch_stats == "every_step"` each replica step's head application updates
  the head's running statistics, starting from the base pass's update, and the result is
  written back into the base's `batch_stats`."""
  if feature_key not in aux:
    raise ValueError(f"feature_key={feature_key!r}: not among the base model's aux "
                     f"entries {sorted(aux)}")
  # After the base's own pass: its batch_stats already hold the base pass's update.
  variables = head_variables(module.base.variables, head_path)
  per_step = (replica_train and module.head_batch_stats == "every_step"
              and "batch_stats" in variables and module.is_mutable_collection("batch_stats"))
  head = head.clone(parent=None)  # a definition, never a child with its own params
  h = aux[feature_key]
  steps = [base_outputs]
  for t, replica in enumerate(replicas):
    h = replica(h, train=replica_train,
                rate=None if replica_rates is None else replica_rates[t])
    features = h if pre_head is None else pre_head(h)
    rngs = {"dropout": module.make_rng("dropout")} \
        if replica_train and module.has_rng("dropout") else None
    if per_step:
      mutable = [c for c in variables if c != "params"]
      out, updates = head.apply(variables, features, rngs=rngs, mutable=mutable)
      variables = {**variables, "batch_stats": updates["batch_stats"]}
      steps.append(out)
    else:
      steps.append(apply_shared_head(head, variables, features, rngs))
  if per_step:
    name = head_path[0]
    top = module.base.variables["batch_stats"][name]
    module.base.put_variable("batch_stats", name, _replace_subtree(
        top, tuple(head_path[1:]), variables["batch_stats"]))
  return _stack_steps(steps)


class SPGModel(nn.Module):
  """Base model + T temporary replicas sharing the base's head, in one apply.

  `__call__(x, *, train) -> (step_outputs, aux)`: `step_outputs` has the structure of the
  base's output with every leaf `[B, T+1, *out]` in train mode (step 0 = the base's output)
  and `[B, 1, *out]` in eval mode. `init` creates the replicas' params in either mode (in
  eval mode without dropout, so no dropout rng is needed). Params: `{"base": <exactly the
  base model's params>, "replicas_0": ..., ...}` (extra heads:
  `"extra_replicas_<name>_<t>"`); `strip_replicas` returns the first.

  Attributes:
    base: module with `__call__(x, *, train) -> (outputs, aux)`.
    head: an unbound copy of the base's main head definition (e.g. `nn.Dense(C,
      parent=None)`); it is applied with the base's variables found at `head_path`.
    replicas: from `hpo_replicas(...)` or `nas_replicas(...)`.
    head_path: where the head's variables sit inside the base's variables.
    feature_key: the `aux` entry that holds `h_0` (the head's input for HPO; a feature map
      for NAS, then give `pre_head`).
    pre_head: optional parameter-free function applied to each `h_t` before the head
      (e.g. global average pooling when the replicas act on feature maps).
    extra_heads: further heads of the base, name -> `Attachment` (its `output_key` names
      the base's `aux` entry that holds the head's own prediction). In train mode their
      step outputs `[B, T+1, ...]` are returned in `aux["extra_step_outputs"][name]`.
    extra_replicas: name -> that head's replicas (the same T as `replicas`).
    head_batch_stats: "base" (default) or "every_step": which train-mode applications of a
      head with BatchNorm update its running statistics (see the module note).
  """
  base: nn.Module
  head: nn.Module
  replicas: Sequence[nn.Module]
  head_path: Sequence[str] = ("head",)
  feature_key: str = "pre_logits"
  pre_head: Callable[[jax.Array], jax.Array] | None = None
  extra_heads: Mapping[str, Attachment] | None = None
  extra_replicas: Mapping[str, Sequence[nn.Module]] | None = None
  head_batch_stats: str = "base"

  @nn.compact
  def __call__(self, x: Any, *, train: bool, replica_rates: jax.Array | None = None
               ) -> tuple[Any, dict]:
    """`replica_rates`: optional `[T]` dropout rates overriding the replicas' own; may be
    traced (an online controller's choice), so changing them never recompiles."""
    check_head_batch_stats(self.head_batch_stats)
    train = replicas_lib.check_bool(train, "train")
    extra_heads = dict(self.extra_heads or {})
    extra_replicas = dict(self.extra_replicas or {})
    if set(extra_heads) != set(extra_replicas):
      raise ValueError(f"extra_heads {sorted(extra_heads)} and extra_replicas "
                       f"{sorted(extra_replicas)}: need the same head names")
    outputs, aux = self.base(x, train=train)
    if not train and not self.is_initializing():
      return jax.tree.map(lambda o: o[:, None], outputs), aux
    # In eval-mode init the trajectory only creates the replicas' params (a later train
    # call then finds them), and its outputs are dropped.
    steps = _trajectory(self, outputs, aux, self.head, self.head_path, self.feature_key,
                        self.pre_head, self.replicas, replica_rates, replica_train=train)
    extra = {}
    for name, attachment in extra_heads.items():
      if attachment.output_key not in aux:
        raise ValueError(f"extra_heads[{name!r}].output_key={attachment.output_key!r}: "
                         f"not among the base model's aux entries {sorted(aux)}")
      extra[name] = _trajectory(self, aux[attachment.output_key], aux, attachment.head,
                                attachment.head_path, attachment.feature_key,
                                attachment.pre_head, extra_replicas[name], replica_rates,
                                replica_train=train)
    if not train:
      return jax.tree.map(lambda o: o[:, None], outputs), aux
    if extra:
      aux = {**aux, EXTRA_STEP_OUTPUTS: extra}
    return steps, aux


def check_head_batch_stats(value: Any) -> str:
  """`value` if it is one of `HEAD_BATCH_STATS`, else a one-line ValueError."""
  if value not in HEAD_BATCH_STATS:
    raise ValueError(f"head_batch_stats={value!r}: must be one of {list(HEAD_BATCH_STATS)}")
  return value


def build_spg_model(base: nn.Module, attachments: Mapping[str, Attachment], kind: str,
                    num_replicas: int, rate: Any = 0.2, depth: int = 1,
                    use_relu: bool = False, head_batch_stats: str = "base") -> SPGModel:
  """`SPGModel` for `base` with T replicas of `kind` ("hpo" or "nas") on every head of
  `attachments` (`model.spg_attachments(kind)`; the main head is named "out").
  `use_relu=True`: the authors' HPO replica (pure dropout, see `spg_jax.replicas`);
  `head_batch_stats`: see `SPGModel`."""
  check_head_batch_stats(head_batch_stats)
  if MAIN_HEAD not in attachments:
    raise ValueError(f"attachments: need a main head named {MAIN_HEAD!r} (got "
                     f"{sorted(attachments)})")

  def make(attachment: Attachment) -> tuple[nn.Module, ...]:
    if kind == "hpo":
      return replicas_lib.hpo_replicas(num_replicas, rate, depth, use_relu)
    if kind == "nas":
      return replicas_lib.nas_replicas(num_replicas, attachment.block, depth)
    raise ValueError(f"kind={kind!r}: must be one of ['hpo', 'nas']")

  main = attachments[MAIN_HEAD]
  extra = {n: a for n, a in attachments.items() if n != MAIN_HEAD}
  return SPGModel(base, main.head, make(main), head_path=tuple(main.head_path),
                  feature_key=main.feature_key, pre_head=main.pre_head,
                  extra_heads=extra or None,
                  extra_replicas={n: make(a) for n, a in extra.items()} or None,
                  head_batch_stats=head_batch_stats)


def step_outputs(outputs: Any, aux: dict, attachments: Mapping[str, Attachment],
                 spg_enabled: bool) -> dict[str, Any]:
  """`{head name: step outputs [B, S, ...]}` of a model's `(outputs, aux)`.

  With SPG (an `SPGModel` in train mode) S = T+1; without (the base model, or eval mode)
  S = 1. Heads other than the main one come from `aux` (`Attachment.output_key`, or the
  SPGModel's extra step outputs).
  """
  if spg_enabled:
    result = {MAIN_HEAD: outputs}
    extra = aux.get(EXTRA_STEP_OUTPUTS)
    for name, attachment in attachments.items():
      if name == MAIN_HEAD:
        continue
      result[name] = extra[name] if extra is not None else \
          jax.tree.map(lambda o: o[:, None], aux[attachment.output_key])
    return result
  result = {MAIN_HEAD: jax.tree.map(lambda o: o[:, None], outputs)}
  for name, attachment in attachments.items():
    if name != MAIN_HEAD:
      result[name] = jax.tree.map(lambda o: o[:, None], aux[attachment.output_key])
  return result


def strip_replicas(tree: dict) -> dict:
  """Base-model params (or variables) from SPGModel's, dropping every replica.

  Accepts either a params tree (`{"base": ..., "replicas_0": ...}`) or a variables dict of
  collections (`{"params": {...}, "batch_stats": {...}}`); returns the same kind of tree
  with exactly the structure of a base-only `init`.
  """
  if "base" in tree:
    return tree["base"]
  return {collection: sub["base"] for collection, sub in tree.items() if "base" in sub}


def nonempty_collections(variables: dict) -> dict:
  """`variables` without empty collections (a model without BatchNorm has no batch_stats,
  which some trees still carry as `{}`)."""
  return {k: v for k, v in variables.items() if k == "params" or v}


def check_same_structure(expected: Any, given: Any, field: str) -> None:
  """One-line ValueError naming `field` unless `given` has `expected`'s tree structure and
  leaf shapes (e.g. a checkpoint of another model or config)."""
  if jax.tree.structure(expected) != jax.tree.structure(given):
    names = sorted(expected) if isinstance(expected, Mapping) else type(expected).__name__
    got = sorted(given) if isinstance(given, Mapping) else type(given).__name__
    raise ValueError(f"{field}: tree structure does not match the model (expected "
                     f"collections {names}, got {got}); is it a checkpoint of a different "
                     f"model or config?")
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(expected)[0],
                          jax.tree.leaves(given)):
    if np.shape(a) != np.shape(b):
      raise ValueError(f"{field}{jax.tree_util.keystr(path)}: shape {np.shape(b)} does not "
                       f"match the model's {np.shape(a)}")


def with_base(variables: dict, base_variables: dict, *, has_replicas: bool = True) -> dict:
  """Model variables whose base part is replaced by `base_variables` (e.g. a trained
  checkpoint to retrain with SPG), cast to the model's dtypes; replicas keep their values.

  Args:
    variables: SPGModel variables `{"params": {"base": ..., "replicas_t": ...}, ...}`, or
      the base model's own variables when `has_replicas=False`.
    base_variables: base-model variables `{"params": ..., "batch_stats": ...}` with exactly
      the structure of `strip_replicas(variables)` (empty collections are ignored).
  Raises:
    ValueError if the structures or shapes differ (a checkpoint of a different model/config).
  """
  current = nonempty_collections(strip_replicas(variables) if has_replicas else variables)
  given = nonempty_collections(base_variables)
  check_same_structure(current, given, "base_variables")
  given = jax.tree.map(lambda g, c: np.asarray(g, dtype=c.dtype), given, current)
  if not has_replicas:
    return given
  out = {collection: dict(tree) for collection, tree in variables.items()}
  for collection, tree in given.items():
    out[collection]["base"] = tree
  return out
