r"""Golden outputs of Hugging Face BERT models for `tests/test_convert_huggingface.py` (run by
hand).

Needs torch and transformers, not jax; the tests need neither torch nor this script. Run from
the repository root, e.g. with the reference environment:

  /work/torchenv/bin/python experiments/golden/huggingface_bert.py

For each of four tiny random configurations (2 layers, hidden 32, 4 heads, intermediate 37,
vocabulary 99, 40 positions) it builds the transformers module (`BertModel`,
`BertForSequenceClassification` with 2 labels and with num_labels=1 (regression),
`BertForQuestionAnswering`), takes its state-dict manifest (key, shape, dtype of every
tensor), fills every tensor with `spg_jax.models.convert.seeded.seeded_state_dict(manifest,
seed)`, loads it and records, in eval mode, the outputs on fixed inputs WITH padding in the
attention mask and two token types per row (`last_hidden_state` and `pooler_output` for
`BertModel`; `logits`; `start_logits` and `end_logits`), plus how far torch's float32
outputs are from the same model's in float64 (`fp32_error`). The config (`config.json`
contents, with `architectures`) and the inputs are stored with them.

It also records the key/shape manifests and parameter counts of the full-size models of
bert-base-cased (vocabulary 28996) and bert-base-uncased (30522), built from `BertConfig()`
defaults on torch's meta device (nothing is downloaded or allocated): `BertModel`,
`BertForPreTraining`, `BertForMaskedLM`, `BertForSequenceClassification` (2 labels) and
`BertForQuestionAnswering`.

Files: `tests/golden/huggingface/bert.json` (versions, seeds, configs, inputs, manifests,
counts) and `bert.npz` (outputs only; no weights).

Tokenisation (`tokenize.json`): transformers' `BertTokenizerFast` on two tiny vocabularies
written here (an uncased one and a cased one with accented pieces), on sentences and pairs
(`max_length=16`, truncation, padding) and on SQuAD-style examples through the
preprocessing of transformers' `examples/pytorch/question-answering/run_qa.py`
(`prepare_train_features` / `prepare_validation_features`, copied below) with
`max_length=24`, `doc_stride=6`: input ids, token types, masks, offsets, the window ->
example mapping and the answer positions.
"""
import importlib.util
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np
import torch
import transformers
from transformers import (BertConfig, BertForMaskedLM, BertForPreTraining,
                          BertForQuestionAnswering, BertForSequenceClassification, BertModel)

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "golden" / "huggingface"


def _load_by_path(name: str, relative: str):
  """A module of spg_jax loaded from its file, so that neither jax nor flax is imported."""
  spec = importlib.util.spec_from_file_location(name, ROOT / relative)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


seeded = _load_by_path("spg_jax_seeded", "spg_jax/models/convert/seeded.py")

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, max_position_embeddings=40, type_vocab_size=2)

# name -> (transformers class, extra config fields, seed)
MODELS = {
    "bert_model": (BertModel, {}, 11),
    "sequence_classification": (BertForSequenceClassification, {"num_labels": 2}, 12),
    "sequence_regression": (BertForSequenceClassification,
                            {"num_labels": 1, "problem_type": "regression"}, 13),
    "question_answering": (BertForQuestionAnswering, {}, 14),
}

FULL_SIZE = {"bert-base-cased": 28996, "bert-base-uncased": 30522}
FULL_CLASSES = (BertModel, BertForPreTraining, BertForMaskedLM, BertForSequenceClassification,
                BertForQuestionAnswering)

BATCH, LENGTH = 3, 12
VALID = (12, 9, 5)  # real tokens per row; the rest is padding (mask 0, id 0)
SEGMENT_A = (6, 4, 2)  # token type 0 for the first tokens, 1 for the other real ones


def fixed_inputs() -> dict:
  """int64 [3, 12] input_ids, token_type_ids, attention_mask: padding and two segments."""
  rng = np.random.default_rng(2024)
  ids = rng.integers(1, TINY["vocab_size"], (BATCH, LENGTH))
  mask = np.zeros((BATCH, LENGTH), np.int64)
  types = np.zeros((BATCH, LENGTH), np.int64)
  for row, (valid, first) in enumerate(zip(VALID, SEGMENT_A)):
    mask[row, :valid] = 1
    types[row, first:valid] = 1
  return {"input_ids": (ids * mask).astype(np.int64), "token_type_ids": types,
          "attention_mask": mask}


def manifest_of(module: torch.nn.Module) -> list:
  return [[key, list(value.shape), str(value.dtype).replace("torch.", "")]
          for key, value in module.state_dict().items()]


def config_dict(config: BertConfig) -> dict:
  """What `save_pretrained` writes to config.json (every field)."""
  return json.loads(config.to_json_string(use_diff=False))


def _outputs(result) -> dict:
  names = ("last_hidden_state", "pooler_output", "logits", "start_logits", "end_logits")
  return {n: getattr(result, n).detach().numpy() for n in names
          if getattr(result, n, None) is not None}


