"""GLUE and SQuAD v1.1 readers: Hugging Face parquet / JSON files and TFDS array_record
(written by TFDS's own glue / squad builders), tokenised, split, registered in the catalog;
the files are tiny ones the tests write (tests/text_fixtures.py), nothing is downloaded."""
import json

import numpy as np
import pytest

from spg_jax import data
from spg_jax import sharding
from spg_jax.data import text_catalog, text_files, text_sources
from spg_jax.text import tokenize

import text_fixtures as files


@pytest.fixture(scope="module")
def mesh():
  return sharding.make_mesh()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  root = tmp_path_factory.mktemp("text")
  files.write_vocab(root / "vocab.txt")
  return root


def options(root, **kwargs):
  return {"tokenizer": str(root / "vocab.txt"), **kwargs}


def test_catalog_registers_every_glue_task_and_squad():
  glue = [n for n in data.names() if n.startswith("glue/")]
  assert glue == ["glue/cola", "glue/sst2", "glue/mrpc", "glue/qqp", "glue/stsb", "glue/mnli",
                  "glue/mnli_mismatched", "glue/qnli", "glue/rte"]
  cola, stsb, mnli = (data.dataset_info(n) for n in ("glue/cola", "glue/stsb", "glue/mnli"))
  assert (cola.kind, cola.task, cola.num_classes) == ("text", "sequence_classification", 2)
  assert (stsb.task, stsb.num_classes, stsb.features["label"].dtype) == (
      "sequence_regression", 1, "float32")
  assert mnli.num_classes == 3
  assert data.dataset_info("glue/mnli_mismatched").tfds_test_split == "validation_mismatched"
  squad = data.dataset_info("squad_v1", {"max_length": 64, "stride": 16})
  assert squad.task == "extractive_qa"
  assert squad.features["input_ids"].shape == (64,)
  assert set(squad.features) == {"input_ids", "token_type_ids", "attention_mask",
                                 "start_positions", "end_positions"}


@pytest.mark.parametrize("preprocess, match", [
    ({"crop_size": 3}, r"^preprocess\.crop_size=3: not an option of dataset 'glue/cola'"),
    ({"max_length": 4}, r"^preprocess\.max_length=4: must be an integer >= 8$"),
    ({"format": "csv"}, r"^preprocess\.format='csv': must be one of \['auto', 'tfds', 'hf'\]$"),
    ({"tokenizer": 3}, r"^preprocess\.tokenizer=3: must be the path"),
])
def test_bad_options_one_line(preprocess, match):
  with pytest.raises(ValueError, match=match):
    data.dataset_info("glue/cola", preprocess)


def test_squad_stride_must_be_below_max_length():
  with pytest.raises(ValueError, match=r"^preprocess\.stride=64: must be less than "):
    data.dataset_info("squad_v1", {"max_length": 64, "stride": 64})


def test_glue_parquet_splits_tokenised_and_carved(root):
  folder = files.write_glue(root / "hf", "mrpc", n_train=40, n_val=12)
  opts = options(root, max_length=32)
  train = data.make_source("glue/mrpc", "train", data_dir=str(folder),
                           validation_fraction=0.25, preprocess=opts)
  val = data.make_source("glue/mrpc", "validation", data_dir=str(folder),
                         validation_fraction=0.25, preprocess=opts)
  test = data.make_source("glue/mrpc", "test", data_dir=str(folder),
                          validation_fraction=0.25, preprocess=opts)
  assert (len(train), len(val), len(test)) == (30, 10, 12)
  # The carved slice and the rest partition the official train rows.
  idx_train = text_sources.split_rows(40, "train", 0.25)
  idx_val = text_sources.split_rows(40, "validation", 0.25)
  assert sorted(np.concatenate([idx_train, idx_val]).tolist()) == list(range(40))
  # Example 0 of "test" is row 0 of the validation file, tokenised as a pair.
  raw = text_files.read_hf_split(str(folder), "validation", ("sentence1", "sentence2", "label"))
  tok = tokenize.load_tokenizer(opts["tokenizer"])
  want = tok.encode(raw["sentence1"][:1], raw["sentence2"][:1], max_length=32)
  example = test[0]
  for key in ("input_ids", "token_type_ids", "attention_mask"):
    np.testing.assert_array_equal(example[key], want[key][0])
  assert example["label"] == raw["label"][0]
  assert example["token_type_ids"].max() == 1  # a sentence pair
  assert set(example) == set(data.dataset_info("glue/mrpc", opts).features)


