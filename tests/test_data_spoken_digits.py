"""The espeak-ng spoken-digits set: deterministic, cached, 16 kHz int16 1 s clips."""
import numpy as np
import pytest

from spg_jax.data import spoken_digits

SIZES = {"train": 2, "validation": 1, "test": 1}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
  cache = tmp_path_factory.mktemp("spoken_digits")
  return cache, spoken_digits.load(str(cache), SIZES)


def test_shapes_labels_and_audio(generated):
  _, splits = generated
  for split, per_word in SIZES.items():
    audio, label = splits[split]["audio"], splits[split]["label"]
    assert audio.dtype == np.int16 and audio.shape == (10 * per_word, 16000)
    assert label.tolist() == sorted(list(range(10)) * per_word)
    # Speech is far louder than the noise floor somewhere in every clip.
    peak = np.abs(audio.astype(np.float32)).max(-1)
    floor = np.median(np.abs(audio.astype(np.float32)), -1)
    assert np.all(peak > 5 * floor) and np.all(peak > 1000)
  assert not np.array_equal(splits["train"]["audio"][0], splits["train"]["audio"][1])


def test_deterministic_and_cached(generated, monkeypatch):
  cache, splits = generated
  again = spoken_digits.generate_split(SIZES["validation"],
                                       spoken_digits.SPLIT_SEEDS["validation"])
  np.testing.assert_array_equal(again["audio"], splits["validation"]["audio"])
  # Read back from the cache: espeak-ng is not called again.
  monkeypatch.setattr(spoken_digits.shutil, "which", lambda name: None)
  cached = spoken_digits.load(str(cache), SIZES)
  np.testing.assert_array_equal(cached["test"]["audio"], splits["test"]["audio"])


def test_missing_espeak_is_one_line_with_install_command(tmp_path, monkeypatch):
  monkeypatch.setattr(spoken_digits.shutil, "which", lambda name: None)
  with pytest.raises(ValueError) as error:
    spoken_digits.load(str(tmp_path / "new"), SIZES)
  text = str(error.value)
  assert "\n" not in text and "apt-get install -y espeak-ng" in text
  assert not (tmp_path / "new").exists()
  with pytest.raises(ValueError, match=r"sizes\['train'\]=0"):
    spoken_digits.load(str(tmp_path), {"train": 0, "validation": 1, "test": 1})


def test_dataset_features(generated):
  cache, _ = generated
  ds = spoken_digits.dataset(str(cache), SIZES)
  assert ds.info.num_classes == 10 and ds.info.task == "sequence_classification"
  features = ds.info.features
  assert features["input_values"].shape == (16000,)
  assert features["attention_mask"].dtype == "int32"
  x = ds.splits["train"]["input_values"]
  np.testing.assert_allclose(x.mean(-1), 0.0, atol=1e-4)
  np.testing.assert_allclose(x.std(-1), 1.0, atol=1e-3)
