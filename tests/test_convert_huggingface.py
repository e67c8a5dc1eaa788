"""Hugging Face BERT checkpoints -> spg_jax, against golden outputs recorded with transformers.

`experiments/golden/huggingface_bert.py` (run by hand, with torch and transformers) filled
four tiny BERT models with `seeded_state_dict(manifest, seed)` and stored their configs,
manifests, seeds, fixed inputs (padding, two token types) and eval outputs under
tests/golden/huggingface/, with the key/shape manifests of the full-size bert-base-cased and
bert-base-uncased models. Here the same state dicts are regenerated with numpy, written as
Hugging Face model folders (config.json + model.safetensors), converted through
`convert.convert` and run in float32. torch is not needed.
"""
import importlib.util
import json
import pathlib

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from experiments import convert as convert_command
from spg_jax.models import convert
from spg_jax.models.convert import common, seeded
from spg_jax.train import checkpointing

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden" / "huggingface"
TINY = ("bert_model", "sequence_classification", "sequence_regression", "question_answering")
TOLERANCE = 1e-4
# bert-base sizes: encoder + pooler, + a 2-class classifier, QA (no pooler, 2 outputs);
# transformers' own counts (also recorded in the fixture).
PARAMETERS = {
    "bert-base-cased": (108_310_272, 108_311_810, 107_721_218),
    "bert-base-uncased": (109_482_240, 109_483_778, 108_893_186),
}


@pytest.fixture(scope="module")
def golden():
  fixture = json.loads((GOLDEN / "bert.json").read_text())
  with np.load(GOLDEN / "bert.npz") as data:
    arrays = {k: data[k] for k in data.files}
  return fixture, arrays


def one_line(error: pytest.ExceptionInfo) -> str:
  text = str(error.value)
  assert "\n" not in text and text
  return text


def write_folder(directory: pathlib.Path, config: dict, state: dict) -> pathlib.Path:
  """A Hugging Face model folder: config.json + model.safetensors."""
  directory.mkdir(parents=True, exist_ok=True)
  (directory / "config.json").write_text(json.dumps(config))
  save_file(state, str(directory / "model.safetensors"))
  return directory


def tiny_state(golden, name: str) -> dict:
  record = golden[0]["models"][name]
  return seeded.seeded_state_dict(record["manifest"], record["seed"])


def inputs_of(golden) -> dict:
  return {k: np.asarray(v, np.int32) for k, v in golden[0]["inputs"].items()}


def outputs(info, variables, inputs) -> dict:
  """The converted model's eval outputs under transformers' names."""
  with jax.default_matmul_precision("float32"):
    out, aux = info.build().apply(variables, inputs, train=False)
  named = {"last_hidden_state": aux["features"], "pooler_output": aux.get("pooled")}
  named.update(out if isinstance(out, dict) else {"logits": out})
  return named


def max_diffs(got: dict, golden_arrays: dict, name: str, keys) -> dict:
  return {k: float(np.max(np.abs(np.asarray(got[k]) - golden_arrays[f"{name}:{k}"])))
          for k in keys}


# ------------------------------------------------------------------------------------------
# Tiny models: outputs equal transformers'.

@pytest.mark.parametrize("name", TINY)
def test_outputs_match_transformers(golden, name, tmp_path):
  record = golden[0]["models"][name]
  folder = write_folder(tmp_path / name, record["config"], tiny_state(golden, name))
  # BertModel has no task head: the sequence head is initialised fresh (its logits are not
  # compared; the encoder and pooler outputs are).
  options = {"head": "sequence"} if name == "bert_model" else {}
  variables, info = convert.convert("huggingface", "bert", str(folder), **options)
  inputs = inputs_of(golden)
  diffs = max_diffs(outputs(info, variables, inputs), golden[1], name, record["outputs"])
  print(f"{name} max abs diff: {diffs}")
  assert max(diffs.values()) <= TOLERANCE, diffs
  assert np.min(np.asarray(inputs["attention_mask"])) == 0  # the fixture has padding
  # The comparison can fail: layer 0's query kernel transposed (square, so the shapes
  # still fit) moves the outputs far beyond the tolerance.
  wrong = jax.tree.map(np.array, variables)
  query = wrong["params"]["layer_0"]["attention"]["query"]
  query["kernel"] = np.ascontiguousarray(query["kernel"].T)
  wrong_diffs = max_diffs(outputs(info, wrong, inputs), golden[1], name, record["outputs"])
  assert min(wrong_diffs.values()) > 100 * TOLERANCE, wrong_diffs


