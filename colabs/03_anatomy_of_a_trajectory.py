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
# # Anatomy of an SPG trajectory
#
# One batch, taken apart. With T temporary replicas, one forward pass gives every sample a
# trajectory of T+1 predictions: step 0 is the base model, step t the shared head applied
# after replica t (more and more dropout on the head's input). The episode stays **alive**
# while the predictions are correct; the step of the first error still counts, the steps
# after it are padding. Everything below is computed by `spg_jax`'s public functions.

# %%
# Colab only: install the library (with its data and training extras) from GitHub.
# Does nothing anywhere else.
import subprocess
import sys

if "google.colab" in sys.modules:
  subprocess.run("pip install -q 'spg_jax[data,experiments] @ "
                 "git+https://github.com/spg-jax/spg_jax'", shell=True, check=True)

# %%
import functools
import os
import tempfile

import jax
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

import spg_jax
from spg_jax import data

# %% [markdown]
# ## A model to look at
# A few seconds of training (a small BatchNorm CNN on sklearn's 8x8 digits, 60 steps of SPG-HPO
# with the library's training loop) so that most base predictions are right. The tests run
# the notebook with `SPG_JAX_COLAB_CI=1`, which trains 20 steps.

# %%
NUM_STEPS = 20 if os.environ.get("SPG_JAX_COLAB_CI") == "1" else 60
config = spg_jax.config.base_config()   # every field with its default (SPG-HPO, T=3)
config.model.name, config.dataset.name = "cnn_digits", "digits"
config.schedule.name = "cosine"
spg_jax.config.quick(config, num_steps=NUM_STEPS)   # a CPU run of seconds
config.progress_bar = False
result = spg_jax.train_and_evaluate(config, tempfile.mkdtemp())
print(f"validation {result.selection_metric} {result.best_val_score:.3f} "
      f"(step {result.best_step})")

# %% [markdown]
# ## The same model with three temporary replicas
# One dropout rate per replica (the paper; the reference code shares one rate). At
# initialisation replica t sees the cumulative dropout `1 - prod_{k<=t}(1 - p_k)`.
# The base model says where replicas attach (`spg_attachments(kind)`: one `Attachment` per
# head, the main one named "out"): which head they share, where its parameters sit, and
# which `aux` entry holds the head's input.

# %%
RATES, LAMBDAS = (0.2, 0.35, 0.5), (0.4, 0.2, 0.1)
base = spg_jax.models.get(config.model.name, num_classes=10)
attachments = base.spg_attachments("hpo")
print("head at", attachments["out"].head_path, "reads aux", repr(attachments["out"].feature_key))
model = spg_jax.build_spg_model(base, attachments, "hpo", num_replicas=3, rate=RATES)

validation = data.make_source("digits", "validation")
batch = [validation[i] for i in range(40)]
x = np.stack([e["input"] for e in batch])
y = np.stack([e["label"] for e in batch])

key = jax.random.key(0)
# jax.jit: one compiled program each, instead of one small compile per operation.
init = jax.jit(functools.partial(model.init, train=True))
forward = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))
variables = init({"params": key, "dropout": key}, x)
variables = spg_jax.with_base(variables, result.best_variables)   # the trained base model
(step_logits, _), _ = forward(variables, x, rngs={"dropout": key})
print("step logits", step_logits.shape)   # [B, T+1, C]

# %% [markdown]
# ## Correctness, alive masks and observed states
# Rows are the samples of the batch (sorted by episode length), columns the steps.
# The observed state is 1 while alive, 0 at the step right after the first error, -1 on
# padding (absorbing).

# %%
correct = spg_jax.classification_correct(step_logits, y, step_axis=1)   # [B, T+1]
alive = spg_jax.alive_masks(correct, step_axis=1)
states = spg_jax.observed_states(correct, step_axis=1)
lengths = spg_jax.episode_lengths(correct, step_axis=1)
order = np.argsort(-np.asarray(lengths), kind="stable")

panels = [("correct", correct, ListedColormap(["#d62728", "#2ca02c"]), (0, 1)),
          ("alive mask m_t", alive, ListedColormap(["#dddddd", "#1f77b4"]), (0, 1)),
          ("observed state o_t", states, ListedColormap(["#dddddd", "#ff7f0e", "#1f77b4"]),
           (-1, 1))]
