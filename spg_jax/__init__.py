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
"""
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

__all__ = [
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