def test_glue_json_lines_and_mnli_matched_mismatched(root):
  folder = files.write_glue(root / "jsonl", "mnli", json_lines=True, n_val=7)
  opts = options(root)
  m = data.make_source("glue/mnli", "test", data_dir=str(folder), preprocess=opts)
  mm = data.make_source("glue/mnli_mismatched", "test", data_dir=str(folder), preprocess=opts)
  assert len(m) == len(mm) == 7
  assert not np.array_equal(m[0]["input_ids"], mm[0]["input_ids"])


def test_stsb_float_labels_from_hub_layout(root):
  files.write_glue(root / "hub", "stsb")  # data_dir = the repository root: stsb/ found
  src = data.make_source("glue/stsb", "test", data_dir=str(root / "hub"),
                         preprocess=options(root))
  assert src[0]["label"].dtype == np.float32 and 0.0 <= src[0]["label"] <= 5.0


def test_squad_parquet_and_official_json_agree(root):
  opts = options(root, max_length=48, stride=16)
  hub = files.write_squad(root / "squad_hub")
  official = files.write_squad(root / "squad_official", official=True)
  a = data.make_source("squad_v1", "test", data_dir=str(hub.parent), preprocess=opts)
  b = data.make_source("squad_v1", "test", data_dir=str(official), preprocess=opts)
  assert len(a) == len(b) > 8  # long contexts: several windows per question
  for key in ("input_ids", "start_positions", "end_positions"):
    np.testing.assert_array_equal(np.stack([a[i][key] for i in range(len(a))]),
                                  np.stack([b[i][key] for i in range(len(b))]))
  # Every window's answer is either inside it (the span's tokens decode to the answer) or
  # marked outside (position = max_length, ignored by the task).
  starts = np.asarray([a[i]["start_positions"] for i in range(len(a))])
  assert ((starts > 0) & (starts < 48)).any() and (starts == 48).any()
  train = data.make_source("squad_v1", "train", data_dir=str(hub.parent),
                           validation_fraction=0.25, preprocess=opts)
  val = data.make_source("squad_v1", "validation", data_dir=str(hub.parent),
                         validation_fraction=0.25, preprocess=opts)
  assert len(train) > len(val) > 0


def _all(source):
  return {k: np.stack([source[i][k] for i in range(len(source))]) for k in source[0]}


def test_tfds_array_record_built_from_files_reads_as_the_hub_files(root, tmp_path):
  """Real array_record files as `tfds build glue/cola --file_format=array_record` and
  `tfds build squad/v1.1 ...` write them (TFDS's own builders, fed from rows instead of the
  download), read with `format="auto"` and no TensorFlow: the same tokenised examples as
  the same rows in Hugging Face parquet files, in every split."""
  import sys  # pylint: disable=g-import-not-at-top
  tfds_dir = tmp_path / "tfds"
  cola = {"train": files.glue_rows("cola", 24), "validation": files.glue_rows("cola", 6, 1)}
  squad = {"train": files.squad_rows(8), "validation": files.squad_rows(4, 1)}
  files.write_tfds(tfds_dir, "glue/cola", cola)
  files.write_tfds(tfds_dir, "squad/v1.1", squad)
  for split, rows in cola.items():
    files.write_parquet(tmp_path / "hub" / "cola" / f"{split}.parquet",
                        {k: [r[k] for r in rows] for k in rows[0]})
  assert text_sources.resolve_format("glue/cola", str(tfds_dir), "auto") == "tfds"
  for split in ("train", "validation", "test"):
    got = data.make_source("glue/cola", split, data_dir=str(tfds_dir),
                           validation_fraction=0.25, preprocess=options(root))
    want = data.make_source("glue/cola", split, data_dir=str(tmp_path / "hub"),
                            validation_fraction=0.25, preprocess=options(root))
    assert len(got) == len(want) == {"train": 18, "validation": 6, "test": 6}[split]
    for key, value in _all(want).items():
      np.testing.assert_array_equal(_all(got)[key], value, err_msg=f"{split} {key}")
  rows = text_files.read_tfds_split("squad/v1.1", "validation", str(tfds_dir),
                                    text_files.SQUAD_COLUMNS)
  by_id = {r["id"]: r for r in squad["validation"]}
  assert sorted(rows["id"]) == sorted(by_id)
  for qid, texts, starts in zip(rows["id"], rows["answer_texts"], rows["answer_starts"]):
    assert texts == by_id[qid]["answers"]["text"]
    assert starts == by_id[qid]["answers"]["answer_start"]
  windows = data.make_source("squad_v1", "test", data_dir=str(tfds_dir),
                             preprocess=options(root, max_length=48, stride=16))
  assert len(windows) >= 4
  assert "tensorflow" not in sys.modules  # TFDS read (and wrote) it without TensorFlow


