"""Experiment configs: each module has `get_config(arg=None)`; `arg="quick"` is a CPU variant."""