def _run(model: torch.nn.Module, inputs: dict, dtype=torch.float32) -> dict:
  model = model.to(dtype).eval()
  with torch.no_grad():
    return _outputs(model(**{k: torch.from_numpy(v) for k, v in inputs.items()}))


def record_tiny(name: str, inputs: dict, arrays: dict) -> dict:
  cls, extra, seed = MODELS[name]
  config = BertConfig(**TINY, **extra)
  config.architectures = [cls.__name__]
  torch.manual_seed(0)  # nothing random survives load_state_dict; fixed all the same
  model = cls(config)
  manifest = manifest_of(model)
  state = seeded.seeded_state_dict(manifest, seed)
  model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
  out = _run(model, inputs)
  out64 = _run(model, inputs, torch.float64)
  arrays.update({f"{name}:{k}": v for k, v in out.items()})
  return {"class": cls.__name__, "seed": seed, "config": config_dict(config),
          "attn_implementation": model.config._attn_implementation,  # pylint: disable=protected-access
          "outputs": sorted(out), "manifest": manifest,
          "num_parameters": sum(p.numel() for p in model.parameters()),
          "fp32_error": max(float(np.max(np.abs(out[k].astype(np.float64) - out64[k])))
                            for k in out),
          "output_range": max(float(np.max(np.abs(v))) for v in out.values())}


def record_full_size() -> dict:
  """{checkpoint: {"config": ..., "models": {class: {manifest, num_parameters}}}}."""
  full = {}
  for checkpoint, vocab_size in FULL_SIZE.items():
    config = BertConfig(vocab_size=vocab_size)
    models = {}
    for cls in FULL_CLASSES:
      with torch.device("meta"):  # shapes only: nothing allocated, nothing downloaded
        model = cls(config)
      models[cls.__name__] = {"manifest": manifest_of(model),
                              "num_parameters": sum(p.numel() for p in model.parameters())}
    full[checkpoint] = {"config": config_dict(config), "models": models}
  return full


# ------------------------------------------------------------------------- tokenisation
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "cat", "##s", "sat", "on", "mat", ".", ",", "?", "!", "'", "-", "dog", "run",
         "##ning", "where", "did", "who", "what", "is", "a", "in", "paris", "cafe", "naive",
         "##ly", "quick", "brown", "fox", "jump", "##ed", "over", "lazy", "1", "2", "##0",
         "year", "city", "capital", "of", "france", "river", "seine", "flows", "through",
         "north", "##ern", "built", "bridge", "old", "##est", "when", "was"]
CASED_EXTRA = ["The", "Paris", "France", "Seine", "Café", "naïve", "Where", "Who", "What",
               "When", "Pont", "Neuf", "##euf"]
VOCABULARIES = {"uncased": SPECIAL + WORDS, "cased": SPECIAL + WORDS + CASED_EXTRA}
SENTENCES = ["The cats sat on the mat.", "Where did the  dog run?", "A naïve Café, in Paris!",
             "The quick brown fox jumped over the lazy dog in 2020.", "Zebra xylophone?"]
PAIRS = ["the dog is running", "Who sat on the mat?", "France", "the seine flows", ""]
CONTEXT = ("Paris is the capital of France. The Seine flows through the city, and the "
           "oldest bridge over the river is the Pont Neuf, built in 1 year. The lazy dog "
           "sat on the mat in the northern city. When was the bridge built? In 2020, a "
           "quick brown fox jumped over the lazy dog.")
QUESTIONS = ["What is the capital of France?", "   Where did the dog sit?",
             "What flows through the city?", "Who jumped over the lazy dog?",
             "When was the oldest bridge built?", "Who sat?"]
# The last answer is the last context token of its second window (max_length 24, stride 6),
# where run_qa.py's start loop runs past the context (its own "edge case" comment).
ANSWERS = ["Paris", "on the mat", "The Seine", "a quick brown fox", "in 1 year", "1"]


def prepare_train_features(tokenizer, examples, max_seq_length, doc_stride):
  """run_qa.py's prepare_train_features (pad_on_right, pad_to_max_length), verbatim in
  logic."""
  examples["question"] = [q.lstrip() for q in examples["question"]]
  tokenized = tokenizer(examples["question"], examples["context"], truncation="only_second",
                        max_length=max_seq_length, stride=doc_stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True,
                        padding="max_length")
  sample_mapping = tokenized.pop("overflow_to_sample_mapping")
  offset_mapping = tokenized.pop("offset_mapping")
  tokenized["start_positions"], tokenized["end_positions"] = [], []
  for i, offsets in enumerate(offset_mapping):
    input_ids = tokenized["input_ids"][i]
    cls_index = input_ids.index(tokenizer.cls_token_id)
    sequence_ids = tokenized.sequence_ids(i)
    answers = examples["answers"][sample_mapping[i]]
    start_char = answers["answer_start"][0]
    end_char = start_char + len(answers["text"][0])
    token_start_index = 0
    while sequence_ids[token_start_index] != 1:
      token_start_index += 1
    token_end_index = len(input_ids) - 1
    while sequence_ids[token_end_index] != 1:
      token_end_index -= 1
    if not (offsets[token_start_index][0] <= start_char
            and offsets[token_end_index][1] >= end_char):
      tokenized["start_positions"].append(cls_index)
      tokenized["end_positions"].append(cls_index)
    else:
      while token_start_index < len(offsets) and offsets[token_start_index][0] <= start_char:
        token_start_index += 1
      tokenized["start_positions"].append(token_start_index - 1)
      while offsets[token_end_index][1] >= end_char:
        token_end_index -= 1
      tokenized["end_positions"].append(token_end_index + 1)
  return tokenized, sample_mapping, offset_mapping


