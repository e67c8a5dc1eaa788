"""wav2vec2 from Hugging Face checkpoints, against golden outputs recorded with transformers.

`experiments/golden/huggingface_wav2vec2.py` (run by hand, with torch and transformers)
filled tiny base-style (GroupNorm, post-LN) and large-style (LayerNorm convs, pre-LN)
`Wav2Vec2ForSequenceClassification` and `Wav2Vec2ForCTC` models with `seeded_state_dict(
manifest, seed)` and stored their logits on zero-padded waveforms with attention masks, plus
the key/shape manifests of full-size wav2vec2-base. Here the same tensors are regenerated
with numpy, converted and run in float32; torch is not needed.
"""
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from experiments import convert as convert_command
from spg_jax import models, spg_model
from spg_jax.models import convert, wav2vec2
from spg_jax.models.convert import seeded
from spg_jax.train import checkpointing

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden" / "huggingface"
TINY = ("base_sequence", "base_sequence_nomask", "base_ctc", "large_sequence", "large_ctc")
TOLERANCE = 1e-4
OLD_G, OLD_V = "encoder.pos_conv_embed.conv.weight_g", "encoder.pos_conv_embed.conv.weight_v"
NEW_G = "encoder.pos_conv_embed.conv.parametrizations.weight.original0"
NEW_V = "encoder.pos_conv_embed.conv.parametrizations.weight.original1"


@pytest.fixture(scope="module")
def golden():
  fixture = json.loads((GOLDEN / "wav2vec2.json").read_text())
  with np.load(GOLDEN / "wav2vec2.npz") as data:
    arrays = {k: data[k] for k in data.files}
  return fixture, arrays


def inputs_of(fixture, with_mask: bool = True) -> dict:
  spec = fixture["inputs"]
  values = seeded.seeded_input(spec["seed"], spec["shape"])
  mask = (np.arange(spec["shape"][1])[None] < np.asarray(spec["valid"])[:, None])
  out = {"input_values": (values * mask).astype(np.float32)}
  if with_mask:
    out["attention_mask"] = mask.astype(np.int32)
  return out


def write_folder(directory: pathlib.Path, config: dict, state: dict) -> pathlib.Path:
  directory.mkdir(parents=True, exist_ok=True)
  (directory / "config.json").write_text(json.dumps(config))
  save_file(state, str(directory / "model.safetensors"))
  return directory


def logits_of(info, variables, x):
  with jax.default_matmul_precision("float32"):
    return np.asarray(info.build().apply(variables, x, train=False)[0])


@pytest.mark.parametrize("name", TINY)
def test_golden_logits_with_padding(golden, name):
  fixture, arrays = golden
  record = fixture["models"][name]
  state = seeded.seeded_state_dict(record["manifest"], record["seed"])
  variables, info = convert.convert_state_dict("huggingface", "wav2vec2", state,
                                               record["config"])
  assert info.model_kwargs["head_type"] == ("ctc" if "ctc" in name else "sequence")
  # transformers' count includes masked_spec_embed [hidden] (SpecAugment; dropped here).
  assert info.num_parameters == record["num_parameters"] - record["config"]["hidden_size"]
  assert info.num_ignored == 1
  got = logits_of(info, variables, inputs_of(fixture, record["attention_mask"]))
  want = arrays[f"{name}:logits"]
  assert got.shape == want.shape
  diff = float(np.max(np.abs(got - want)))
  print(f"{name}: max abs diff {diff:.2e} (torch fp32 vs fp64 {record['fp32_error']:.1e})")
  assert diff < TOLERANCE, (name, diff, record["fp32_error"])


