"""spg_jax: Sequential Policy Gradient (arXiv 2506.15051) in JAX/Flax.

During training only, a base model is extended with T temporary replicas chained after its
features and sharing its output head; one forward pass gives T+1 predictions per sample (a
trajectory); an SPG loss (masked, or return-weighted REINFORCE) on it retrains the model;
the replicas are thrown away afterwards (`strip_replicas`).

Public API (one import path: `import spg_jax`; every name loads on first use, so
`import spg_jax` itself is instant and `help(spg_jax)` is this index; `help(spg_jax.NAME)`
documents one name; docs/API.md has one line per name):

Trajectories (spg_jax.trajectory; pure JAX, batched `[B, T+1, ...]` by default, per sample
with step_axis=0):
  alive_masks, observed_states, step_rewards, episode_returns, episode_lengths,
  trajectory_stats, cumulative_dropout_rates
Correctness per task (spg_jax.correctness; batched by default, labels' shape checked):
  classification_correct, qa_correct, segmentation_correct, token_correct, ctc_correct,
  greedy_ctc_decode
Losses (spg_jax.losses):
  step_cross_entropy, StepTerms, classification_terms, qa_terms, segmentation_terms,
  token_terms, ctc_terms, masked_loss, reinforce_loss, normalize_loss, spg_loss,
  classification_spg_loss, LOSS_FORMS
Temporary modules (spg_jax.replicas) and the wrapper (spg_jax.spg_model; Flax linen):
  HPOReplica, NASReplica, ResidualMLPBlock, ResidualConvBlock, hpo_replicas, nas_replicas,
  Attachment, SPGModel, build_spg_model, step_outputs, strip_replicas, with_base,
  head_variables, apply_shared_head
Functional entry point for any JAX model (spg_jax.functional):
  init_hpo_replicas, hpo_step_logits
Flax NNX (spg_jax.nnx, imported as a module: `from spg_jax import nnx as spg_nnx`):
  SPGReplicas, spg_step_logits, SPGTrainable, spg_optimizer
Validation (spg_jax.validation):
  validate_lambdas, validate_rates, validate_hparams, check_labels, labels_in_range
Sharding:
  make_mesh, batch_sharding, replicated, shard_batch
Configs (spg_jax.config): base_config (every field with its default), validate_config
Training (spg_jax.train), imported on first use (they pull in orbax, tensorboardX, tqdm):
  train_and_evaluate, TrainResult, Preempted, PREEMPTED_EXIT_CODE (train.loop,
  train.preemption); TrainState, with_dropout_rates (train.state); make_train_step,
  make_eval_step, spg_objective (train.step); get_engine (train.engine); make_optimizer,
  schedule_factor, get_hparam, set_hparams (train.optim); ControllerState,
  init_controller, controller_update (train.controller); export_variables,
  load_exported, load_state, CheckpointMismatchError (train.checkpointing)
Protocol: run_protocol, ProtocolResult (spg_jax.protocol)
Subpackages: spg_jax.tasks (what the engine asks of a task: classification, segmentation,
  sequence classification/regression, extractive QA, CTC, seq2seq), spg_jax.models (base
  models, `get(name)`, `spg_attachments`), spg_jax.data (input pipelines),
  spg_jax.distributed (which batch rows this process feeds), spg_jax.report (statistics,
  tables, plots).
"""
import importlib as _importlib

# name -> the module (under spg_jax) that defines it. Everything loads on first attribute
# access (PEP 562): `import spg_jax` stays light, and `help(spg_jax)` shows the index above
# instead of every class's inherited Flax methods.
_NAMES = {
    "trajectory": ("alive_masks", "observed_states", "step_rewards", "episode_returns",
                   "episode_lengths", "trajectory_stats", "cumulative_dropout_rates"),
    "correctness": ("classification_correct", "qa_correct", "segmentation_correct",
                    "token_correct", "ctc_correct", "greedy_ctc_decode"),
    "losses": ("step_cross_entropy", "StepTerms", "classification_terms", "qa_terms",
               "segmentation_terms", "token_terms", "ctc_terms", "masked_loss",
               "reinforce_loss", "normalize_loss", "spg_loss", "classification_spg_loss",
               "LOSS_FORMS"),
    "replicas": ("HPOReplica", "NASReplica", "ResidualMLPBlock", "ResidualConvBlock",
                 "hpo_replicas", "nas_replicas"),
    "spg_model": ("Attachment", "SPGModel", "build_spg_model", "step_outputs",
                  "strip_replicas", "with_base", "head_variables", "apply_shared_head"),
    "functional": ("init_hpo_replicas", "hpo_step_logits"),
    "validation": ("validate_lambdas", "validate_rates", "validate_hparams", "check_labels",
                   "labels_in_range"),
    "sharding": ("make_mesh", "batch_sharding", "replicated", "shard_batch"),
    "config": ("base_config", "validate_config"),
    "train.loop": ("train_and_evaluate", "TrainResult"),
    "train.preemption": ("Preempted", "PREEMPTED_EXIT_CODE"),
    "train.state": ("TrainState", "with_dropout_rates"),
    "train.step": ("make_train_step", "make_eval_step", "spg_objective"),
    "train.engine": ("get_engine",),
    "train.optim": ("make_optimizer", "schedule_factor", "get_hparam", "set_hparams"),
    "train.controller": ("ControllerState", "init_controller", "controller_update"),
    "train.checkpointing": ("export_variables", "load_exported", "load_state",
                            "CheckpointMismatchError"),
    "protocol": ("run_protocol", "ProtocolResult"),
}
_LAZY = {name: module for module, names in _NAMES.items() for name in names}
_SUBMODULES = ("config", "correctness", "data", "distributed", "functional", "losses",
               "models", "nnx", "protocol", "replicas", "report", "sharding", "spg_model",
               "tasks", "train", "trajectory", "validation")


def __getattr__(name):
  if name in _LAZY:
    return getattr(_importlib.import_module(f"spg_jax.{_LAZY[name]}"), name)
  if name in _SUBMODULES:
    return _importlib.import_module(f"spg_jax.{name}")
  raise AttributeError(f"module 'spg_jax' has no attribute {name!r}")


__all__ = list(_LAZY)
