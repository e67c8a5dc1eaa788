"""A small keyword-spotting CNN on log-mel spectrograms, trained from scratch (fast on CPU).

`AudioCNN(num_classes)` maps a waveform `[B, L]` (or `{"input_values": [B, L],
"attention_mask": [B, L]}`, 1 = real sample) at 16 kHz to `(logits [B, num_classes], aux)`:

  log-mel front-end  (no parameters) 25 ms Hann frames every 10 ms, |rFFT(512)|^2, `mels`
                     triangular mel filters (HTK scale, 20 Hz .. 8 kHz), log(x + 1e-6):
                     16000 samples -> [B, 98, mels], then normalised per clip and mel bin
                     over the valid frames (zero mean, unit variance: cepstral mean and
                     variance normalisation, which keeps SGD stable on raw log energies)
  convs              `len(widths)` x (Conv1D over time, kernel 5, stride 2, SAME, bias,
                     LayerNorm over channels, ReLU): 98 -> 49 -> 25 -> 13 frames
  pooling            the mean over the valid frames (from the sample mask)
  fc                 Dense(features) + ReLU: the head's input (aux "pre_logits" = "features")
  head               Dense(num_classes) (`layers.ClassifierHeadMixin`; `head_dropout` as the
                     other registry classifiers: the protocol's dropout arm)

SPG: HPO replicas on `pre_logits` (a vector per clip), NAS blocks `ResidualMLPBlock` on the
same vector (identity at initialisation); the shared head is the Dense.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from spg_jax.models import layers
from spg_jax.replicas import ResidualMLPBlock

Dtype = Any
SAMPLE_RATE = 16_000
WINDOW, HOP, FFT = 400, 160, 512  # 25 ms frames every 10 ms
KERNEL, STRIDE = 5, 2


def mel_filters(num_mels: int, fft: int = FFT, rate: int = SAMPLE_RATE,
                low_hz: float = 20.0) -> np.ndarray:
  """`[fft // 2 + 1, num_mels]` triangular filters equally spaced on the HTK mel scale."""
  mel = lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0)
  hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)
  edges = hz(np.linspace(mel(low_hz), mel(rate / 2), num_mels + 2))
  freqs = np.linspace(0.0, rate / 2, fft // 2 + 1)
  lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
  rise = (freqs[None] - lower) / (centre - lower)
  fall = (upper - freqs[None]) / (upper - centre)
  return np.maximum(0.0, np.minimum(rise, fall)).T.astype(np.float32)


def num_frames(samples: jnp.ndarray) -> jnp.ndarray:
  """Spectrogram frames of `samples` real samples (frames that lie wholly inside them)."""
  return jnp.maximum((samples - WINDOW) // HOP + 1, 0)


def log_mel(values: jnp.ndarray, num_mels: int) -> jnp.ndarray:
  """`[B, L]` waveform -> `[B, 1 + (L - 400) // 160, num_mels]` log-mel energies."""
  frames = 1 + (values.shape[-1] - WINDOW) // HOP
  if frames < 1:
    raise ValueError(f"audio_cnn input: {values.shape[-1]} samples; needs at least {WINDOW} "
                     "(one 25 ms frame)")
  index = np.arange(frames)[:, None] * HOP + np.arange(WINDOW)[None]
  window = np.hanning(WINDOW + 1)[:-1].astype(np.float32)  # periodic Hann
  spectrum = jnp.fft.rfft(values[:, index] * window, n=FFT)
  power = jnp.square(jnp.abs(spectrum))
  return jnp.log(power @ mel_filters(num_mels) + 1e-6)


def normalise_frames(h: jnp.ndarray, lengths: jnp.ndarray) -> jnp.ndarray:
  """`[B, T, F]` -> zero mean, unit variance per clip and feature over the first
  `lengths [B]` frames; the padded frames are set to 0."""
  mask = (jnp.arange(h.shape[1])[None] < lengths[:, None]).astype(h.dtype)[..., None]
  count = jnp.maximum(jnp.sum(mask, 1, keepdims=True), 1.0)
  mean = jnp.sum(h * mask, 1, keepdims=True) / count
  var = jnp.sum(jnp.square(h - mean) * mask, 1, keepdims=True) / count
  return (h - mean) * jax.lax.rsqrt(var + 1e-5) * mask


def audio_inputs(x: Any) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """(waveform float32 [B, L], sample mask int32 [B, L]) from a bare array or a mapping."""
  if isinstance(x, Mapping):
    if "input_values" not in x:
      raise ValueError(f"audio_cnn input: needs 'input_values' (and optionally "
                       f"'attention_mask'); got {sorted(x)}")
    values, mask = jnp.asarray(x["input_values"]), x.get("attention_mask")
  else:
    values, mask = jnp.asarray(x), None
  if values.ndim != 2:
    raise ValueError(f"audio_cnn input_values: must be [batch, samples], got "
                     f"{values.dtype}{list(values.shape)}")
  mask = jnp.ones(values.shape, jnp.int32) if mask is None else jnp.asarray(mask, jnp.int32)
  return values.astype(jnp.float32), mask


class AudioCNN(layers.ClassifierHeadMixin, nn.Module):
  """Log-mel CNN keyword spotter; see the module docstring.

  Attributes:
    num_classes: classes of the head.
    mels: mel bins of the front-end.
    widths: channels of the convs (one conv each).
    features: width of the head's input (the fc layer).
    dtype: computation dtype (the front-end runs in float32).
    head_dropout: dropout on the head's input in training (layers.head_input).
  """
  num_classes: int = 10
  mels: int = 40
  widths: tuple = (64, 64, 64)
  features: int = 128
  dtype: Dtype = jnp.float32
  head_dropout: float = 0.0

  def __post_init__(self):
    # Bad settings fail when the model is built, before anything is traced.
    for name in ("num_classes", "mels", "features"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"audio_cnn {name}={value!r}: must be an integer >= 1")
    if not self.widths or not all(isinstance(w, int) and w >= 1 for w in self.widths):
      raise ValueError(f"audio_cnn widths={self.widths!r}: must be a non-empty tuple of "
                       "integers >= 1")
    layers.check_head_dropout(self.head_dropout)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: Any, *, train: bool):
    values, sample_mask = audio_inputs(x)
    h = log_mel(values, self.mels)
    lengths = num_frames(jnp.sum(sample_mask, -1))
    h = normalise_frames(h, lengths)
    for i, width in enumerate(self.widths):
      h = nn.Conv(width, (KERNEL,), (STRIDE,), padding="SAME", dtype=self.dtype,
                  kernel_init=layers.torch_linear_kernel_init, name=f"conv{i + 1}")(h)
      h = nn.relu(nn.LayerNorm(dtype=self.dtype, name=f"norm{i + 1}")(h))
      lengths = (lengths + STRIDE - 1) // STRIDE  # SAME padding: ceil(n / stride)
    mask = (jnp.arange(h.shape[1])[None] < lengths[:, None]).astype(h.dtype)[..., None]
    pooled = jnp.sum(h * mask, 1) / jnp.maximum(jnp.sum(mask, 1), 1.0)
    pre_logits = nn.relu(nn.Dense(self.features, dtype=self.dtype, name="fc",
                                  kernel_init=layers.torch_linear_kernel_init)(pooled))
    logits = self.make_head(name="head")(self.head_input(pre_logits, train))
    return logits, {"pre_logits": pre_logits, "features": pre_logits}

  def spg_pre_head(self) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """The features are already the head's input."""
    return lambda h: h

  def spg_nas_block(self) -> Callable[[], nn.Module]:
    """Factory of one NAS replica block: a residual MLP on the feature vector, identity
    at init."""
    return functools.partial(ResidualMLPBlock, dtype=self.dtype)