@pytest.mark.parametrize("name", TINY)
def test_conversion_reads_every_key(golden, name):
  record = golden[0]["models"][name]
  state = tiny_state(golden, name)
  options = {"head": "sequence"} if name == "bert_model" else {}
  variables, info = convert.convert_state_dict("huggingface", "bert", state, record["config"],
                                               **options)
  the_plan = convert.plan("huggingface", "bert", common.shapes_of(state), record["config"],
                          **options)[0]
  assert set(the_plan.used) == set(state) and not the_plan.ignored
  assert info.num_tensors == len(state) and info.num_ignored == 0
  leaves = jax.tree_util.tree_leaves(variables)
  assert len(leaves) == info.num_variables
  assert all(leaf.dtype == np.float32 and leaf.flags.c_contiguous for leaf in leaves)
  if name == "bert_model":  # + the fresh 2-class head on the 32-wide pooled output
    assert info.fresh == ("params/head/bias", "params/head/kernel") and info.seed == 0
    assert info.num_parameters == record["num_parameters"] + 32 * 2 + 2
  else:
    assert info.fresh == () and info.seed is None
    assert info.num_parameters == record["num_parameters"]
  expected = {"sequence_regression": 1, "sequence_classification": 2, "bert_model": 2}
  assert info.num_classes == expected.get(name)
  assert info.model_kwargs["head_type"] == ("qa" if name == "question_answering"
                                            else "sequence")


def test_old_names_buffers_and_pretraining_heads(golden):
  """gamma/beta LayerNorm names, a position_ids buffer and cls.* pretraining heads: the same
  variables, the extra tensors dropped and described."""
  name = "sequence_classification"
  config = golden[0]["models"][name]["config"]
  state = tiny_state(golden, name)
  reference, _ = convert.convert_state_dict("huggingface", "bert", state, config)
  legacy = {}
  for key, value in state.items():
    if ".LayerNorm." in key:
      key = key.replace(".LayerNorm.weight", ".LayerNorm.gamma").replace(
          ".LayerNorm.bias", ".LayerNorm.beta")
    legacy[key] = value
  assert sum(k.endswith(".gamma") for k in legacy) == 1 + 2 * 2
  legacy["bert.embeddings.position_ids"] = np.arange(40, dtype=np.int64)[None]
  legacy["cls.predictions.bias"] = np.zeros(99, np.float32)
  legacy["cls.seq_relationship.weight"] = np.zeros((2, 32), np.float32)
  variables, info = convert.convert_state_dict("huggingface", "bert", legacy, config)
  assert jax.tree.structure(variables) == jax.tree.structure(reference)
  assert jax.tree.all(jax.tree.map(np.array_equal, variables, reference))
  assert info.num_ignored == 3
  assert info.ignored == (("buffers", 1), ("pretraining heads cls.*", 2))
  assert "(3 dropped: buffers 1, pretraining heads cls.* 2)" in info.summary()
  both = dict(legacy, **{"bert.embeddings.LayerNorm.weight": np.ones(32, np.float32)})
  with pytest.raises(ValueError) as error:
    convert.convert_state_dict("huggingface", "bert", both, config)
  assert one_line(error) == (
      "keys 'bert.embeddings.LayerNorm.weight' and 'bert.embeddings.LayerNorm.gamma' are "
      "the same tensor under its current and its legacy name; the file must hold only one")


def test_fresh_head_comes_from_the_seed(golden):
  config = golden[0]["models"]["bert_model"]["config"]
  state = tiny_state(golden, "bert_model")
  def head(seed, **options):
    variables, info = convert.convert_state_dict("huggingface", "bert", state, config,
                                                 seed=seed, **options)
    return variables["params"]["head"], info
  first, info = head(0, head="sequence", num_classes=3)
  again, _ = head(0, head="sequence", num_classes=3)
  other, _ = head(1, head="sequence", num_classes=3)
  assert first["kernel"].shape == (32, 3) and info.num_classes == 3
  np.testing.assert_array_equal(first["kernel"], again["kernel"])
  assert not np.allclose(first["kernel"], other["kernel"])
  np.testing.assert_array_equal(first["bias"], 0)  # Hugging Face's init: N(0, 0.02^2), 0
  assert 0.005 < float(first["kernel"].std()) < 0.05
  qa, info = head(0, head="qa")
  assert qa["kernel"].shape == (32, 2) and info.num_classes is None
  assert info.model_kwargs["head_type"] == "qa"
  assert info.num_ignored == 2 and info.ignored == (("pooler (a QA model has none)", 2),)
  assert "initialised fresh (seed 0): params/head/bias, params/head/kernel" in info.summary()