def record_tokenize(tmp: pathlib.Path) -> dict:
  out = {"vocabularies": VOCABULARIES, "sentences": SENTENCES, "pairs": PAIRS,
         "context": CONTEXT, "questions": QUESTIONS,
         "answers": [[CONTEXT.index(a), a] for a in ANSWERS], "encode_max_length": 16,
         "squad_max_length": 24, "squad_stride": 6, "cases": {}}
  for name, vocab in VOCABULARIES.items():
    folder = tmp / name
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # A folder with a vocab.txt, as a user's snapshot (transformers 5's constructor takes
    # the vocabulary itself, not a file).
    tokenizer = transformers.BertTokenizerFast.from_pretrained(
        str(folder), do_lower_case=name == "uncased")
    assert tokenizer.get_vocab() == {t: i for i, t in enumerate(vocab)}, name
    singles = tokenizer(SENTENCES, max_length=16, truncation=True, padding="max_length")
    pairs = tokenizer(SENTENCES, PAIRS, max_length=16, truncation=True, padding="max_length")
    examples = {"question": list(QUESTIONS), "context": [CONTEXT] * len(QUESTIONS),
                "answers": [{"answer_start": [CONTEXT.index(a)], "text": [a]}
                            for a in ANSWERS]}
    train, mapping, offsets = prepare_train_features(tokenizer, examples, 24, 6)
    windows = []
    for i, window_offsets in enumerate(offsets):
      context = [s == 1 for s in train.sequence_ids(i)]
      windows.append([list(o) if c else [-1, -1] for o, c in zip(window_offsets, context)])
    fields = ("input_ids", "token_type_ids", "attention_mask")
    out["cases"][name] = {
        "tokens": [tokenizer.convert_ids_to_tokens(ids) for ids in singles["input_ids"]],
        "single": {k: singles[k] for k in fields}, "pair": {k: pairs[k] for k in fields},
        "squad": {**{k: train[k] for k in fields}, "offsets": windows,
                  "example_index": list(mapping), "start_positions": train["start_positions"],
                  "end_positions": train["end_positions"]}}
  return out


def main() -> None:
  torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
  start = time.time()
  inputs = fixed_inputs()
  arrays = {}
  tiny = {name: record_tiny(name, inputs, arrays) for name in MODELS}
  fixture = {
      "torch": torch.__version__, "transformers": transformers.__version__,
      "numpy": np.__version__, "python": platform.python_version(),
      "inputs": {k: v.tolist() for k, v in inputs.items()},
      "models": tiny, "full_size": record_full_size()}
  OUT.mkdir(parents=True, exist_ok=True)
  (OUT / "bert.json").write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
  np.savez_compressed(OUT / "bert.npz", **arrays)
  with tempfile.TemporaryDirectory() as tmp:
    tokenize = record_tokenize(pathlib.Path(tmp))
  (OUT / "tokenize.json").write_text(json.dumps(tokenize, separators=(",", ":")) + "\n")
  for name, case in tokenize["cases"].items():
    squad = case["squad"]
    print(json.dumps({name: {"tokens": case["tokens"][2], "windows": len(squad["input_ids"]),
                             "start_positions": squad["start_positions"]}}))
  for name, record in tiny.items():
    print(json.dumps({"model": name, "class": record["class"],
                      "num_parameters": record["num_parameters"],
                      "fp32_error": record["fp32_error"],
                      "output_range": record["output_range"],
                      "attn_implementation": record["attn_implementation"]}))
  for checkpoint, record in fixture["full_size"].items():
    print(json.dumps({checkpoint: {cls: (len(m["manifest"]), m["num_parameters"])
                                   for cls, m in record["models"].items()}}))
  print(f"total {time.time() - start:.1f} s (torch {torch.__version__}, transformers "
        f"{transformers.__version__}); json {(OUT / 'bert.json').stat().st_size // 1024} kB, "
        f"npz {(OUT / 'bert.npz').stat().st_size // 1024} kB")


if __name__ == "__main__":
  if len(sys.argv) > 1:
    sys.exit(f"error: no arguments expected, got {sys.argv[1:]}")
  main()
