r"""Golden outputs of Hugging Face wav2vec2 models for `tests/test_models_wav2vec2.py` (run by
hand).

Needs torch and transformers, not jax; the tests need neither torch nor this script. Run from
the repository root, e.g. with the reference environment:

  /work/torchenv/bin/python experiments/golden/huggingface_wav2vec2.py

Two tiny random architectures: "base" style (GroupNorm after the first conv only, no conv
bias, post-LN encoder, as wav2vec2-base) and "large" style (a LayerNorm after every conv,
conv bias, pre-LN encoder with the final LayerNorm, as wav2vec2-large-lv60); both with a
3-conv feature encoder, hidden 32, 2 layers, 4 heads, intermediate 37 and a positional conv
of kernel 16 in 4 groups. For each, `Wav2Vec2ForSequenceClassification` (3 labels,
projector 16) and `Wav2Vec2ForCTC` (vocabulary 11) are built, every tensor of their state
dict filled with `spg_jax.models.convert.seeded.seeded_state_dict(manifest, seed)`, and
their eval-mode logits recorded on fixed waveforms of 3 rows with 1600, 1200 and 700 real
samples (zero padding, `attention_mask` given); the base-style classifier also without an
attention mask (a plain mean over all frames). `fp32_error` is how far torch's float32
logits are from the same model's in float64.

It also records the key/shape manifests and parameter counts of full-size wav2vec2-base
(`Wav2Vec2Config()` defaults) on torch's meta device (nothing is downloaded or allocated):
`Wav2Vec2ForPreTraining` (the layout of the published `facebook/wav2vec2-base` file),
`Wav2Vec2ForSequenceClassification` (12 labels, SUPERB keyword spotting) and
`Wav2Vec2ForCTC` (vocabulary 32).

Files: `tests/golden/huggingface/wav2vec2.json` (versions, seeds, configs, inputs as seeds,
manifests, counts) and `wav2vec2.npz` (outputs only; no weights).
"""
import importlib.util
import json
import os
import pathlib
import platform
import sys
import time

import numpy as np
import torch
import transformers
from transformers import (Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining,
                          Wav2Vec2ForSequenceClassification)

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "golden" / "huggingface"


def _load_by_path(name: str, relative: str):
  """A module of spg_jax loaded from its file, so that neither jax nor flax is imported."""
  spec = importlib.util.spec_from_file_location(name, ROOT / relative)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


seeded = _load_by_path("spg_jax_seeded", "spg_jax/models/convert/seeded.py")

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            conv_dim=(32, 32, 32), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
            classifier_proj_size=16, vocab_size=11, num_labels=3)
STYLES = {
    "base": dict(feat_extract_norm="group", conv_bias=False, do_stable_layer_norm=False),
    "large": dict(feat_extract_norm="layer", conv_bias=True, do_stable_layer_norm=True),
}
# name -> (transformers class, style, seed, with attention mask)
MODELS = {
    "base_sequence": (Wav2Vec2ForSequenceClassification, "base", 21, True),
    "base_sequence_nomask": (Wav2Vec2ForSequenceClassification, "base", 21, False),
    "base_ctc": (Wav2Vec2ForCTC, "base", 22, True),
    "large_sequence": (Wav2Vec2ForSequenceClassification, "large", 23, True),
    "large_ctc": (Wav2Vec2ForCTC, "large", 24, True),
}
INPUT_SEED, BATCH, LENGTH = 2025, 3, 1600
VALID = (1600, 1200, 700)  # real samples per row; the rest is zero padding (mask 0)
FULL_CLASSES = {Wav2Vec2ForPreTraining: {}, Wav2Vec2ForSequenceClassification:
                {"num_labels": 12}, Wav2Vec2ForCTC: {"vocab_size": 32}}


def fixed_inputs() -> dict:
  """float32 input_values [3, 1600] (zero-padded) and int64 attention_mask."""
  values = seeded.seeded_input(INPUT_SEED, (BATCH, LENGTH))
  mask = np.zeros((BATCH, LENGTH), np.int64)
  for row, valid in enumerate(VALID):
    mask[row, :valid] = 1
  return {"input_values": (values * mask).astype(np.float32), "attention_mask": mask}