# ------------------------------------------------------------------------------------------
# Full-size manifests: every key maps.

@pytest.mark.parametrize("checkpoint", sorted(PARAMETERS))
def test_full_size_manifests_map_every_key(golden, checkpoint):
  record = golden[0]["full_size"][checkpoint]
  config, models = record["config"], record["models"]
  encoder, sequence, qa = PARAMETERS[checkpoint]
  assert models["BertModel"]["num_parameters"] == encoder
  assert models["BertForSequenceClassification"]["num_parameters"] == sequence
  assert models["BertForQuestionAnswering"]["num_parameters"] == qa
  fresh_head = 768 * 2 + 2
  # class -> (options, parameters, tensors dropped, fresh leaves)
  cases = {
      "BertModel": ({"head": "sequence"}, sequence, 0, 2),
      "BertForPreTraining": ({"head": "sequence"}, sequence, None, 2),
      "BertForMaskedLM": ({"head": "qa"}, qa, None, 2),  # no pooler: none needed for QA
      "BertForSequenceClassification": ({}, sequence, 0, 0),
      "BertForQuestionAnswering": ({}, qa, 0, 0),
  }
  assert set(cases) == set(models)
  for cls, (options, parameters, dropped, fresh) in cases.items():
    manifest = models[cls]["manifest"]
    shapes = common.shapes_from_manifest(manifest)
    the_plan, _, info = convert.plan("huggingface", "bert", shapes, config, **options)
    pretraining = [k for k, _, _ in manifest if k.startswith("cls.")]
    assert set(the_plan.ignored) == set(pretraining), cls
    assert dropped is None or dropped == len(pretraining) == 0
    assert set(the_plan.used) | set(the_plan.ignored) == set(shapes), cls
    assert len(the_plan.fresh) == fresh, cls
    assert info.num_parameters == parameters, cls
    used = sum(int(np.prod(shapes[k][0])) for k in the_plan.used)
    assert used + (fresh_head if fresh else 0) == parameters, cls
  # A masked-LM checkpoint has no pooler: a sequence model gets a fresh one too.
  manifest = models["BertForMaskedLM"]["manifest"]
  info = convert.check_shapes("huggingface", "bert", common.shapes_from_manifest(manifest),
                              config, head="sequence", num_classes=3)
  assert info.fresh == ("params/head/bias", "params/head/kernel", "params/pooler/bias",
                        "params/pooler/kernel")
  assert info.num_parameters == encoder + 768 * 3 + 3


# ------------------------------------------------------------------------------------------
# One-line errors.

def _drop(key):
  return lambda state: state.pop(key)


def _add(key, shape):
  return lambda state: state.__setitem__(key, np.zeros(shape, np.float32))


@pytest.mark.parametrize("name, change, message", [
    ("sequence_classification", _drop("bert.encoder.layer.1.output.dense.weight"),
     "missing key 'bert.encoder.layer.1.output.dense.weight' (expected shape (32, 37), for "
     "Flax leaf params/layer_1/output/kernel (37, 32)) in the weights file for bert("),
    ("bert_model", _drop("encoder.layer.0.attention.self.key.bias"),  # no prefix: named so
     "missing key 'encoder.layer.0.attention.self.key.bias' (expected shape (32,), for Flax "
     "leaf params/layer_0/attention/key/bias (32,))"),
    ("sequence_classification", _drop("classifier.bias"),  # a head in part: not fresh
     "missing key 'classifier.bias' (expected shape (2,), for Flax leaf params/head/bias (2,))"),
    ("question_answering", _add("bert.encoder.layer.2.output.dense.weight", (32, 37)),
     "unexpected key 'bert.encoder.layer.2.output.dense.weight' (32, 37) in the weights "
     "file: no Flax leaf of bert("),
    ("question_answering", _add("bert.encoder.layer.0.output.dense.weight", (32, 36)),
     "key 'bert.encoder.layer.0.output.dense.weight': shape (32, 36) in the file, expected "
     "(32, 37) (for Flax leaf params/layer_0/output/kernel (37, 32) of bert("),
    ("sequence_classification", _add("embeddings.word_embeddings.weight", (99, 32)),
     "the weights file mixes encoder keys with the 'bert.' prefix ('bert.embeddings."),
    ("sequence_classification", _add("qa_outputs.weight", (2, 32)),
     "the weights file has both a sequence head ('classifier.*') and a QA head"),
], ids=["missing", "missing_bare", "partial_head", "extra", "shape", "mixed_prefix",
        "two_heads"])
