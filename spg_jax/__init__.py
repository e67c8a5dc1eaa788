"""spg_jax: Sequential Policy Gradient (arXiv 2506.15051) in JAX/Flax.

During training only, a base model is extended with T temporary replicas chained after its
features and sharing its output head; one forward pass gives T+1 predictions per sample (a
trajectory); an SPG loss (masked, or return-weighted REINFORCE) on it retrains the model;
the replicas are thrown away afterwards (`strip_replicas`).

Public API (one import path: `import spg_jax`):

Trajectories (pure JAX, per sample with the step axis first, or batched with step_axis=1):
  alive_masks, observed_states, step_rewards, episode_returns, episode_lengths,
  trajectory_stats, cumulative_dropout_rates
Correctness per task:
  classification_correct, qa_correct, segmentation_correct, token_correct, ctc_correct,
  greedy_ctc_decode
Losses:
  step_cross_entropy, StepTerms, classification_terms, qa_terms, segmentation_terms,
  token_terms, ctc_terms, masked_loss, reinforce_loss, normalize_loss, spg_loss,
  classification_spg_loss, LOSS_FORMS
Temporary modules and wrapper (Flax linen):
  HPOReplica, NASReplica, ResidualMLPBlock, ResidualConvBlock, hpo_replicas, nas_replicas,
  SPGModel, strip_replicas, with_base, head_variables, apply_shared_head
Functional entry point for any JAX model:
  init_hpo_replicas, hpo_step_logits
Validation:
  validate_lambdas, validate_rates, validate_hparams, check_labels
Sharding:
  make_mesh, batch_sharding, replicated, shard_batch
Training, imported on first use (they pull in orbax, tensorboardX, tqdm):
  train_and_evaluate, TrainResult (trainer); run_protocol, ProtocolResult (protocol);
  TrainState, make_train_step, make_eval_step, get_engine, with_dropout_rates (steps);
  make_optimizer, schedule_factor, get_hparam, set_hparams (optim);
  ControllerState, init_controller, controller_update (controller);
  Preempted, PREEMPTED_EXIT_CODE (trainer); export_variables, load_exported, load_state,
  CheckpointMismatchError (checkpointing); validate_config (config_validation)
Subpackages: spg_jax.models (base models, `get(name)`), spg_jax.data (input pipelines),
  spg_jax.distributed (which batch rows this process feeds), spg_jax.report (statistics, tables, plots).
"""
import importlib as _importlib
from spg_jax.core import (
    LOSS_FORMS, StepTerms, alive_masks, check_labels, classification_correct,
    classification_spg_loss, classification_terms, ctc_correct, ctc_terms,
    cumulative_dropout_rates, episode_lengths, episode_returns, greedy_ctc_decode,
    masked_loss, normalize_loss, observed_states, qa_correct, qa_terms, reinforce_loss,
    segmentation_correct, segmentation_terms, spg_loss, step_cross_entropy, step_rewards,
    token_correct, token_terms, trajectory_stats, validate_hparams, validate_lambdas,
    validate_rates)
from spg_jax.functional import hpo_step_logits, init_hpo_replicas
from spg_jax.replicas import (
    HPOReplica, NASReplica, ResidualConvBlock, ResidualMLPBlock, SPGModel, apply_shared_head,
    head_variables, hpo_replicas, nas_replicas, strip_replicas, with_base)
from spg_jax.sharding import batch_sharding, make_mesh, replicated, shard_batch

# Heavy parts load on first attribute access (PEP 562), so `import spg_jax` stays light
# for projects that only need the core.
_LAZY = {
    "train_and_evaluate": "trainer", "TrainResult": "trainer",
    "run_protocol": "protocol", "ProtocolResult": "protocol",
    "TrainState": "steps", "make_train_step": "steps", "make_eval_step": "steps",
    "get_engine": "steps", "with_dropout_rates": "steps",
    "make_optimizer": "optim", "schedule_factor": "optim", "get_hparam": "optim",
    "set_hparams": "optim",
    "ControllerState": "controller", "init_controller": "controller",
    "controller_update": "controller",
    "Preempted": "trainer", "PREEMPTED_EXIT_CODE": "trainer",
    "export_variables": "checkpointing", "load_exported": "checkpointing",
    "load_state": "checkpointing", "CheckpointMismatchError": "checkpointing",
    "validate_config": "config_validation",
}
_SUBPACKAGES = ("models", "data", "distributed", "report")


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
    "validate_hparams", "validate_lambdas", "validate_rates", "hpo_step_logits",
    "init_hpo_replicas", "HPOReplica", "NASReplica", "ResidualConvBlock", "ResidualMLPBlock",
    "SPGModel", "apply_shared_head", "head_variables", "hpo_replicas", "nas_replicas",
    "strip_replicas", "with_base", "batch_sharding", "make_mesh", "replicated", "shard_batch",
]
