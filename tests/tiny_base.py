"""A user's tiny BatchNorm MLP and helpers shared by the replica / wrapper tests."""
import flax.linen as nn
import jax

import spg_jax

NUM_CLASSES, WIDTH = 5, 32


class TinyBase(nn.Module):
  """A user's model: MLP features -> head, returning (logits, aux)."""

  @nn.compact
  def __call__(self, x, *, train):
    h = nn.relu(nn.Dense(WIDTH)(x))
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
    return nn.Dense(NUM_CLASSES, name="head")(h), {"pre_logits": h}


def make_spg(replicas):
  return spg_jax.SPGModel(base=TinyBase(), head=nn.Dense(NUM_CLASSES, parent=None),
                          replicas=replicas)


def init(model, x):
  return model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x, train=True)


def apply_train(model, variables, x, key=2, **kwargs):
  (logits, aux), updates = model.apply(variables, x, train=True, mutable=["batch_stats"],
                                       rngs={"dropout": jax.random.key(key)}, **kwargs)
  return logits, aux, updates


X = jax.random.normal(jax.random.key(3), (16, 8))
