"""Argument checks of the SPG core: replica counts, dropout rates, lambdas, label ranges.

Each raises a one-line `ValueError` naming the argument and what is allowed.
"""
from __future__ import annotations

import importlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def validate_lambdas(lambdas: Any, num_replicas: int | None = None) -> tuple[float, ...]:
  """Returns lambdas as a tuple of floats; raises a one-line ValueError when malformed.

  Args:
    lambdas: length-T sequence of non-negative finite replica weights.
    num_replicas: if given, the required length T.
  """
  try:
    values = tuple(float(v) for v in np.atleast_1d(np.asarray(lambdas, dtype=np.float64)))
  except (TypeError, ValueError):
    raise ValueError(f"lambdas={lambdas!r}: must be a sequence of non-negative numbers") from None
  if not values:
    raise ValueError(f"lambdas={lambdas!r}: must be a non-empty sequence of non-negative numbers")
  if any(not np.isfinite(v) or v < 0 for v in values):
    raise ValueError(f"lambdas={lambdas!r}: every weight must be finite and >= 0")
  if num_replicas is not None and len(values) != num_replicas:
    raise ValueError(f"lambdas={lambdas!r}: needs exactly one weight per replica "
                     f"(num_replicas={num_replicas}, got {len(values)})")
  return values


def validate_rates(rates: Any, num_replicas: int) -> tuple[float, ...]:
  """Dropout rate(s) -> a length-T tuple; a scalar is shared by all replicas (reference).

  Raises a one-line ValueError if a rate is outside [0, 1) or the count is not 1 or T.
  """
  if isinstance(num_replicas, bool) or not isinstance(num_replicas, (int, np.integer)) \
      or num_replicas < 1:
    raise ValueError(f"num_replicas={num_replicas!r}: must be an integer >= 1")
  try:
    values = tuple(float(v) for v in np.atleast_1d(np.asarray(rates, dtype=np.float64)))
  except (TypeError, ValueError):
    raise ValueError(f"rate={rates!r}: must be a number or a sequence of numbers in [0, 1)") \
        from None
  if len(values) == 1:
    values = values * num_replicas
  if len(values) != num_replicas:
    raise ValueError(f"rate={rates!r}: give one shared rate or one per replica "
                     f"(num_replicas={num_replicas}, got {len(values)})")
  if any(not (0.0 <= v < 1.0) for v in values):
    raise ValueError(f"rate={rates!r}: every dropout rate must be in [0, 1)")
  return values


def validate_hparams(num_replicas: int, rates: Any, lambdas: Any) -> tuple[tuple, tuple]:
  """Checks replica count, rates and lambdas together; returns (rates, lambdas) tuples."""
  rates_t = validate_rates(rates, num_replicas)
  lambdas_t = validate_lambdas(lambdas, num_replicas)
  return rates_t, lambdas_t


def labels_in_range(labels: Any, num_classes: int, ignore_label: int | None = None,
                    xp: Any = jnp) -> Any:
  """bool `[]`: every label is in [0, num_classes) or equals `ignore_label`.

  One rule for the host (`check_labels`, `xp=numpy`: concrete values even when called while
  a jitted function is being traced) and inside a jitted train step (the tasks' batch
  checks, `xp=jax.numpy`). Float (soft) labels are always in range.
  """
  labels = xp.asarray(labels)
  if not xp.issubdtype(labels.dtype, xp.integer):
    return xp.asarray(True)
  ok = (labels >= 0) & (labels < num_classes)
  if ignore_label is not None:
    ok = ok | (labels == ignore_label)
  return xp.all(ok)


def check_labels(labels: Any, num_classes: int, *, field: str = "labels",
                 ignore_label: int | None = None) -> None:
  """Host-side range check of integer labels; a no-op on tracers (inside jit).

  Raises ValueError naming `field` if a label is outside [0, num_classes) (the
  `ignore_label` value is allowed).
  """
  if isinstance(labels, jax.core.Tracer):
    return
  values = np.asarray(labels)
  if values.size == 0 or bool(labels_in_range(values, num_classes, ignore_label, xp=np)):
    return
  if ignore_label is not None:
    values = values[values != ignore_label]
  allowed = f"[0, {num_classes})" + ("" if ignore_label is None else
                                     f" or the ignore label {ignore_label}")
  raise ValueError(f"{field}: values must be in {allowed} (got min {values.min()}, "
                   f"max {values.max()})")


def require_extra(module: str, extra: str) -> Any:
  """`importlib.import_module(module)`, or a one-line ValueError naming the install extra
  that provides it (`pip install 'spg_jax[<extra>]'`) when it is not installed."""
  try:
    return importlib.import_module(module)
  except ImportError:
    raise ValueError(f"{module} is not installed: this needs the [{extra}] extra "
                     f"(pip install 'spg_jax[{extra}]')") from None
