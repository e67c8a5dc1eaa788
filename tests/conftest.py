"""Test set-up, before JAX starts: 8 host CPU devices (so sharding is exercised on CPU) and
XLA's fast-compile mode."""
import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Compile time dominates the suite (hundreds of small programs, each run a few steps): XLA's
# fast compile mode roughly halves it. Tests compare runs made under the same setting (and
# subprocesses inherit it), so every bitwise and tolerance check still means the same.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
