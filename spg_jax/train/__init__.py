"""The training engine, task-agnostic: state, steps, engine, health, loop, optimizer,
controller, checkpointing, metrics writer.

  train_and_evaluate(config, workdir, *, model=None, dataset=None, init_variables=None)
                      the loop (`spg_jax.train.loop`), returning a `TrainResult`.
  Engine, get_engine, build_engine, spec_from_config, StaticSpec (engine)
  TrainState, with_dropout_rates (state); make_train_step, make_eval_step,
  spg_objective (step); evaluate (evaluation); Preempted, PREEMPTED_EXIT_CODE (preemption)

Names load on first use (the loop pulls in orbax, tensorboardX and the data pipeline).
"""
import importlib as _importlib

_LAZY = {
    "train_and_evaluate": "loop", "TrainResult": "loop", "evaluate_split": "loop",
    "CHECKPOINT_DIR": "loop", "EXPORT_DIR": "loop",
    "Preempted": "preemption", "PREEMPTED_EXIT_CODE": "preemption",
    "Engine": "engine", "StaticSpec": "engine", "build_engine": "engine",
    "get_engine": "engine", "spec_from_config": "engine", "optimizer_hparams": "engine",
    "TrainState": "state", "with_dropout_rates": "state",
    "make_train_step": "step", "make_eval_step": "step", "spg_objective": "step",
    "evaluate": "evaluation",
}
_MODULES = ("checkpointing", "controller", "engine", "evaluation", "health", "loop",
            "metrics_writer", "optim", "preemption", "state", "step")


def __getattr__(name):
  if name in _LAZY:
    return getattr(_importlib.import_module(f"spg_jax.train.{_LAZY[name]}"), name)
  if name in _MODULES:
    return _importlib.import_module(f"spg_jax.train.{name}")
  raise AttributeError(f"module 'spg_jax.train' has no attribute {name!r}")


__all__ = sorted(_LAZY)