def test_bad_state_dicts(golden, name, change, message):
  state = tiny_state(golden, name)
  change(state)
  options = {"head": "sequence"} if name == "bert_model" else {}
  with pytest.raises(ValueError) as error:
    convert.convert_state_dict("huggingface", "bert", state,
                               golden[0]["models"][name]["config"], **options)
  assert one_line(error).startswith(message), one_line(error)


@pytest.mark.parametrize("name, config_change, options, message", [
    ("sequence_classification", {"hidden_act": "relu"}, {},
     "config.json: hidden_act='relu': must be one of ['gelu']"),
    ("sequence_classification", {"position_embedding_type": "relative_key"}, {},
     "config.json: position_embedding_type='relative_key'; only 'absolute' is implemented"),
    ("sequence_classification", {"model_type": "roberta"}, {},
     "config.json: model_type='roberta'; this model reads 'bert'"),
    ("sequence_classification", {"num_attention_heads": 5}, {},
     "config.json: hidden_size=32: must be a multiple of num_attention_heads=5"),
    ("sequence_classification", {"intermediate_size": 36}, {},
     "key 'bert.encoder.layer.0.intermediate.dense.bias': shape (37,) in the file, expected "
     "(36,) (for Flax leaf params/layer_0/intermediate/bias (36,) of bert("),
    ("sequence_classification", {}, {"head": "qa"},
     "head='qa': the weights file has a 'sequence' head ('classifier.*')"),
    ("sequence_classification", {}, {"num_classes": 3},
     "key 'classifier.bias': shape (2,) in the file, expected (3,) (for Flax leaf "
     "params/head/bias (3,)"),
    ("bert_model", {}, {},
     "the weights file has no task head (no 'classifier.*' or 'qa_outputs.*' keys; "
     "config.json architectures=['BertModel']); choose the head to initialise"),
    ("bert_model", {}, {"head": "token"}, "head='token': must be one of ['sequence', 'qa']"),
    ("question_answering", {}, {"num_classes": 2},
     "num_classes=2: only for head='sequence'"),
    ("bert_model", {}, {"head": "sequence", "num_classes": 0},
     "num_classes=0: must be an integer >= 1"),
    ("bert_model", {}, {"head": "sequence", "seed": -1}, "seed=-1: must be an integer >= 0"),
    ("bert_model", {}, {"size": "base"},
     "size='base': not an option of the huggingface bert converter; allowed: head, "
     "num_classes, seed"),
], ids=["hidden_act", "relative_positions", "model_type", "heads", "config_sizes",
        "head_mismatch", "num_classes_mismatch", "no_head", "bad_head", "qa_num_classes",
        "zero_classes", "bad_seed", "unknown_option"])
def test_bad_configs_and_options(golden, name, config_change, options, message):
  record = golden[0]["models"][name]
  config = dict(record["config"], **config_change)
  with pytest.raises(ValueError) as error:
    convert.convert_state_dict("huggingface", "bert", tiny_state(golden, name), config,
                               **options)
  assert one_line(error).startswith(message), one_line(error)


def test_options_of_other_sources_are_refused():
  with pytest.raises(ValueError) as error:
    convert.check_shapes("torchvision", "resnet18", {}, head="qa")
  assert one_line(error) == ("head='qa': not an option of the torchvision resnet18 "
                             "converter; allowed: none")
  with pytest.raises(ValueError, match=r"^config: the torchvision resnet18 converter reads "
                     r"no config file"):
    convert.check_shapes("torchvision", "resnet18", {}, {"model_type": "bert"})
  with pytest.raises(ValueError, match=r"^config: the huggingface bert converter needs the "
                     r"contents of the model's config.json"):
    convert.check_shapes("huggingface", "bert", {})


