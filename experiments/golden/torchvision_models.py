r"""Golden outputs of torchvision models for `tests/test_convert_torchvision.py` (run by hand).

Needs torch and torchvision, not jax; the tests need neither torch nor this script. Run from
the repository root, e.g. with the reference environment:

  /work/torchenv/bin/python experiments/golden/torchvision_models.py            # all models
  /work/torchenv/bin/python experiments/golden/torchvision_models.py resnet18   # some

For each model it builds the torchvision module, takes its state-dict manifest (key, shape,
dtype of every tensor), fills every tensor with `spg_jax.models.convert.seeded
.seeded_state_dict(manifest, seed, batch_norm_weight)`, loads it, and records:
  (a) eval-mode outputs for `eval_input` (seeded standard-normal NCHW images; the tests
      transpose them to NHWC): the logits; for FCN `out` and `aux` on every 5th pixel
      (every phase of the stride-8 upsampling is among them);
  (b) train mode, one forward pass on `train_input` with every Dropout and StochasticDepth
      module put in eval mode (their masks are random; without them the pass is
      deterministic): the logits and each BatchNorm's updated running mean and variance
      (first 16 channels; torch updates the variance with the unbiased batch variance, so
      the element count per channel is recorded too; `running_mean`/`running_var` are
      [layers, 16] in `bn_layers` order). The tests turn dropout and stochastic depth off
      on the spg_jax side too, except FCN's head dropout, which spg_jax fixes at 0.1; it
      comes after the head's BatchNorm, so FCN's statistics are still comparable, and only
      they are recorded. ViT-B/16 has no BatchNorm and no dropout at its defaults: train
      mode equals eval mode, nothing more is recorded;
  (c) how far torch's float32 outputs are from the same model's in float64 (`fp32_error`,
      eval, train logits, running statistics): in train mode, deep networks normalise by
      statistics of small batches and float32 rounding alone moves ResNet-50/101 logits by
      1e-4 to 1e-3, so the tests bound train-mode differences by the larger of 1e-4 and
      twice this;
  (d) the manifest of the full-size model. ViT-B/16's outputs come from torchvision's own
      `VisionTransformer` at image size 32 (the same layout and depth; only
      `encoder.pos_embedding` has 1 + 4 positions instead of 197), so its fixture has the
      manifest of that model and the full-size one.
Files: `tests/golden/torchvision/<model>.json` (versions, seeds, inputs, manifests, counts)
and `<model>.npz` (outputs only; no weights). The values depend on the seeds and the
recorded versions only; a torch/torchvision upgrade may change the last bits of the outputs.

The script also checks, when torch is there, that `spg_jax.models.convert.common
.read_state_dict` reads a `.pth` written by `torch.save` back exactly.

Recorded with torch 2.14.1 and torchvision 0.29.1 on CPU (see each json); all eight models
take 15-100 s on 2 shared cores (most of it the float64 passes).
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
import torchvision
from torchvision.models import segmentation

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "golden" / "torchvision"
BN_CHANNELS = 16  # BatchNorm statistics recorded per layer (first channels)
PIXEL_STRIDE = 5  # FCN outputs recorded on every 5th row and column


def _load_by_path(name: str, relative: str):
  """A module of spg_jax loaded from its file, so that neither jax nor flax is imported."""
  spec = importlib.util.spec_from_file_location(name, ROOT / relative)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


seeded = _load_by_path("spg_jax_seeded", "spg_jax/models/convert/seeded.py")
common = _load_by_path("spg_jax_convert_common", "spg_jax/models/convert/common.py")


def _vit_b_16_at(image_size: int):
  return torchvision.models.VisionTransformer(
      image_size=image_size, patch_size=16, num_layers=12, num_heads=12, hidden_dim=768,
      mlp_dim=3072)


# name -> golden builder, its call as text, full-size builder (None: the same), image size,
# eval batch, train batch (0: no train record), BatchNorm scale range, seed. The BatchNorm
# scale ranges keep each network's eval-mode logits of order 1-10 and input-dependent.
MODELS = {
    "resnet18": (torchvision.models.resnet18, "torchvision.models.resnet18()", None,
                 64, 2, 4, (0.5, 1.0), 18),
    "resnet34": (torchvision.models.resnet34, "torchvision.models.resnet34()", None,
                 64, 2, 4, (0.45, 0.9), 34),
    "resnet50": (torchvision.models.resnet50, "torchvision.models.resnet50()", None,
                 64, 2, 4, (0.5, 1.0), 50),
    "resnet101": (torchvision.models.resnet101, "torchvision.models.resnet101()", None,
                  64, 2, 4, (0.4, 0.9), 101),
    "mobilenet_v2": (torchvision.models.mobilenet_v2, "torchvision.models.mobilenet_v2()",
                     None, 64, 2, 4, (0.6, 1.1), 2),
    "vit_b_16": (lambda: _vit_b_16_at(32),
                 "torchvision.models.VisionTransformer(image_size=32, patch_size=16, "
                 "num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072)",
                 torchvision.models.vit_b_16, 32, 2, 0, (0.5, 1.0), 16),
    "fcn_resnet50": (lambda: segmentation.fcn_resnet50(weights=None, weights_backbone=None,
                                                       aux_loss=True),
                     "torchvision.models.segmentation.fcn_resnet50(weights=None, "
                     "weights_backbone=None, aux_loss=True)", None, 64, 1, 2, (0.45, 0.85), 21),
    "efficientnet_v2_m": (torchvision.models.efficientnet_v2_m,
                          "torchvision.models.efficientnet_v2_m()", None, 64, 2, 4,
                          (0.51, 1.01), 7),
}


def manifest_of(module: torch.nn.Module) -> list:
  return [[key, list(value.shape), str(value.dtype).replace("torch.", "")]
          for key, value in module.state_dict().items()]


def _outputs(result) -> dict:
  """{name: NCHW / [B, C] numpy} of a model's return value (FCN: out and aux, subsampled)."""
  if isinstance(result, dict):
    return {name: value[:, :, ::PIXEL_STRIDE, ::PIXEL_STRIDE].numpy()
            for name, value in result.items()}
  return {"logits": result.numpy()}


