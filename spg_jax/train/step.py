"""The pure train and eval steps, task-agnostic: the task turns outputs into SPG terms and
eval values, this module does the rest.

`make_train_step(...)` -> `train_step(state, batch, key) -> (state, metrics)`;
`make_eval_step(...)` -> `eval_step(state, batch) -> the task's eval values`;
`spg_objective` is the loss of all heads (each head's SPG loss, weighted by its
`Attachment.loss_weight`, optionally normalised).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from spg_jax import losses as losses_lib
from spg_jax import spg_model
from spg_jax import trajectory
from spg_jax.train import controller
from spg_jax.train import health as health_lib
from spg_jax.train import optim

# How SPG's loss normalisation `stop_gradient(exp(L_base - L_total))` is applied: not at all
# (what the authors' runs did in effect), to the loss (what they intended), or to the step
# size (the optimizer's injected lr_scale; equal to "loss" for plain SGD).
NORMALIZE_MODES = losses_lib.NORMALIZE_MODES


def _head_weight(attachment: Any) -> float:
  return 1.0 if attachment is None else float(attachment.loss_weight)


def _weighted_sum(values: list[jax.Array], weights: list[float]) -> jax.Array:
  """`sum_h w_h v_h`, leaving a single head of weight 1 exactly as it is."""
  out = None
  for v, w in zip(values, weights):
    v = v if w == 1.0 else w * v
    out = v if out is None else out + v
  return out


def _head_loss(terms: losses_lib.StepTerms, spg: Any) -> tuple[jax.Array, dict]:
  """One head's loss before normalisation: (total, metrics with `loss_total`, `loss_base`,
  `loss_replicas [T]`, `survival [T+1]`, `mean_episode_length`)."""
  if spg.num_replicas == 0:
    base_losses = terms.losses[:, 0].astype(jnp.float32)
    if terms.valid is None:
      loss = jnp.mean(base_losses)
    else:
      loss = trajectory.weighted_mean(base_losses, jnp.asarray(terms.valid, jnp.float32))
    stats = trajectory.trajectory_stats(terms.correct, terms.valid)
    return loss, {"loss_total": loss, "loss_base": loss, "loss_replicas": jnp.zeros((0,)),
                  "survival": stats["survival"],
                  "mean_episode_length": stats["mean_episode_length"]}
  total, metrics = losses_lib.spg_loss(terms, spg.lambdas, spg.form, normalize="none",
                                       base_denominator=spg.base_denominator)
  return total, metrics


def spg_objective(head_terms: Mapping[str, losses_lib.StepTerms],
                  head_weights: Mapping[str, float], spg: Any
                  ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The loss to differentiate over every head, and the step's loss metrics.

  Args:
    head_terms: head name -> `StepTerms` (`[B, T+1, *E]`; T = 0 without SPG); "out" is the
      main head.
    head_weights: head name -> weight in the total.
    spg: the run's `SPGSpec` (lambdas, form, normalize, base_denominator).
  Returns:
    (loss, metrics): `loss`, `loss_base`, `loss_replicas [T]`, `survival [T+1]` (index 0 =
    the base's train accuracy), `mean_episode_length` of the main head, `norm_factor` of
    the total, and `<head>_loss` / `<head>_survival` for every other head.
  """
  names = list(head_terms)
  per_head = {n: _head_loss(head_terms[n], spg) for n in names}
  weights = [head_weights[n] for n in names]
  total = _weighted_sum([per_head[n][0] for n in names], weights)
  base = _weighted_sum([per_head[n][1]["loss_base"] for n in names], weights)
  if spg.num_replicas and spg.normalize in ("loss", "lr"):
    factor = jax.lax.stop_gradient(jnp.exp(base - total))
  else:
    factor = jnp.ones_like(total)
  # "lr" applies the same factor to the step size instead (the step writes it into the
  # optimizer's injected lr_scale).
  loss = total * factor if spg.num_replicas and spg.normalize == "loss" else total
  main = per_head[spg_model.MAIN_HEAD][1]
  metrics = {"loss": loss, "loss_base": main["loss_base"],
             "loss_replicas": main["loss_replicas"], "norm_factor": factor,
             "survival": main["survival"], "mean_episode_length": main["mean_episode_length"]}
  for n in names:
    if n != spg_model.MAIN_HEAD:
      metrics[f"{n}_loss"] = per_head[n][0]
      metrics[f"{n}_survival"] = per_head[n][1]["survival"]
  return loss, metrics


def _dummy_features(spec: Any) -> dict:
  return dict(spec.features)


