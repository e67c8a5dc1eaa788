# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Quickstart: SPG retraining on MNIST-1D
#
# Sequential Policy Gradient (SPG, [arXiv 2506.15051](https://arxiv.org/abs/2506.15051))
# retrains a trained model with T temporary replicas that share its head; the replicas are
# thrown away afterwards. The paper's protocol: start from a trained checkpoint, retrain it
# with SPG, and compare with the checkpoint as it was and with plain continued training.
#
# This notebook runs that protocol in miniature with `spg_jax.protocol.run_protocol` on
# MNIST-1D (generated offline, no download) and the MNIST-1D paper's 1-D CNN, on CPU. Only the
# installed library is needed: the config is built here, from `spg_jax.config.base_config()`.
#
# 1. `base`: train the CNN from scratch (no SPG) and keep its best-on-validation checkpoint;
# 2. retrain that checkpoint with the same small budget in three arms: `control` (continued
#    training, no SPG), `spg_hpo` (SPG with three dropout replicas, the reference rate 0.2)
#    and `spg_hpo_controller` (the same, with the online controller moving the dropout
#    rates while it trains);
# 3. select each arm's checkpoint on the validation split and evaluate the test split once.
#
# The budget here is a demo's (one seed, 800 base and 200 retraining steps): read the numbers as a
# smoke test, not as a result. `make demo` runs the full protocol (5 seeds, longer training).
# The tests run this notebook with `SPG_JAX_COLAB_CI=1`: the same cells and figures with a
# still smaller budget (100 base and 40 retraining steps, validation every 10).

# %%
# Colab only: install the library (with its data and training extras) from GitHub.
# Does nothing anywhere else.
import subprocess
import sys

if "google.colab" in sys.modules:
  subprocess.run("pip install -q 'spg_jax[data,experiments] @ "
                 "git+https://github.com/spg-jax/spg_jax'", shell=True, check=True)

# %%
import json
import os
import tempfile

import matplotlib.pyplot as plt
import ml_collections
import numpy as np

import spg_jax
from spg_jax import protocol

# %% [markdown]
# ## The configuration
# A run config is `spg_jax.config.base_config()` (every field with its default: the MNIST-1D
# CNN with SPG-HPO, T=3 replicas, the reference lambdas and dropout rate 0.2) with the
# fields you change. `run_protocol` also reads a `protocol` section: the base stage, the
# retraining budget every arm shares, and the arms, each as overrides of the run config
# (same field names). The third arm turns the online dropout controller on: every
# `every_steps` steps it moves each replica's rate toward the value at which
# `target_survival` of the episodes that reach the replica survive it.

# %%
config = spg_jax.config.base_config()
config.batch_size, config.eval_batch_size = 64, 256
config.schedule.name = "cosine"   # SGD with momentum 0.9 is the default optimizer
config.progress_bar = False       # run_protocol prints one line per run instead
CI = os.environ.get("SPG_JAX_COLAB_CI") == "1"   # the tests' smaller size (see the top)
BASE_STEPS, RETRAIN_STEPS, EVAL_EVERY = (100, 40, 10) if CI else (800, 200, 25)
config.protocol = ml_collections.ConfigDict({
    "seeds": (0,),                # the full protocol (`make demo`) has 5
    "init_checkpoint": None,      # an exported base model to start from; None: train one
    "reference": "control",       # every arm is compared with this one
    "confidence": 0.95,           # of the paired t intervals
    "base": {"num_steps": BASE_STEPS, "eval_every_steps": BASE_STEPS // 4,
             "optimizer": {"learning_rate": 0.05}},
    "retrain": {"num_steps": RETRAIN_STEPS, "eval_every_steps": EVAL_EVERY,
                "log_every_steps": RETRAIN_STEPS // 20,
                "optimizer": {"learning_rate": 0.01}},   # retrain with a lower rate
    "arms": {
        "control": {"spg": {"enabled": False}},   # continued training, same budget
        "spg_hpo": {"spg": {"enabled": True, "kind": "hpo"}},
        "spg_hpo_controller": {
            "spg": {"enabled": True, "kind": "hpo"},
            "controller": {"enabled": True, "every_steps": RETRAIN_STEPS // 10,
                           "target_survival": 0.9}},
    }})
