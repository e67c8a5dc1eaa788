"""spg_jax: Sequential Policy Gradient (arXiv 2506.15051) in JAX/Flax.

During training only, a base model is extended with T temporary replicas chained after its
features and sharing its output head; one forward pass gives T+1 predictions per sample (a
trajectory); an SPG loss (masked, or return-weighted REINFORCE) on it retrains the model;
the replicas are thrown away afterwards (`strip_replicas`).

Public API (one import path: `import spg_jax`):

Trajectories (spg_jax.trajectory; pure JAX, per sample with the step axis first, or
batched with step_axis=1):
  alive_masks, observed_states, step_rewards, episode_returns, episode_lengths,
  trajectory_stats, cumulative_dropout_rates
Correctness per task (spg_jax.correctness):
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
Functional entry point for any JAX model:
  init_hpo_replicas, hpo_step_logits
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
from spg_jax.correctness import (
    classification_correct, ctc_correct, greedy_ctc_decode, qa_correct, segmentation_correct,
    token_correct)
from spg_jax.losses import (
    LOSS_FORMS, StepTerms, classification_spg_loss, classification_terms, ctc_terms,
    masked_loss, normalize_loss, qa_terms, reinforce_loss, segmentation_terms, spg_loss,
    step_cross_entropy, token_terms)
from spg_jax.trajectory import (
    alive_masks, cumulative_dropout_rates, episode_lengths, episode_returns,
    observed_states, step_rewards, trajectory_stats)
from spg_jax.validation import (
    check_labels, labels_in_range, validate_hparams, validate_lambdas, validate_rates)
from spg_jax.functional import hpo_step_logits, init_hpo_replicas
from spg_jax.replicas import (
    HPOReplica, NASReplica, ResidualConvBlock, ResidualMLPBlock, hpo_replicas, nas_replicas)
from spg_jax.spg_model import (
    Attachment, SPGModel, apply_shared_head, build_spg_model, head_variables, step_outputs,
    strip_replicas, with_base)
from spg_jax.sharding import batch_sharding, make_mesh, replicated, shard_batch

# Heavy parts load on first attribute access (PEP 562), so `import spg_jax` stays light
# for projects that only need the core.
_LAZY = {
    "train_and_evaluate": "train.loop", "TrainResult": "train.loop",
    "Preempted": "train.preemption", "PREEMPTED_EXIT_CODE": "train.preemption",
    "run_protocol": "protocol", "ProtocolResult": "protocol",
    "TrainState": "train.state", "with_dropout_rates": "train.state",
    "make_train_step": "train.step", "make_eval_step": "train.step",
    "spg_objective": "train.step", "get_engine": "train.engine",
    "make_optimizer": "train.optim", "schedule_factor": "train.optim",
    "get_hparam": "train.optim", "set_hparams": "train.optim",
    "ControllerState": "train.controller", "init_controller": "train.controller",
    "controller_update": "train.controller",
    "export_variables": "train.checkpointing", "load_exported": "train.checkpointing",
    "load_state": "train.checkpointing", "CheckpointMismatchError": "train.checkpointing",
    "base_config": "config", "validate_config": "config",
}
_SUBPACKAGES = ("config", "data", "distributed", "models", "report", "tasks", "train")


def __getattr__(name):
  if name in _LAZY:
    return getattr(_importlib.import_module(f"spg_jax.{_LAZY[name]}"), name)
  if name in _SUBPACKAGES:
    return _importlib.import_module(f"spg_jax.{name}")
  raise AttributeError(f"module 'spg_jax' has no attribute {name!r}")


__all__ = list(_LAZY) + [
    "LOSS_FORMS", "StepTerms", "alive_masks", "check_labels", "classification_correct",
    "classification_spg_loss", "classification_terms", "ctc_correct", "ctc_terms",
    "cumulative_dropout_rates", "episode_lengths", "episode_returns", "greedy_ctc_decode",
    "masked_loss", "normalize_loss", "observed_states", "qa_correct", "qa_terms",
    "reinforce_loss", "segmentation_correct", "segmentation_terms", "spg_loss",
    "step_cross_entropy", "step_rewards", "token_correct", "token_terms", "trajectory_stats",
    "validate_hparams", "validate_lambdas", "validate_rates", "labels_in_range",
    "hpo_step_logits", "init_hpo_replicas", "HPOReplica", "NASReplica", "ResidualConvBlock",
    "ResidualMLPBlock", "Attachment", "SPGModel", "apply_shared_head", "head_variables",
    "hpo_replicas", "nas_replicas", "build_spg_model", "step_outputs", "strip_replicas",
    "with_base", "batch_sharding", "make_mesh", "replicated", "shard_batch",
]