def test_old_weight_norm_names_and_bare_model_keys(golden):
  """`weight_g`/`weight_v` (older files) read like the parametrization names; a saved
  `Wav2Vec2Model` has no `wav2vec2.` prefix; a file with both names is refused."""
  fixture, arrays = golden
  record = fixture["models"]["large_ctc"]
  state = seeded.seeded_state_dict(record["manifest"], record["seed"])
  old = {k.replace(NEW_G, OLD_G).replace(NEW_V, OLD_V): v for k, v in state.items()}
  assert "wav2vec2." + OLD_G in old and "wav2vec2." + NEW_G not in old
  variables, info = convert.convert_state_dict("huggingface", "wav2vec2", old,
                                               record["config"])
  got = logits_of(info, variables, inputs_of(fixture))
  assert float(np.max(np.abs(got - arrays["large_ctc:logits"]))) < TOLERANCE
  both = {**state, "wav2vec2." + OLD_G: state["wav2vec2." + NEW_G]}
  with pytest.raises(ValueError, match="weight_g|original0"):
    convert.convert_state_dict("huggingface", "wav2vec2", both, record["config"])
  bare = {k[len("wav2vec2."):]: v for k, v in state.items() if k.startswith("wav2vec2.")}
  _, info = convert.convert_state_dict("huggingface", "wav2vec2", bare, record["config"],
                                       head="ctc")
  assert info.fresh == ("params/head/bias", "params/head/kernel")


def test_full_size_manifests_map_every_key(golden):
  """wav2vec2-base as published (pretraining heads), with the SUPERB KS head and CTC."""
  full = golden[0]["full_size"]["models"]
  shapes = {cls: convert.common.shapes_from_manifest(m["manifest"]) for cls, m in full.items()}
  pre = full["Wav2Vec2ForPreTraining"]
  info = convert.check_shapes("huggingface", "wav2vec2", shapes["Wav2Vec2ForPreTraining"],
                              pre["config"], head="sequence", num_classes=12)
  # quantizer (codevectors, weight_proj: 3), project_hid (2), project_q (2) and
  # masked_spec_embed are dropped; the head (projector + classifier) is fresh.
  assert info.num_ignored == 8
  assert len(info.fresh) == 4
  seq = full["Wav2Vec2ForSequenceClassification"]
  info = convert.check_shapes("huggingface", "wav2vec2",
                              shapes["Wav2Vec2ForSequenceClassification"], seq["config"])
  # transformers' counts include masked_spec_embed (768), dropped here.
  assert info.num_parameters == seq["num_parameters"] - 768 == 94_570_892
  assert info.num_classes == 12 and not info.fresh
  ctc = full["Wav2Vec2ForCTC"]
  info = convert.check_shapes("huggingface", "wav2vec2", shapes["Wav2Vec2ForCTC"],
                              ctc["config"])
  assert info.num_parameters == ctc["num_parameters"] - 768 == 94_395_552
  assert info.model_kwargs["head_type"] == "ctc" and info.model_kwargs["vocab_size"] == 32
  registry = models.get("wav2vec2_base", num_classes=12)
  assert registry.config == wav2vec2.Wav2Vec2Config.from_hf(seq["config"])


def test_folder_round_trip_and_command(golden, tmp_path):
  """A tiny Hugging Face folder -> experiments/convert.py -> export -> same logits."""
  fixture, arrays = golden
  record = fixture["models"]["base_sequence"]
  state = seeded.seeded_state_dict(record["manifest"], record["seed"])
  folder = write_folder(tmp_path / "hf", record["config"], state)
  out = tmp_path / "export"
  code = convert_command.main(["--source=huggingface", "--model=wav2vec2",
                               f"--weights={folder}", f"--out={out}"])
  assert code == 0
  variables = checkpointing.load_exported(str(out))
  model = models.get("wav2vec2", **{k: v for k, v in wav2vec2.Wav2Vec2Config.from_hf(
      record["config"]).kwargs().items()}, head_type="sequence", num_classes=3)
  with jax.default_matmul_precision("float32"):
    got = np.asarray(model.apply(variables, inputs_of(fixture), train=False)[0])
  assert float(np.max(np.abs(got - arrays["base_sequence:logits"]))) < TOLERANCE
  # A pretrained checkpoint (no projector / classifier): --head starts a fresh one.
  headless = {k: v for k, v in state.items() if not k.startswith(("projector.", "classifier."))}
  pretrained = write_folder(tmp_path / "pretrained", {**record["config"], "architectures": [
      "Wav2Vec2ForPreTraining"]}, headless)
  assert convert_command.main(["--source=huggingface", "--model=wav2vec2",
                               f"--weights={pretrained}", f"--out={tmp_path / 'ks'}",
                               "--head=sequence", "--num_classes=12"]) == 0
  fresh = checkpointing.load_exported(str(tmp_path / "ks"))["params"]
  assert fresh["head"]["kernel"].shape == (16, 12)  # classifier_proj_size -> 12 labels
  assert convert_command.main(["--source=huggingface", "--model=wav2vec2",
                               f"--weights={pretrained}", f"--out={tmp_path / 'none'}"]) == 2
  bad = write_folder(tmp_path / "bad", {**record["config"], "feat_extract_norm": "batch"},
                     state)
  with pytest.raises(ValueError, match="feat_extract_norm='batch'"):
    convert.convert("huggingface", "wav2vec2", str(bad))