spg_jax.config.validate_config(config)   # the run fields; run_protocol checks every stage
print(config.protocol)

# %% [markdown]
# ## Run the protocol
# One progress line per run, then the results table: test accuracy (the task's selection
# metric, `result.metric`) per arm, and the difference of each arm with the `control` arm.

# %%
workdir = tempfile.mkdtemp(prefix="spg_quickstart_")
result = protocol.run_protocol(config, workdir)
print(result)

# %%
# The report module draws with the Agg backend; draw inline again in this notebook.
# %matplotlib inline

# %% [markdown]
# ## Accuracy per arm
# Left: test accuracy of each arm's selected checkpoint. Right: validation accuracy while
# retraining (step 0 is the base checkpoint every arm starts from).

# %%
arms = [arm for arm in result.arms if arm != protocol.BASE_ARM]
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4))
accuracy = [100 * np.mean(result.scores[arm]) for arm in result.arms]
ax0.bar(range(len(result.arms)), accuracy, color=[f"C{i}" for i in range(len(result.arms))])
ax0.set_xticks(range(len(result.arms)), result.arms, rotation=15)
ax0.set_ylim(min(accuracy) - 5, max(accuracy) + 2)
ax0.set_ylabel("test accuracy (%)")
for i, arm in enumerate(result.arms):
  ax0.text(i, accuracy[i] + 0.3, f"{accuracy[i]:.1f}", ha="center")
for i, arm in enumerate(arms, start=1):
  for record in result.runs[arm]:
    ax1.plot(record.val_curve[0], 100 * np.asarray(record.val_curve[1]), "o-", color=f"C{i}",
             label=arm)
ax1.set(xlabel="retraining step", ylabel="validation accuracy (%)")
ax1.legend()
plt.show()

# %% [markdown]
# ## Survival after each replica over training
# The fraction of training samples still correctly classified after replica t (logged by the
# trainer); survival after replica 0 would be the training accuracy. With the controller the
# rates move, so the survival curves do too.

# %%
spg_arms = [arm for arm in arms if result.runs[arm][0].survival]
fig, axes = plt.subplots(1, len(spg_arms), figsize=(6 * len(spg_arms), 3.8), sharey=True)
for ax, arm in zip(np.atleast_1d(axes), spg_arms):
  for t, (steps, values) in enumerate(result.runs[arm][0].survival, start=1):
    ax.plot(steps, values, label=f"after replica {t}")
  ax.set(title=arm, xlabel="retraining step")
  ax.legend()
np.atleast_1d(axes)[0].set_ylabel("survival (training batches)")
plt.show()

# %% [markdown]
# ## The dropout rates the online controller chose
# The trainer logs the controller's rates (`controller/dropout_rates_t`) to the run's
# `metrics.jsonl`; the `spg_hpo` arm keeps the reference rate 0.2 throughout.

# %%
run_dir = os.path.join(workdir, protocol.RUNS_DIR, "spg_hpo_controller", "seed_0")
with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
  records = [r for r in map(json.loads, f) if "controller/dropout_rates_0" in r]
steps = [r["step"] for r in records]
fig, ax = plt.subplots(figsize=(6, 3.5))
for t in range(config.spg.num_replicas):
  ax.plot([0] + steps, [config.spg.rate] + [r[f"controller/dropout_rates_{t}"] for r in records],
          "o-", label=f"replica {t + 1}")
ax.axhline(config.spg.rate, color="grey", linestyle=":", label="fixed rate (spg_hpo)")
ax.set(xlabel="retraining step", ylabel="dropout rate")
ax.legend()
plt.show()

# %% [markdown]
# ## What the protocol wrote
# `results.md` (tables, per-seed numbers, the exact config and environment), `results.png`
# and every model with its replicas stripped (`exports/<arm>/seed_<k>`, readable with
# `spg_jax.load_exported`): the deployed model has the original architecture.

# %%
print(sorted(os.listdir(workdir)))
print(sorted(os.listdir(os.path.join(workdir, protocol.EXPORTS_DIR))))
exported = spg_jax.load_exported(os.path.join(workdir, protocol.EXPORTS_DIR, "spg_hpo", "seed_0"))
print({collection: sorted(tree) for collection, tree in exported.items()})   # no replicas
