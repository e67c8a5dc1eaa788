"""The log-mel keyword-spotting CNN (`audio_cnn`): front-end shapes, masks and options."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spg_jax import models
from spg_jax.models import audio_cnn


@pytest.fixture(scope="module")
def built():
  model = models.get("audio_cnn", num_classes=4, widths=(8, 8), features=16)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4000)), jnp.float32)
  variables = model.init(jax.random.key(0), x, train=False)
  return model, variables, x


def test_front_end_frames_and_filters():
  # 25 ms frames every 10 ms: 1 s -> 98 frames, as torchaudio / Kaldi without padding.
  assert int(audio_cnn.num_frames(jnp.asarray(16000))) == 98
  assert audio_cnn.log_mel(jnp.zeros((1, 16000)), 40).shape == (1, 98, 40)
  filters = audio_cnn.mel_filters(40)
  assert filters.shape == (257, 40) and filters.min() >= 0 and filters.max() <= 1
  peaks = filters.argmax(0)
  assert np.all(np.diff(peaks) >= 0) and peaks[-1] > 200  # ascending, up to ~8 kHz
  # A 1 kHz tone puts its energy in the mel bin whose filter peaks nearest 1 kHz.
  tone = jnp.sin(2 * np.pi * 1000 * jnp.arange(16000) / 16000)[None]
  energy = audio_cnn.log_mel(tone, 40)[0].mean(0)
  assert abs(int(peaks[int(energy.argmax())]) * 16000 / 512 - 1000) < 120


def test_padded_samples_do_not_change_the_logits(built):
  model, variables, x = built
  mask = np.ones((2, 4000), np.int32)
  mask[1, 2500:] = 0
  a = {"input_values": x * mask, "attention_mask": jnp.asarray(mask)}
  b = {**a, "input_values": a["input_values"].at[1, 2500:].set(5.0)}
  out_a, aux = model.apply(variables, a, train=False)
  out_b, _ = model.apply(variables, b, train=False)
  np.testing.assert_allclose(out_a, out_b, atol=1e-5)
  assert aux["pre_logits"].shape == (2, 16) and out_a.shape == (2, 4)
  # ... while the unmasked waveform with those samples does change them.
  out_c, _ = model.apply(variables, b["input_values"], train=False)
  assert float(jnp.max(jnp.abs(out_c[1] - out_a[1]))) > 1e-3


def test_head_dropout_and_errors(built):
  model, variables, x = built
  dropped = models.get("audio_cnn", num_classes=4, widths=(8, 8), features=16,
                       head_dropout=0.5)
  eval_out, _ = dropped.apply(variables, x, train=False)
  np.testing.assert_allclose(eval_out, model.apply(variables, x, train=False)[0])
  train_out, _ = dropped.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
  assert float(jnp.max(jnp.abs(train_out - eval_out))) > 1e-4
  with pytest.raises(ValueError, match=r"^audio_cnn widths=\(\)"):
    models.get("audio_cnn", widths=())
  with pytest.raises(ValueError, match="head_dropout=1.0"):
    models.get("audio_cnn", head_dropout=1.0)
  with pytest.raises(ValueError, match="needs at least 400"):
    model.apply(variables, jnp.zeros((1, 300)), train=False)