def make_init(model: nn.Module, spec: Any) -> Callable[[jax.Array], dict]:
  """`init(key) -> variables` of the trained model (replicas included)."""
  def init(key):
    params_key, dropout_key = jax.random.split(key)
    dummy = spec.task.dummy_input(_dummy_features(spec))
    # train=True: SPGModel creates its replicas' params only in train mode.
    return model.init({"params": params_key, "dropout": dropout_key}, dummy, train=True)
  return init


def make_train_step(model: nn.Module, attachments: Mapping[str, Any],
                    tx: optax.GradientTransformation, spec: Any
                    ) -> Callable[..., tuple[Any, dict]]:
  """The pure train step.

  `train_step(state, batch, key) -> (state, metrics)`: `key` is the run's base dropout key
  (typed), the step uses `fold_in(key, state.step)`. Metrics: the `spg_objective` metrics,
  the task's in-step metrics (e.g. `accuracy`), `learning_rate` (effective, of this step),
  `dropout_rates [T]`, `skipped_steps`, and the health flags `health` (named finiteness
  of the loss terms, gradients and update) and `batch_ok` (the task's batch rules).
  """
  task, spg = spec.task, spec.spg
  head_weights = {name: _head_weight(a) for name, a in attachments.items()}

  def train_step(state, batch: dict, key: jax.Array):
    step_key = jax.random.fold_in(key, state.step)
    extra = {"replica_rates": state.ctrl.rates} if spg.enabled else {}

    def loss_fn(params):
      variables = {"params": params}
      if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
      (outputs, aux), updates = model.apply(variables, task.model_input(batch), train=True,
                                            rngs={"dropout": step_key},
                                            mutable=["batch_stats"], **extra)
      heads = spg_model.step_outputs(outputs, aux, attachments, spg.enabled)
      head_terms = {name: task.terms(out, batch, aux, spg.label_smoothing)
                    for name, out in heads.items()}
      loss, metrics = spg_objective(head_terms, head_weights, spg)
      main = spg_model.MAIN_HEAD
      metrics.update(task.train_metrics(heads[main], batch, head_terms[main],
                                        metrics["survival"]))
      return loss, (metrics, updates.get("batch_stats", {}))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, (metrics, batch_stats)), grads = grad_fn(state.params)
    opt_state = state.opt_state
    if spg.normalize == "lr":
      opt_state = optim.set_lr_scale(opt_state, metrics["norm_factor"])
    updates, opt_state = tx.update(grads, opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["learning_rate"] = optim.learning_rate(opt_state)
    metrics["dropout_rates"] = state.ctrl.rates
    metrics[health_lib.HEALTH] = health_lib.step_health(metrics, grads, (params, batch_stats))
    metrics[health_lib.BATCH_OK] = task.check_batch(batch)
    updated = (params, batch_stats, opt_state,
               controller.accumulate(state.ctrl, metrics["survival"]))
    skipped = state.skipped_steps
    if spec.skip_nonfinite:
      ok = health_lib.is_finite(metrics[health_lib.HEALTH])
      old = (state.params, state.batch_stats, state.opt_state, state.ctrl)
      updated = jax.tree.map(lambda new, prev: jnp.where(ok, new, prev), updated, old)
      skipped = skipped + jnp.where(ok, 0, 1).astype(skipped.dtype)
    metrics["skipped_steps"] = skipped
    params, batch_stats, opt_state, ctrl = updated
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state, ctrl=ctrl, skipped_steps=skipped)
    return new_state, metrics

  return train_step


def _batch_size(x: Any) -> int:
  return jax.tree.leaves(x)[0].shape[0]


def make_eval_step(model: nn.Module, spec: Any) -> Callable[..., dict]:
  """`eval_step(state, batch)`: the task's eval values of the base model's main output
  (`batch["mask"]`, when present, marks the real examples). With the task's "sum"
  reduction the values are sums (a split is evaluated by adding its batches); with
  "concat" they are per-example rows, returned with `{"values": ..., "weights": [B]}` so
  the host can keep the real ones."""
  task = spec.task

  def eval_step(state, batch: dict):
    inputs = task.model_input(batch)
    outputs, aux = model.apply(state.variables(), inputs, train=False)
    if spec.spg.enabled:
      outputs = jax.tree.map(lambda o: o[:, 0], outputs)
    mask = batch.get("mask", jnp.ones((_batch_size(inputs),), bool)).astype(jnp.float32)
    values = task.eval_batch(outputs, batch, aux, mask)
    if task.eval_reduction == "concat":
      return {"values": values, "weights": mask}
    return values
  return eval_step
