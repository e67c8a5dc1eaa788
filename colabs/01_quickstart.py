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
# MNIST-1D (generated offline, no download) and the MNIST-1D paper's 1-D CNN, on CPU:
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

# %%
# Colab only: fetch the repository (the library and its experiment configs) and install it.
# Does nothing anywhere else.
import os
import subprocess
import sys

if "google.colab" in sys.modules:
  subprocess.run("test -d /content/spg_jax || git clone -q https://github.com/spg-jax/spg_jax "
                 "/content/spg_jax && pip install -q -e '/content/spg_jax[data,experiments]'",
                 shell=True, check=True)
  os.chdir("/content/spg_jax")
  sys.path.insert(0, "/content/spg_jax")

# %%
import json
import tempfile

import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from experiments.configs import mnist1d_protocol
from spg_jax import protocol

# %% [markdown]
# ## The configuration
# The protocol config's documented `quick` variant, enlarged a little so that the curves
# mean something, with a third arm that turns the online dropout controller on: every
# `every_steps` steps it moves each replica's rate toward the value at which
# `target_survival` of the episodes that reach the replica survive it.

# %%
config = mnist1d_protocol.get_config("quick")
p = config.protocol
p.seeds = (0,)
p.base.num_steps, p.base.eval_every_steps = 800, 200
p.retrain.num_steps, p.retrain.eval_every_steps, p.retrain.log_every_steps = 200, 25, 10
del p.arms["spg_nas"]   # the NAS arm is in the full protocol; one compile less here
p.arms.spg_hpo_controller = ml_collections.ConfigDict({
    "spg": {"enabled": True, "kind": "hpo"},
    "controller": {"enabled": True, "every_steps": 20, "target_survival": 0.9}})
print(p)

# %% [markdown]
# ## Run the protocol
# One progress line per run, then the results table: test accuracy per arm, and the
# difference of each arm with the `control` arm.

# %%
workdir = tempfile.mkdtemp(prefix="spg_quickstart_")
result = protocol.run_protocol(config, workdir)

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
accuracy = [100 * np.mean(result.accuracies[arm]) for arm in result.arms]
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
# `spg_jax.checkpointing.load_exported`): the deployed model has the original architecture.

# %%
print(sorted(os.listdir(workdir)))
print(sorted(os.listdir(os.path.join(workdir, protocol.EXPORTS_DIR))))