def manifest_of(module: torch.nn.Module) -> list:
  return [[key, list(value.shape), str(value.dtype).replace("torch.", "")]
          for key, value in module.state_dict().items()]


def config_dict(config: Wav2Vec2Config) -> dict:
  """What `save_pretrained` writes to config.json (every field)."""
  return json.loads(config.to_json_string(use_diff=False))


def _run(model: torch.nn.Module, inputs: dict, dtype=torch.float32) -> np.ndarray:
  model = model.to(dtype).eval()
  feed = {"input_values": torch.from_numpy(inputs["input_values"]).to(dtype)}
  if "attention_mask" in inputs:
    feed["attention_mask"] = torch.from_numpy(inputs["attention_mask"])
  with torch.no_grad():
    return model(**feed).logits.detach().to(torch.float32).numpy()


def record_tiny(name: str, inputs: dict, arrays: dict) -> dict:
  cls, style, seed, with_mask = MODELS[name]
  config = Wav2Vec2Config(**TINY, **STYLES[style])
  config.architectures = [cls.__name__]
  torch.manual_seed(0)  # nothing random survives load_state_dict; fixed all the same
  model = cls(config)
  manifest = manifest_of(model)
  state = seeded.seeded_state_dict(manifest, seed)
  model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
  feed = inputs if with_mask else {"input_values": inputs["input_values"]}
  out = _run(model, feed)
  out64 = _run(model, feed, torch.float64)
  arrays[f"{name}:logits"] = out
  return {"class": cls.__name__, "style": style, "seed": seed, "attention_mask": with_mask,
          "config": config_dict(config), "manifest": manifest,
          "num_parameters": sum(p.numel() for p in model.parameters()),
          "fp32_error": float(np.max(np.abs(out.astype(np.float64) - out64))),
          "output_range": float(np.max(np.abs(out)))}


def record_full_size() -> dict:
  """{"config": wav2vec2-base's, "models": {class: {manifest, num_parameters}}}."""
  models = {}
  for cls, extra in FULL_CLASSES.items():
    config = Wav2Vec2Config(**extra)
    with torch.device("meta"):  # shapes only: nothing allocated, nothing downloaded
      model = cls(config)
    models[cls.__name__] = {"manifest": manifest_of(model), "config": config_dict(config),
                            "num_parameters": sum(p.numel() for p in model.parameters())}
  return {"models": models}


def main() -> None:
  torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
  start = time.time()
  inputs = fixed_inputs()
  arrays = {}
  tiny = {name: record_tiny(name, inputs, arrays) for name in MODELS}
  fixture = {
      "torch": torch.__version__, "transformers": transformers.__version__,
      "numpy": np.__version__, "python": platform.python_version(),
      "inputs": {"seed": INPUT_SEED, "shape": [BATCH, LENGTH], "valid": list(VALID)},
      "models": tiny, "full_size": record_full_size()}
  OUT.mkdir(parents=True, exist_ok=True)
  (OUT / "wav2vec2.json").write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
  np.savez_compressed(OUT / "wav2vec2.npz", **arrays)
  for name, record in tiny.items():
    print(json.dumps({"model": name, "class": record["class"],
                      "num_parameters": record["num_parameters"],
                      "fp32_error": record["fp32_error"],
                      "output_range": record["output_range"]}))
  for cls, m in fixture["full_size"]["models"].items():
    print(json.dumps({cls: (len(m["manifest"]), m["num_parameters"])}))
  print(f"total {time.time() - start:.1f} s (torch {torch.__version__}, transformers "
        f"{transformers.__version__}); json {(OUT / 'wav2vec2.json').stat().st_size // 1024} "
        f"kB, npz {(OUT / 'wav2vec2.npz').stat().st_size // 1024} kB")


if __name__ == "__main__":
  if len(sys.argv) > 1:
    sys.exit(f"error: no arguments expected, got {sys.argv[1:]}")
  main()