def test_auto_format_prefers_prepared_tfds(tmp_path):
  (tmp_path / "glue" / "cola" / "2.0.0").mkdir(parents=True)
  assert text_sources.resolve_format("glue/cola", str(tmp_path), "auto") == "hf"
  (tmp_path / "glue" / "cola" / "2.0.0" / "dataset_info.json").write_text("{}")
  assert text_sources.resolve_format("glue/cola", str(tmp_path), "auto") == "tfds"


@pytest.mark.parametrize("case, match", [
    ("no_tokenizer", r"^dataset\.preprocess\.tokenizer=None: dataset 'glue/cola' needs"),
    ("no_dir", r"^dataset\.data_dir=None: dataset 'glue/cola' is read from local files"),
    ("no_files", r"^dataset\.data_dir='.*': no files of split 'train'"),
    ("test_labels", r"^dataset 'glue/cola': labels outside \[0, 2\)"),
])
def test_missing_data_one_line(root, tmp_path, case, match):
  opts = options(root)
  data_dir = str(tmp_path)
  if case == "no_tokenizer":
    opts = {}
    files.write_glue(tmp_path, "cola")
  elif case == "no_dir":
    data_dir = None
  elif case == "test_labels":  # GLUE's test files hold label -1
    files.write_parquet(tmp_path / "cola" / "train.parquet",
                        {"sentence": ["a cat ."], "label": [-1], "idx": [0]})
  with pytest.raises(ValueError, match=match) as e:
    data.make_source("glue/cola", "train", data_dir=data_dir, preprocess=opts)
  assert "\n" not in str(e.value)


def test_iterator_batches_text(root, mesh):
  folder = files.write_glue(root / "it", "cola")
  it = data.make_iterator("glue/cola", "train", global_batch_size=8, mesh=mesh, seed=0,
                          data_dir=str(folder), preprocess=options(root, max_length=16))
  batch = next(it)
  assert batch["input_ids"].shape == (8, 16) and batch["label"].shape == (8,)
  assert it.get_state()["config"]["preprocess"]["max_length"] == 16


def test_spec_table_is_complete():
  assert set(text_catalog.NAMES) == {n for n in data.names() if data.dataset_info(n).kind == "text"}


def test_json_list_of_rows_and_bad_json_line(tmp_path):
  rows = [{"sentence": "a cat sat.", "label": 1, "idx": 0},
          {"sentence": "the dog ran.", "label": 0, "idx": 1}]
  (tmp_path / "train.json").write_text(json.dumps(rows))
  got = text_files.read_hf_split(str(tmp_path), "train", ("sentence", "label"))
  assert got == {"sentence": ["a cat sat.", "the dog ran."], "label": [1, 0]}
  (tmp_path / "validation.jsonl").write_text(json.dumps(rows[0]) + "\nnot json\n")
  with pytest.raises(ValueError, match=r"validation\.jsonl'?: line 2 is not JSON"):
    text_files.read_hf_split(str(tmp_path), "validation", ("sentence", "label"))
  with pytest.raises(ValueError, match=r"row 0 has no 'sentence1' column"):
    text_files.read_hf_split(str(tmp_path), "train", ("sentence1", "label"))
