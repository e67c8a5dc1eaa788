"""XLA CPU compiler options for spg_jax's jitted steps.

Why: jaxlib 0.10's CPU backend sends convolutions (and matrix products, reductions) to
YNNPACK by default (`xla_cpu_experimental_ynn_fusion_type`). Its convolutions are slower
than XLA's Eigen ones on the forward and input-gradient passes and much slower on the
kernel gradient, which XLA writes as a convolution whose window is the whole output map
(ResNet-18, CIFAR stem, batch 32, a 32x32x64 3x3 convolution's kernel gradient: 0.54 s with
YNNPACK against 0.05 s with Eigen on a 2-core EPYC; `experiments/benchmarks/cpu_profile.py`
measures it). YNNPACK's reductions, on the other hand, are the faster ones (BatchNorm's
statistics), so `CPU_OPTIONS` keeps YNNPACK for reductions only.

The options go to `jax.jit(..., compiler_options=...)` (per function, no global state, no
`XLA_FLAGS`); the same setting for a whole process is
`XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_REDUCE`.
"""
from __future__ import annotations

from typing import Mapping

# YNNPACK for reductions only; convolutions and matrix products on XLA's Eigen kernels.
CPU_OPTIONS: Mapping[str, str] = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}
CONV_BACKENDS = ("eigen", "default")


def compiler_options(platform: str, conv_backend: str = "eigen") -> dict | None:
  """The `compiler_options` for a jitted step on `platform` ("cpu", "gpu", "tpu").

  conv_backend: "eigen" (XLA's own CPU convolution kernels; `CPU_OPTIONS`) or "default"
  (what the installed jaxlib picks). Returns None (no options) off CPU or for "default".

  Raises:
    ValueError: `conv_backend` not in `CONV_BACKENDS`.
  """
  if conv_backend not in CONV_BACKENDS:
    raise ValueError(f"conv_backend={conv_backend!r}: must be one of {list(CONV_BACKENDS)}")
  if platform != "cpu" or conv_backend == "default":
    return None
  return dict(CPU_OPTIONS)