@pytest.fixture(scope="module")
def tiny_batch():
  rng = np.random.default_rng(0)
  values = rng.normal(size=(2, 1600)).astype(np.float32)
  mask = np.ones((2, 1600), np.int32)
  mask[1, 1000:] = 0
  return {"input_values": jnp.asarray(values * mask), "attention_mask": jnp.asarray(mask)}


@pytest.mark.parametrize("head_type,kind", [("sequence", "hpo"), ("ctc", "nas")])
def test_spg_attachments(tiny_batch, head_type, kind):
  """HPO replicas per frame, NAS blocks identity at init; the shared head pools (sequence)
  or reads every frame (CTC); padding does not leak into the sequence logits."""
  model = models.get("wav2vec2_tiny", head_type=head_type, num_classes=3, vocab_size=7)
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  base_vars = jax.jit(lambda k: model.init(k, tiny_batch, train=False))(jax.random.key(0))
  base_out, aux = apply(base_vars, tiny_batch)
  frames = aux["frame_mask"].shape[1]
  assert aux["frame_mask"].sum(1).tolist() == [frames, int(wav2vec2.feat_extract_output_lengths(
      jnp.asarray(1000), model.config))]
  np.testing.assert_array_equal(aux["logit_paddings"], 1 - aux["frame_mask"])
  spg = spg_model.build_spg_model(model, model.spg_attachments(kind), kind, 2)
  variables = jax.jit(lambda k: spg.init(k, tiny_batch, train=False))(jax.random.key(1))
  assert (jax.tree.structure(variables["params"]["base"])
          == jax.tree.structure(base_vars["params"]))
  steps, _ = jax.jit(lambda v: spg.apply(v, tiny_batch, train=True, rngs={
      "dropout": jax.random.key(2)}))(variables)
  assert steps.shape == ((2, 3, 3) if head_type == "sequence" else (2, 3, frames, 7))
  # A NAS block is the identity at initialisation (its output projections start at 0).
  block = wav2vec2.Wav2Vec2NASBlock(model.config)
  masked = aux["masked_features"]
  block_vars = block.init(jax.random.key(3), masked, train=False)
  np.testing.assert_allclose(block.apply(block_vars, masked, train=False)["hidden_states"],
                             masked["hidden_states"], atol=1e-6)
  if head_type == "sequence":
    # Changing the padded samples changes nothing... except through the group norm, which
    # (as in Hugging Face) sees every sample; zero padding is the convention.
    other = {**tiny_batch, "input_values": tiny_batch["input_values"].at[1, 1000:].set(0.0)}
    np.testing.assert_allclose(apply(base_vars, other)[0], base_out,
                               atol=1e-6)


def test_bad_config_and_inputs_are_one_line_errors():
  with pytest.raises(ValueError, match=r"^head_type='lm': must be one of"):
    wav2vec2.wav2vec2("tiny", head_type="lm")
  with pytest.raises(ValueError, match=r"^num_conv_pos_embedding_groups=0"):
    wav2vec2.wav2vec2("tiny", num_conv_pos_embedding_groups=0)
  with pytest.raises(ValueError, match="use_weighted_layer_sum"):
    wav2vec2.Wav2Vec2Config.from_hf({"use_weighted_layer_sum": True})
  with pytest.raises(ValueError, match="input_values"):
    wav2vec2.audio_inputs({"audio": np.zeros((1, 10))})