def _batch_norms(module: torch.nn.Module) -> dict:
  """{name: module} of every BatchNorm, in registration order (the state dict's)."""
  return {name: m for name, m in module.named_modules()
          if isinstance(m, torch.nn.BatchNorm2d)}


def _filled(build, state: dict) -> torch.nn.Module:
  torch.manual_seed(0)  # nothing random survives load_state_dict; fixed all the same
  model = build()
  model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
  return model


def _train_mode(model: torch.nn.Module) -> torch.nn.Module:
  """Train mode with every random mask off (see the module docstring)."""
  model.train()
  for m in model.modules():
    if isinstance(m, (torch.nn.Dropout, torchvision.ops.StochasticDepth)):
      m.eval()
  return model


def _run(model: torch.nn.Module, images: np.ndarray, dtype=torch.float32) -> dict:
  with torch.no_grad():
    return _outputs(model(torch.from_numpy(images).to(dtype)))


def _max_error(a: dict, b: dict) -> float:
  return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)


def record(name: str) -> dict:
  """Builds, fills and runs one model; writes its json and npz; returns a summary."""
  build, build_text, full_build, size, eval_batch, train_batch, bn_range, seed = MODELS[name]
  start = time.time()
  model = build()
  manifest = manifest_of(model)
  state = seeded.seeded_state_dict(manifest, seed, bn_range)
  model = _filled(build, state)
  eval_shape = (eval_batch, 3, size, size)
  eval_seed = 1000 + seed
  eval_images = seeded.seeded_input(eval_seed, eval_shape)
  arrays = {}
  eval_out = _run(model.eval(), eval_images)
  arrays.update({f"eval:{k}": v for k, v in eval_out.items()})
  # How far torch's own float32 result is from float64: the problem's conditioning.
  model64 = _filled(build, state).double()
  fp32_error = {"eval": _max_error(eval_out, _run(model64.eval(), eval_images,
                                                  torch.float64))}

  fixture = {
      "model": name, "builder": build_text, "torch": torch.__version__,
      "torchvision": torchvision.__version__, "numpy": np.__version__,
      "python": platform.python_version(), "seed": seed,
      "batch_norm_weight": list(bn_range),
      "eval_input": {"seed": eval_seed, "shape": list(eval_shape)},
      "eval_outputs": sorted(eval_out),
      "pixel_stride": PIXEL_STRIDE if name.startswith("fcn") else 1,
  }
  if train_batch:
    train_shape = (train_batch, 3, size, size)
    train_seed = 2000 + seed
    train_images = seeded.seeded_input(train_seed, train_shape)
    norms = _batch_norms(model)
    counts = {}
    hooks = [m.register_forward_hook(
        lambda m, inputs, _, key=key: counts.__setitem__(
            key, int(inputs[0].numel() // inputs[0].shape[1])))
             for key, m in norms.items()]
    train_out = _run(_train_mode(model), train_images)
    fp32_error["train"] = _max_error(
        train_out, _run(_train_mode(model64), train_images, torch.float64))
    norms64 = _batch_norms(model64)
    fp32_error["running_stats"] = max(
        float(torch.max(torch.abs(getattr(norms[k], stat).double()
                                  - getattr(norms64[k], stat))))
        for k in norms for stat in ("running_mean", "running_var"))
    for h in hooks:
      h.remove()
    if not name.startswith("fcn"):
      arrays.update({f"train:{k}": v for k, v in train_out.items()})
    layers = list(norms)
    arrays["running_mean"] = np.stack([norms[k].running_mean[:BN_CHANNELS].numpy()
                                       for k in layers])
    arrays["running_var"] = np.stack([norms[k].running_var[:BN_CHANNELS].numpy()
                                      for k in layers])
    fixture.update({
        "train_input": {"seed": train_seed, "shape": list(train_shape)},
        "train_outputs": [] if name.startswith("fcn") else sorted(train_out),
        "bn_momentum": 0.1, "bn_channels": BN_CHANNELS, "bn_layers": layers,
        "bn_counts": [counts[k] for k in layers]})
  fixture["fp32_error"] = fp32_error
  fixture["manifest"] = manifest
  fixture["full_size"] = full_build is None
  if full_build is not None:
    fixture["full_manifest"] = manifest_of(full_build())
  OUT.mkdir(parents=True, exist_ok=True)
  (OUT / f"{name}.json").write_text(json.dumps(fixture, indent=None, separators=(",", ":"))
                                    + "\n")
  np.savez_compressed(OUT / f"{name}.npz", **arrays)
  first = next(iter(eval_out.values()))
  return {"model": name, "seconds": round(time.time() - start, 1),
          "eval_std": float(first.std()),
          "eval_max": float(np.abs(first).max()),
          "fp32_error": fp32_error,
          "input_dependence": float(np.abs(first[0] - first[-1]).max()) if len(first) > 1
                              else None,
          "json_kB": (OUT / f"{name}.json").stat().st_size // 1024,
          "npz_kB": (OUT / f"{name}.npz").stat().st_size // 1024}


def check_torch_reader() -> None:
  """`common.read_state_dict` on a `.pth` from `torch.save` gives back the same arrays."""
  manifest = manifest_of(torchvision.models.resnet18())
  state = seeded.seeded_state_dict(manifest, 0)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "resnet18.pth")
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    back = common.read_state_dict(path)
  assert list(back) == list(state), "keys differ"
  for key, value in state.items():
    assert back[key].dtype == value.dtype and np.array_equal(back[key], value), key
  print(f"read_state_dict(.pth): {len(back)} tensors read back exactly")


def main(argv) -> None:
  names = argv[1:] or list(MODELS)
  unknown = [n for n in names if n not in MODELS]
  if unknown:
    sys.exit(f"error: unknown model {unknown[0]!r}; known: {', '.join(MODELS)}")
  torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
  start = time.time()
  for name in names:
    print(json.dumps(record(name)), flush=True)
  check_torch_reader()
  print(f"total {time.time() - start:.1f} s (torch {torch.__version__}, torchvision "
        f"{torchvision.__version__})")


if __name__ == "__main__":
  main(sys.argv)
