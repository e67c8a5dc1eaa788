"""BERT: parameter counts (transformers' own), inputs and masks, heads, config checks, dtypes,
SPG attachments (HPO and NAS, sequence and QA heads) and a one-step engine run.

Outputs equal to transformers' are checked in tests/test_convert_huggingface.py (golden
files); here the model's own contracts. Full-size models are checked abstractly
(`jax.eval_shape`); everything that runs uses a 2-layer, 32-wide configuration.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spg_jax import config as config_lib
from spg_jax import data, models
from spg_jax.models import bert
from spg_jax.spg_model import build_spg_model, step_outputs, strip_replicas
from spg_jax.train import loop

# RBG keys: initialisers compile several times faster than with threefry on CPU.
RNGS = {"params": jax.random.key(0, impl="rbg"), "dropout": jax.random.key(1, impl="rbg")}
SMALL = dict(size="tiny", vocab_size=50, hidden_size=32, num_attention_heads=4,
             intermediate_size=37, max_position_embeddings=16)
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
B, L = 3, 8


def small(**overrides) -> bert.Bert:
  return models.get("bert", **{**SMALL, **overrides})


def text(seed: int = 0) -> dict:
  """int32 [3, 8] inputs: row 1 has 3 padding tokens, row 2 has 5; two token types."""
  rng = np.random.default_rng(seed)
  mask = np.ones((B, L), np.int32)
  mask[1, 5:] = 0
  mask[2, 3:] = 0
  types = np.zeros((B, L), np.int32)
  types[:, 2:] = 1
  ids = rng.integers(1, 50, (B, L)).astype(np.int32) * mask
  return {"input_ids": ids, "token_type_ids": types * mask, "attention_mask": mask}


def num_params(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def abstract_params(model, length: int = 8):
  x = {k: jnp.zeros((1, length), jnp.int32) for k in bert.TEXT_INPUTS}
  return jax.eval_shape(lambda: model.init(RNGS, x, train=False))["params"]


@functools.lru_cache(maxsize=None)
def _apply(model):
  return jax.jit(lambda v, x, train, rng: model.apply(v, x, train=train,
                                                     rngs={"dropout": rng}),
                 static_argnums=2)


def run(model, variables, x, train=False, rng=1):
  return _apply(model)(variables, x, train, jax.random.key(rng, impl="rbg"))


@pytest.fixture(scope="module")
def sequence_model():
  model = small(num_classes=3)
  return model, jax.jit(functools.partial(model.init, train=False))(RNGS, text())


# ------------------------------------------------------------------ sizes


@pytest.mark.parametrize("vocab_size, encoder", [(28996, 108_310_272), (30522, 109_482_240)])
def test_parameter_counts_equal_transformers(vocab_size, encoder):
  """transformers 5.24: BertModel (encoder + pooler) of bert-base-cased 108,310,272 and of
  bert-base-uncased 109,482,240; BertForQuestionAnswering has no pooler (768 * 768 + 768)."""
  sequence = abstract_params(models.get("bert_base", vocab_size=vocab_size, num_classes=2))
  assert num_params({k: v for k, v in sequence.items() if k != "head"}) == encoder
  assert num_params(sequence["head"]) == 768 * 2 + 2
  qa = abstract_params(models.get("bert_base", vocab_size=vocab_size, head_type="qa"))
  assert "pooler" not in qa
  assert num_params(qa) == encoder - (768 * 768 + 768) + 768 * 2 + 2
  layer = sequence["layer_0"]
  # Per layer: q, k, v, attention output (4 x (768^2 + 768)), 2 LayerNorms (4 x 768),
  # intermediate (768 x 3072 + 3072), output (3072 x 768 + 768) = 7,087,872.
  assert num_params(layer) == 7_087_872
  assert sorted(layer) == ["attention", "attention_layer_norm", "attention_output",
                           "intermediate", "output", "output_layer_norm"]


@pytest.mark.parametrize("name, width, count", [("bert_base", 768, 7_087_872),
                                                ("bert_tiny", 128, 198_272)])
def test_nas_block_is_one_encoder_layer(name, width, count):
  model = models.get(name)
  state = {"hidden_states": jnp.zeros((1, 4, width)),
           "attention_mask": jnp.ones((1, 4), jnp.int32)}
  block = bert.BertNASBlock(model.config)
  params = jax.eval_shape(lambda: block.init(RNGS, state, train=False))["params"]
  assert num_params(params) == count == num_params(abstract_params(model)["layer_0"])


def test_registry_names_and_presets():
  assert {"bert", "bert_tiny", "bert_base"} <= set(models.names())
  assert models.get("bert_tiny") == models.get("bert", size="tiny")
  assert models.get("bert_base", vocab_size=28996).config == bert.BertConfig(vocab_size=28996)
  tiny = models.get("bert_tiny").config
  assert (tiny.num_hidden_layers, tiny.hidden_size, tiny.num_attention_heads,
          tiny.intermediate_size) == (2, 128, 2, 512)
  assert tiny.layer_norm_eps == 1e-12 and tiny.hidden_act == "gelu"
  # The engine passes the dataset's num_classes to every model; a QA head ignores it.
  assert models.get("bert_tiny", head_type="qa", num_classes=0).head_type == "qa"


@pytest.mark.parametrize("kwargs, message", [
    (dict(hidden_act="relu"), r"^hidden_act='relu': must be one of \['gelu'\]"),
    (dict(hidden_size=30), r"^hidden_size=30: must be a multiple of num_attention_heads=4"),
    (dict(hidden_dropout_prob=1.0), r"^hidden_dropout_prob=1.0: must be a number in \[0, 1\)"),
    (dict(layer_norm_eps=0), r"^layer_norm_eps=0: must be a number > 0"),
    (dict(vocab_size=0), r"^vocab_size=0: must be an integer >= 1"),
    (dict(head_type="token"), r"^head_type='token': must be one of \['sequence', 'qa'\]"),
    (dict(num_classes=0), r"^num_classes=0: must be an integer >= 1 \(1: regression\)"),
    (dict(size="huge"), r"^size='huge': must be one of \['tiny', 'mini'"),
    (dict(hidden_layers=3), r"^bert: unknown argument 'hidden_layers'; allowed: size, "),
])
def test_bad_settings_are_one_line_errors(kwargs, message):
  with pytest.raises(ValueError, match=message) as error:
    small(**kwargs)
  assert "\n" not in str(error.value)


def test_config_from_hugging_face():
  config = bert.BertConfig.from_hf({
      "architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_size": 64,
      "num_attention_heads": 2, "vocab_size": 28996, "classifier_dropout": 0.3,
      "transformers_version": "4.6.0.dev0", "pad_token_id": 0})
  assert config == bert.BertConfig(hidden_size=64, num_attention_heads=2, vocab_size=28996,
                                   classifier_dropout=0.3)
  assert config.classifier_dropout_rate == 0.3
  assert bert.BertConfig().classifier_dropout_rate == 0.1  # hidden_dropout_prob
  assert "classifier_dropout" not in bert.BertConfig().kwargs()
  for bad, message in (({"is_decoder": True}, "config.json: is_decoder=true; only BERT "
                        "encoders are implemented"),
                       ([], "config.json: must be a JSON object, got list"),
                       ({"num_hidden_layers": "12"}, "config.json: num_hidden_layers='12': "
                        "must be an integer >= 1")):
    with pytest.raises(ValueError) as error:
      bert.BertConfig.from_hf(bad)
    assert str(error.value) == message


# ------------------------------------------------------------------ inputs, heads, modes


def test_outputs_aux_and_the_attention_mask(sequence_model):
  model, variables = sequence_model
  x = text()
  logits, aux = run(model, variables, x)
  assert logits.shape == (B, 3) and aux["features"].shape == (B, L, 32)
  assert aux["pooled"].shape == aux["pre_logits"].shape == (B, 32)
  np.testing.assert_array_equal(aux["pooled"], aux["pre_logits"])  # eval: no dropout
  np.testing.assert_allclose(aux["pooled"], np.tanh(
      aux["features"][:, 0] @ variables["params"]["pooler"]["kernel"]
      + variables["params"]["pooler"]["bias"]), atol=1e-6)
  assert aux["masked_features"]["attention_mask"] is not None
  # Padded tokens are invisible to the real ones: other ids and types there change no real
  # token's output and no logit ...
  changed = {k: np.array(v) for k, v in x.items()}
  padding = x["attention_mask"] == 0
  changed["input_ids"][padding] = 7
  changed["token_type_ids"][padding] = 1
  logits2, aux2 = run(model, variables, changed)
  real = x["attention_mask"] == 1
  np.testing.assert_allclose(np.asarray(aux2["features"])[real],
                             np.asarray(aux["features"])[real], atol=1e-6)
  np.testing.assert_allclose(logits2, logits, atol=1e-6)
  # ... while a real token and the token types do change them.
  # (The sequence output is O(1); freshly initialised logits are O(0.01).)
  def moved(inputs, row):
    features = np.asarray(run(model, variables, inputs)[1]["features"])[row, 0]
    return float(np.abs(features - np.asarray(aux["features"])[row, 0]).max())
  changed = {k: np.array(v) for k, v in x.items()}
  changed["input_ids"][2, 1] = (x["input_ids"][2, 1] % 49) + 1
  assert moved(changed, 2) > 1e-3  # float32 noise: 1e-6
  assert moved(dict(x, token_type_ids=np.zeros_like(x["token_type_ids"])), 0) > 1e-3
  # Without the mask the padded row 2 reads its padding.
  assert moved(dict(x, attention_mask=np.ones_like(x["attention_mask"])), 2) > 1e-3


def test_bare_ids_are_one_unpadded_segment(sequence_model):
  model, variables = sequence_model
  ids = text()["input_ids"]
  full = {"input_ids": ids, "token_type_ids": np.zeros_like(ids),
          "attention_mask": np.ones_like(ids)}
  np.testing.assert_array_equal(model.apply(variables, ids, train=False)[0],
                                model.apply(variables, full, train=False)[0])


def test_bad_inputs_are_one_line_errors(sequence_model):
  model, variables = sequence_model
  x = text()
  for bad, message in (
      (dict(x, input_ids=x["input_ids"].astype(np.float32)),
       r"^BERT input_ids: must be an integer array \[batch, length\], got float32\[3, 8\]"),
      ({"token_type_ids": x["token_type_ids"]}, r"^BERT input: needs 'input_ids'"),
      (dict(x, attention_mask=x["attention_mask"][:, :4]),
       r"^BERT attention_mask: shape \[3, 4\] differs from input_ids' \[3, 8\]"),
      ({k: np.tile(v, (1, 3)) for k, v in x.items()},
       r"^BERT input: sequence length 24 exceeds max_position_embeddings=16")):
    with pytest.raises(ValueError, match=message):
      model.apply(variables, bad, train=False)


def test_dropout_only_in_training(sequence_model):
  model, variables = sequence_model
  x = text()
  evaluated = run(model, variables, x)[0]
  np.testing.assert_array_equal(run(model, variables, x, rng=5)[0], evaluated)
  trained = run(model, variables, x, train=True, rng=5)[0]
  assert np.abs(np.asarray(trained - evaluated)).max() > 1e-4
  np.testing.assert_array_equal(run(model, variables, x, train=True, rng=5)[0], trained)


def test_qa_head_gives_start_and_end_logits_per_token():
  model = small(head_type="qa")
  x = text()
  variables = model.init(RNGS, x, train=False)
  assert sorted(variables["params"]) == ["embeddings", "head", "layer_0", "layer_1"]
  out, aux = model.apply(variables, x, train=False)
  assert sorted(out) == ["end_logits", "start_logits"]
  assert out["start_logits"].shape == out["end_logits"].shape == (B, L)
  head = variables["params"]["head"]
  both = aux["pre_logits"] @ head["kernel"] + head["bias"]
  np.testing.assert_allclose(out["start_logits"], both[..., 0], atol=1e-6)
  np.testing.assert_allclose(out["end_logits"], both[..., 1], atol=1e-6)


def test_bfloat16_computation_keeps_float32_params(sequence_model):
  model, variables = sequence_model
  model16 = small(num_classes=3, dtype="bfloat16")
  x = text()
  params16 = jax.eval_shape(lambda: model16.init(RNGS, x, train=False))["params"]
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params16))
  logits16, aux16 = model16.apply(variables, x, train=False)
  assert aux16["features"].dtype == jnp.bfloat16
  logits = model.apply(variables, x, train=False)[0]
  scale = float(np.abs(np.asarray(logits)).max())
  assert np.abs(np.asarray(logits16, np.float32) - np.asarray(logits)).max() < 0.05 * scale


# ------------------------------------------------------------------ SPG


@pytest.mark.parametrize("head_type", ["sequence", "qa"])
@pytest.mark.parametrize("kind", ["hpo", "nas"])
def test_spg_replicas_start_as_the_base_model(head_type, kind):
  """Without dropout, every replica step equals the base prediction at initialisation (the
  HPO branches and the NAS layers' output denses start at 0); the NAS layers still get
  gradient, and stripping the replicas gives the base model's variables."""
  base = small(head_type=head_type, num_classes=2, **NO_DROPOUT)
  attachments = models.spg_attachments(base, kind)
  spg = build_spg_model(base, attachments, kind, num_replicas=2, rate=0.0)
  x = text()
  variables = spg.init(RNGS, x, train=False)
  outputs, aux = spg.apply(variables, x, train=True, rngs={"dropout": RNGS["dropout"]})
  steps = step_outputs(outputs, aux, attachments, True)["out"]
  for leaf in jax.tree.leaves(steps):
    assert leaf.shape[:2] == (B, 3)
    np.testing.assert_allclose(leaf[:, 1:], np.repeat(leaf[:, :1], 2, axis=1), atol=1e-5)
  base_out = base.apply({"params": strip_replicas(variables["params"])}, x, train=False)[0]
  for step0, own in zip(jax.tree.leaves(steps), jax.tree.leaves(base_out)):
    np.testing.assert_allclose(step0[:, 0], own, atol=1e-6)
  assert jax.tree.structure(strip_replicas(variables["params"])) == jax.tree.structure(
      jax.eval_shape(lambda: base.init(RNGS, x, train=False))["params"])
  if kind == "nas":
    def loss(params):
      out, _ = spg.apply({"params": params}, x, train=True, rngs={"dropout": RNGS["dropout"]})
      return sum(jnp.sum(jnp.square(leaf[:, -1])) for leaf in jax.tree.leaves(out))
    grads = jax.jit(jax.grad(loss))(variables["params"])
    last = grads["replicas_1"]["BertNASBlock_0"]["layer"]
    assert float(jnp.abs(last["output"]["kernel"]).max()) > 0
    assert float(jnp.abs(last["attention_output"]["kernel"]).max()) > 0


def test_one_engine_step_with_nas_replicas_on_qa(tmp_path):
  """The model through the engine: extractive QA with SPG-NAS (answer positions outside the
  window ignored), one training step, the task's metrics, the base model exported."""
  rng = np.random.default_rng(0)
  def split(n):
    inputs = {k: np.tile(v, (n // B + 1, 1))[:n] for k, v in text(1).items()}
    start = rng.integers(0, 4, n).astype(np.int32)
    start[0] = L  # outside the window: ignored, not an error
    return {**inputs, "start_positions": start, "end_positions": start + 1}
  dataset = data.ArrayDataset("bert_qa_test", {"train": split(16), "validation": split(8),
                                               "test": split(8)}, L, task="extractive_qa")
  config = config_lib.base_config()
  config.model.name = "bert"
  config.model.kwargs = dict(SMALL, head_type="qa")
  config.task.name = "extractive_qa"
  config_lib.quick(config, num_steps=1, batch_size=8)
  config.eval_batch_size = 8
  config.num_devices = 1
  config.progress_bar = False
  config.spg.kind = "nas"
  result = loop.train_and_evaluate(config, str(tmp_path), dataset=dataset)
  assert result.num_steps == 1 and result.selection_metric == "exact_match"
  assert np.isfinite(result.best_val_score) and np.isfinite(result.test_score)
  assert "replicas_0" not in result.best_variables["params"]
  assert sorted(result.best_variables["params"]) == ["embeddings", "head", "layer_0",
                                                     "layer_1"]
