"""The arms of the retraining protocol, as `protocol.arms` override sections.

Every arm retrains the same base checkpoint with the same budget (`spg_jax.protocol`); an
arm is only the config overrides that make it what it is:

* `control`: continued training, no SPG (what a user would do anyway).
* `dropout`: continued training with plain dropout on the head's input at the SPG rate p
  (the registry models' `head_dropout`): exactly where SPG-HPO's replicas drop units, but
  one pass and the plain loss. `dropout_t<k>` (k = 2..T): the rate after k replicas in a
  row, `1 - prod_{t<=k} (1 - p_t)` (with one shared rate, `1 - (1 - p)^k`): the units a
  sample reaching step k has lost.
* `spg_hpo`: SPG-HPO (masked loss, reference HPO).
* `spg_unmasked`: the same replicas and lambdas, every step's loss counted for every sample
  (`losses.unmasked_loss`): deep supervision without the trajectory masks, which isolates
  what SPG's per-sample episodes add.
* `spg_nas`: SPG-NAS (return-weighted REINFORCE loss, reference NAS).

`arms_section(rate, num_replicas, names)` builds the `protocol.arms` section; `REFERENCES`
is what the other arms are compared with (paired by seed).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import ml_collections

# Arms compared with every other arm, first the protocol's main reference.
REFERENCES = ("control", "dropout")
# The default arms of a protocol config (the tables list the reference first, then the arms
# by name: a ConfigDict iterates its keys sorted).
DEFAULT_ARMS = ("control", "dropout", "spg_hpo", "spg_unmasked", "spg_nas")
CUMULATIVE_PREFIX = "dropout_t"


def control() -> dict:
  """Continued training: SPG off."""
  return {"spg": {"enabled": False}}


def dropout(rate: float) -> dict:
  """Continued training with dropout `rate` on the head's input (`model.head_dropout`)."""
  if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
    raise ValueError(f"dropout arm: rate={rate!r}: must be a number in [0, 1)")
  return {"spg": {"enabled": False}, "model": {"kwargs": {"head_dropout": float(rate)}}}


def spg_hpo() -> dict:
  """SPG-HPO with the config's replicas and the masked loss."""
  return {"spg": {"enabled": True, "kind": "hpo", "form": "masked"}}


def spg_unmasked() -> dict:
  """SPG-HPO's replicas and lambdas with every step's loss counted for every sample."""
  return {"spg": {"enabled": True, "kind": "hpo", "form": "unmasked"}}


def spg_nas() -> dict:
  """SPG-NAS with the return-weighted (REINFORCE) loss."""
  return {"spg": {"enabled": True, "kind": "nas", "form": "reinforce"}}


def replica_rates(rate: float | Sequence[float], num_replicas: int) -> tuple[float, ...]:
  """The T per-replica rates of `spg.rate` (one shared rate or T of them)."""
  if isinstance(rate, (int, float)) and not isinstance(rate, bool):
    return (float(rate),) * int(num_replicas)
  rates = tuple(float(r) for r in rate)
  if len(rates) != num_replicas:
    raise ValueError(f"spg.rate={tuple(rate)!r}: needs 1 or num_replicas={num_replicas} "
                     f"values")
  return rates


def cumulative_rate(rate: float | Sequence[float], k: int, num_replicas: int) -> float:
  """The fraction of head-input units dropped after replicas 1..k in a row:
  `1 - prod_{t<=k} (1 - p_t)`, e.g. p = 0.2: k=2 0.36, k=3 0.488."""
  rates = replica_rates(rate, num_replicas)
  if not 1 <= k <= len(rates):
    raise ValueError(f"k={k!r}: must be in [1, {len(rates)}]")
  keep = 1.0
  for p in rates[:k]:
    keep *= 1.0 - p
  return round(1.0 - keep, 10)  # no float noise in the arm's recorded rate


def cumulative_names(num_replicas: int) -> tuple[str, ...]:
  """`dropout_t2`, ..., `dropout_t<T>`."""
  return tuple(f"{CUMULATIVE_PREFIX}{k}" for k in range(2, int(num_replicas) + 1))


def arm_overrides(name: str, rate: float | Sequence[float], num_replicas: int) -> dict:
  """The overrides of arm `name` (one of `DEFAULT_ARMS` or `dropout_t<k>`), for an SPG
  rate `rate` with `num_replicas` replicas (the dropout arms' rates come from it)."""
  builders: dict[str, Callable[[], dict]] = {
      "control": control, "spg_hpo": spg_hpo, "spg_unmasked": spg_unmasked,
      "spg_nas": spg_nas,
      "dropout": lambda: dropout(replica_rates(rate, num_replicas)[0]),
  }
  if name in builders:
    return builders[name]()
  if name in cumulative_names(num_replicas):
    return dropout(cumulative_rate(rate, int(name[len(CUMULATIVE_PREFIX):]), num_replicas))
  known = list(builders) + list(cumulative_names(num_replicas))
  raise ValueError(f"arm {name!r}: must be one of {known}")


def arms_section(rate: float | Sequence[float], num_replicas: int,
                 names: Sequence[str] = DEFAULT_ARMS, cumulative: bool = False
                 ) -> ml_collections.ConfigDict:
  """The `protocol.arms` section: arm name -> overrides, in the order of `names`, then
  (with `cumulative`) `dropout_t2..T`."""
  out = ml_collections.ConfigDict()
  all_names = list(names) + (list(cumulative_names(num_replicas)) if cumulative else [])
  for name in all_names:
    out[name] = ml_collections.ConfigDict(arm_overrides(name, rate, num_replicas))
  return out


def references(protocol: Any) -> tuple[str, ...]:
  """The arms every other arm is compared with: `protocol.reference` first, then those of
  `protocol.references` (optional; `protocol.validate_protocol` checks they are arms)."""
  main = protocol.reference
  extra = tuple(protocol.get("references") or ())
  return (main,) + tuple(r for r in extra if r != main)
