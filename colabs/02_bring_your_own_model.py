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
# # Bring your own model: SPG on a Flax model defined here
#
# Sequential Policy Gradient (SPG, [arXiv 2506.15051](https://arxiv.org/abs/2506.15051))
# extends a model, during training only, with T temporary *replicas*: each one perturbs the
# input of the model's head a little more (dropout), and the model's **own head** (same
# parameters) predicts again from it. One forward pass gives T+1 predictions per sample, a
# trajectory that stays alive while the predictions are correct; the SPG loss adds the
# replicas' terms to the ordinary loss. After training the replicas are thrown away.
#
# This notebook attaches SPG to a model that is **not** part of `spg_jax`, with the
# functional API (`init_hpo_replicas`, `hpo_step_logits`, `classification_spg_loss`).
# A Flax linen model that returns `(logits, aux)` can use `spg_jax.SPGModel` instead, and
# train with the library's loop: `spg_jax.train_and_evaluate(config, workdir, model=...,
# dataset=spg_jax.data.ArrayDataset(...))` takes your own model and in-memory arrays.

# %%
# Colab only: install the library (with its data and training extras) from GitHub.
# Does nothing anywhere else.
import subprocess
import sys

if "google.colab" in sys.modules:
  subprocess.run("pip install -q 'spg_jax[data,experiments] @ "
                 "git+https://github.com/spg-jax/spg_jax'", shell=True, check=True)

# %%
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import spg_jax
from spg_jax import data

# %% [markdown]
# ## A model of your own
# All SPG needs from it: the input of its head (`h0`) from the forward pass, and a way to
# apply the head alone with the same parameters.

# %%
class MyMLP(nn.Module):
  """A plain MLP; returns the logits and the head's input."""
  width: int = 64
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    h = x.reshape(x.shape[0], -1)
    h = nn.relu(nn.Dense(self.width)(h))
    h = nn.relu(nn.Dense(self.width)(h))
    return nn.Dense(self.num_classes, name="head")(h), h


def stack(source):
  """All examples of a `spg_jax.data` source as two arrays."""
  examples = [source[i] for i in range(len(source))]
  return (np.stack([e["input"] for e in examples]), np.stack([e["label"] for e in examples]))


x_train, y_train = stack(data.make_source("digits", "train"))   # sklearn's 8x8 digits, offline
x_test, y_test = stack(data.make_source("digits", "test"))
print("train", x_train.shape, "test", x_test.shape)

# %% [markdown]
# ## SPG in about fifteen lines
# `params = {"base": <the model's params>, "replicas": <temporary modules>}`: the layout that
# `spg_jax.strip_replicas` understands.

# %%
model, key = MyMLP(), jax.random.key(0)
params = {"base": model.init(key, x_train[:1])["params"],
          "replicas": spg_jax.init_hpo_replicas(jax.random.key(1), width=64, num_replicas=3)}
LAMBDAS, RATE = (0.4, 0.2, 0.1), 0.2   # the reference defaults


def step_logits(params, x, key):
  """`[B, T+1, C]`: the base prediction, then one per replica (the shared head)."""
  _, h0 = model.apply({"params": params["base"]}, x)
  head = lambda h: nn.Dense(10).apply({"params": params["base"]["head"]}, h)
  return spg_jax.hpo_step_logits(params["replicas"], h0, head, key, rate=RATE)


def loss_fn(params, x, y, key):
  return spg_jax.classification_spg_loss(step_logits(params, x, key), y, LAMBDAS,
                                         normalize=True)

# %% [markdown]
# ## A few optimisation steps with optax
# A minimal demo loop (full batch, Adam); `spg_jax.train_and_evaluate` is the real training
# loop (validation, checkpoints, the online dropout controller, any task). The tests run the
# notebook with `SPG_JAX_COLAB_CI=1`, which takes fewer steps.

# %%
NUM_STEPS = 40 if os.environ.get("SPG_JAX_COLAB_CI") == "1" else 150
tx = optax.adam(3e-3)
opt_state = tx.init(params)


@jax.jit
def update(params, opt_state, x, y, key):
  (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y, key)
  updates, opt_state = tx.update(grads, opt_state)
  return optax.apply_updates(params, updates), opt_state, metrics


survival = []
for step in range(NUM_STEPS):
  params, opt_state, metrics = update(params, opt_state, x_train, y_train,
                                      jax.random.fold_in(key, step))
  survival.append(metrics["survival"])
survival = np.stack(survival)   # [steps, T+1]: fraction of samples still correct after step t
print("final loss", float(metrics["loss"]), "survival per step", np.round(survival[-1], 3))

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for t in range(survival.shape[1]):
  ax.plot(survival[:, t], label="base" if t == 0 else f"after replica {t}")
ax.set_xlabel("optimisation step")
ax.set_ylabel("survival (train batch)")
ax.legend()
plt.show()

# %% [markdown]
# ## Logits per step on a batch
# The test batch through the training-time forward pass: `[B, T+1, C]`. Each panel is one of
# the six samples the base model is least sure about: rows are the steps (0 = the base
# model), columns the classes, colour the logit; the red frame marks the true class. The
# replicas see the head's input with more and more dropout, so their logits drift.

# %%
batch_logits = jax.jit(step_logits)(params, x_test, jax.random.key(2))
print("step logits", batch_logits.shape)   # [B, T+1, C]
base_probs = jax.nn.softmax(batch_logits[:, 0], axis=-1)
shown = np.argsort(np.asarray(base_probs.max(axis=-1)))[:6]   # least confident first
scale = float(np.abs(batch_logits[shown]).max())
fig, axes = plt.subplots(1, 6, figsize=(15, 2.8), sharey=True)
for ax, i in zip(axes, shown):
  image = ax.imshow(batch_logits[i], cmap="coolwarm", aspect="auto", vmin=-scale, vmax=scale)
  ax.add_patch(plt.Rectangle((y_test[i] - 0.5, -0.5), 1, batch_logits.shape[1], fill=False,
                             edgecolor="red", linewidth=2))
  ax.set_title(f"label {y_test[i]}, predicted {int(batch_logits[i, 0].argmax())}")
  ax.set_xlabel("class")
axes[0].set_ylabel("step")
axes[0].set_yticks(range(batch_logits.shape[1]))
fig.colorbar(image, ax=axes, fraction=0.02, label="logit")
plt.show()

# %% [markdown]
# ## Throw the replicas away
# `strip_replicas` gives back exactly the structure of `model.init`: the deployed model has
# the original architecture and parameter count.

# %%
deployed = spg_jax.strip_replicas(params)
count = lambda tree: sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))
print("same structure as model.init:",
      jax.tree.structure(deployed) == jax.tree.structure(model.init(key, x_test[:1])["params"]))
print(f"parameters while training: {count(params):,}; deployed: {count(deployed):,}")
print(jax.tree.map(jnp.shape, deployed))

test_logits, _ = model.apply({"params": deployed}, x_test)
print("test accuracy of the deployed model:", float(jnp.mean(test_logits.argmax(-1) == y_test)))