def test_bad_folders(golden, tmp_path):
  record = golden[0]["models"]["question_answering"]
  def error_of(path):
    with pytest.raises(ValueError) as error:
      convert.convert("huggingface", "bert", str(path))
    return one_line(error)
  assert error_of(tmp_path / "absent").startswith(
      f"weights={str(tmp_path / 'absent')!r}: no such folder or file")
  empty = tmp_path / "empty"
  empty.mkdir()
  assert error_of(empty) == (f"weights={str(empty)!r}: no config.json in {empty} (a Hugging "
                             "Face model folder holds config.json and model.safetensors or "
                             "pytorch_model.bin)")
  (empty / "config.json").write_text(json.dumps(record["config"]))
  assert error_of(empty) == (f"weights={str(empty)!r}: no model.safetensors or "
                             f"pytorch_model.bin in {empty}")
  (empty / "model.safetensors.index.json").write_text("{}")
  assert "is a sharded checkpoint, which is not supported" in error_of(empty)
  (empty / "config.json").write_text("{not json")
  assert error_of(empty).startswith(f"{empty / 'config.json'}: not a readable JSON file")
  # pytorch_model.bin is read only with torch (weights_only=True); never unpickled here.
  (empty / "config.json").write_text(json.dumps(record["config"]))
  (empty / "pytorch_model.bin").write_bytes(b"never unpickled")
  text = error_of(empty)
  if importlib.util.find_spec("torch") is None:
    assert text.startswith(f"weights={str(empty / 'pytorch_model.bin')!r}: reading a torch "
                           "file needs torch, which is not installed")
  else:
    assert "torch.load(weights_only=True) failed" in text


def test_weights_file_inside_a_folder(golden, tmp_path):
  record = golden[0]["models"]["question_answering"]
  folder = write_folder(tmp_path / "qa", record["config"],
                        tiny_state(golden, "question_answering"))
  from_file, _ = convert.convert("huggingface", "bert", str(folder / "model.safetensors"))
  from_folder, _ = convert.convert("huggingface", "bert", str(folder))
  assert jax.tree.all(jax.tree.map(np.array_equal, from_file, from_folder))


# ------------------------------------------------------------------------------------------
# The command.

def test_command_exports_a_folder_and_reports_the_fresh_head(golden, tmp_path, capsys):
  record = golden[0]["models"]["bert_model"]
  folder = write_folder(tmp_path / "bert", record["config"], tiny_state(golden, "bert_model"))
  out = tmp_path / "exports" / "bert_qa"
  status = convert_command.main(["--source=huggingface", "--model=bert",
                                 f"--weights={folder}", f"--out={out}", "--head=qa",
                                 "--seed=3"])
  captured = capsys.readouterr()
  assert status == 0, captured.err
  lines = captured.out.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"wrote {out}: huggingface bert -> "
                                                 "spg_jax.models.get('bert', ")
  assert "head_type='qa'" in lines[0] and "39 tensors (2 dropped: pooler (a QA model has none) 2)" in lines[0]
  assert lines[0].endswith("initialised fresh (seed 3): params/head/bias, params/head/kernel")
  exported = checkpointing.load_exported(str(out))
  direct, info = convert.convert("huggingface", "bert", str(folder), head="qa", seed=3)
  assert set(exported) == {"params"}
  assert jax.tree.structure(exported) == jax.tree.structure(direct)
  assert jax.tree.all(jax.tree.map(np.array_equal, exported, direct))
  got = outputs(info, exported, inputs_of(golden))
  diffs = max_diffs(got, golden[1], "bert_model", ["last_hidden_state"])
  assert diffs["last_hidden_state"] <= TOLERANCE


@pytest.mark.parametrize("args, message", [
    (("--head=qa",), "error: head='qa': the weights file has a 'sequence' head"),
    (("--num_classes=two",), "error: argument --num_classes: invalid int value: 'two'"),
    (("--source=torchvision", "--model=resnet18", "--head=qa"),  # the last --model counts
     "error: head='qa': not an option of the torchvision resnet18 converter; allowed: none"),
], ids=["head_mismatch", "bad_int", "torchvision_option"])
def test_command_errors_exit_2_and_write_nothing(golden, tmp_path, capsys, args, message):
  record = golden[0]["models"]["sequence_classification"]
  folder = write_folder(tmp_path / "bert", record["config"],
                        tiny_state(golden, "sequence_classification"))
  out = tmp_path / "out"
  argv = ["--source=huggingface", "--model=bert", f"--weights={folder}", f"--out={out}"]
  status = convert_command.main(argv + list(args))
  captured = capsys.readouterr()
  assert status == 2 and captured.out == ""
  lines = captured.err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(message), lines
  assert not out.exists()