fig, axes = plt.subplots(1, 3, figsize=(10, 6), sharey=True)
for ax, (title, values, cmap, (lo, hi)) in zip(axes, panels):
  image = ax.imshow(np.asarray(values)[order], cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
  ax.set_title(title)
  ax.set_xlabel("step t (0 = base)")
  ax.set_xticks(range(values.shape[1]))
  fig.colorbar(image, ax=ax, ticks=range(lo, hi + 1), fraction=0.08)
axes[0].set_ylabel("sample (sorted by episode length)")
plt.show()

print("survival per step", np.round(spg_jax.trajectory_stats(correct)["survival"], 3))

# %% [markdown]
# ## The loss terms, both forms
# Per-sample, per-step cross-entropy `CE_t^i`; padded steps are greyed out. The return of an
# episode is `G^i = 1 + sum_t lambda_t m_t^i`.
#
# * masked form (reference HPO): `mean_i CE_0^i + sum_t lambda_t * mean over alive i of CE_t^i`
# * REINFORCE form (reference NAS): `mean_i (CE_0^i + sum_t m_t^i CE_t^i) * G^i`

# %%
terms = spg_jax.classification_terms(step_logits, y)
returns = spg_jax.episode_returns(correct, LAMBDAS, step_axis=1)
masked_total, masked_base, masked_replicas = spg_jax.masked_loss(terms, LAMBDAS)
reinforce_total, _, reinforce_replicas = spg_jax.reinforce_loss(terms, LAMBDAS)
normalized, factor = spg_jax.normalize_loss(masked_total, masked_base)

masked_bars = np.concatenate([[masked_base], np.asarray(LAMBDAS) * masked_replicas])
reinforce_bars = np.concatenate([[reinforce_total - reinforce_replicas.sum()],
                                 reinforce_replicas])
fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(13, 4.5),
                                    gridspec_kw={"width_ratios": [1.2, 0.5, 1.3]})
losses = np.ma.masked_where(np.asarray(alive)[order] == 0, np.asarray(terms.losses)[order])
image = ax0.imshow(losses, cmap="magma_r", aspect="auto")
ax0.set_facecolor("#dddddd")
ax0.set(title="CE_t^i on alive steps", xlabel="step t", ylabel="sample (sorted)")
fig.colorbar(image, ax=ax0)
ax1.barh(range(len(order)), np.asarray(returns)[order])
ax1.invert_yaxis()
ax1.set(title="return G^i", xlim=(0.9, 1 + sum(LAMBDAS)), yticks=[])
steps = np.arange(len(masked_bars))
ax2.bar(steps - 0.2, masked_bars, width=0.4, label=f"masked (total {masked_total:.3f})")
ax2.bar(steps + 0.2, reinforce_bars, width=0.4,
        label=f"REINFORCE (total {reinforce_total:.3f})")
ax2.set(title="contribution of each step to the loss", xlabel="step t", xticks=steps)
ax2.legend()
plt.show()
print(f"loss normalisation: factor exp(L_base - L) = {factor:.3f}, "
      f"normalised masked loss = {normalized:.3f} (its value; the gradient follows L_base's scale)")

# %% [markdown]
# ## Cumulative dropout rates
# What replica t sees at initialisation, for the reference (one rate 0.2 shared) and for the
# per-replica rates used above; next to it, the fraction of this batch still correct after
# each step.

# %%
survival = spg_jax.trajectory_stats(correct)["survival"]
t = np.arange(1, len(RATES) + 1)
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.5))
ax0.plot(t, spg_jax.cumulative_dropout_rates([0.2] * 3), "o-", label="shared 0.2 (reference)")
ax0.plot(t, spg_jax.cumulative_dropout_rates(RATES), "s-", label=f"per replica {RATES}")
ax0.set(xlabel="replica t", ylabel="cumulative dropout", xticks=t, ylim=(0, 1))
ax0.legend()
ax1.plot(np.arange(len(survival)), survival, "o-")
ax1.set(xlabel="step t (0 = base)", ylabel="survival in this batch", ylim=(0, 1.05),
        xticks=np.arange(len(survival)))
plt.show()
