"""Tiny GLUE / SQuAD v1.1 files in the Hugging Face layout, written by the tests themselves
(never downloaded), and a vocabulary built from them."""
import json
import pathlib

import numpy as np

from spg_jax.text import vocab as vocab_lib

WORDS = ("the cat dog sat ran on a mat big small red blue it was not very good bad "
         "movie film who what where is are").split()


def sentences(rng, n, low=3, high=9):
  return [" ".join(rng.choice(WORDS, rng.integers(low, high))) + "." for _ in range(n)]


def write_parquet(path, columns):
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  path.parent.mkdir(parents=True, exist_ok=True)
  pq.write_table(pa.table(columns), str(path))


def write_glue(root: pathlib.Path, task: str, *, n_train=40, n_val=12, seed=0,
               json_lines=False) -> pathlib.Path:
  """`root/<task>/{train,validation[,_matched,_mismatched]}` files with random sentences;
  labels: STS-B floats in [0, 5], MNLI 3 classes, others 2; returns root/<task>."""
  rng = np.random.default_rng(seed)
  folder = root / task
  pairs = {"cola": ("sentence",), "sst2": ("sentence",), "mrpc": ("sentence1", "sentence2"),
           "qqp": ("question1", "question2"), "stsb": ("sentence1", "sentence2"),
           "mnli": ("premise", "hypothesis"), "qnli": ("question", "sentence"),
           "rte": ("sentence1", "sentence2")}[task]
  splits = {"train": n_train}
  if task == "mnli":
    splits.update(validation_matched=n_val, validation_mismatched=n_val)
  else:
    splits["validation"] = n_val
  for split, n in splits.items():
    cols = {c: sentences(rng, n) for c in pairs}
    if task == "stsb":
      cols["label"] = [float(x) for x in rng.uniform(0, 5, n).round(2)]
    else:
      cols["label"] = [int(x) for x in rng.integers(0, 3 if task == "mnli" else 2, n)]
    cols["idx"] = list(range(n))
    if json_lines:
      folder.mkdir(parents=True, exist_ok=True)
      rows = [dict(zip(cols, values)) for values in zip(*cols.values())]
      (folder / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    else:
      write_parquet(folder / f"{split}-00000-of-00001.parquet", cols)
  return folder


def squad_rows(n, seed=0):
  """SQuAD rows whose answer is a word span of the context (answer_start exact)."""
  rng = np.random.default_rng(seed)
  rows = []
  for i in range(n):
    context = " ".join(sentences(rng, 6))
    words = context.split(" ")
    a = int(rng.integers(0, len(words) - 2))
    text = " ".join(words[a:a + 2]).rstrip(".")
    start = len(" ".join(words[:a])) + (1 if a else 0)
    assert context[start:start + len(text)] == text
    rows.append({"id": f"q{i}", "title": "t", "context": context,
                 "question": " ".join(rng.choice(WORDS, 5)) + "?",
                 "answers": {"text": [text, text], "answer_start": [start, start]}})
  return rows


def write_squad(root: pathlib.Path, *, n_train=24, n_val=8, official=False) -> pathlib.Path:
  """`root/plain_text/{train,validation}-*.parquet`, or (official) the nested
  `train-v1.1.json` / `dev-v1.1.json` in root; returns the folder."""
  folder = root / ("" if official else "plain_text")
  folder.mkdir(parents=True, exist_ok=True)
  for split, n, seed in (("train", n_train, 0), ("validation", n_val, 1)):
    rows = squad_rows(n, seed)
    if official:
      doc = {"version": "1.1", "data": [{"title": "t", "paragraphs": [
          {"context": r["context"], "qas": [
              {"id": r["id"], "question": r["question"], "answers": [
                  {"text": t, "answer_start": s} for t, s in
                  zip(r["answers"]["text"], r["answers"]["answer_start"])]}]}
          for r in rows]}]}
      name = "train-v1.1.json" if split == "train" else "dev-v1.1.json"
      (folder / name).write_text(json.dumps(doc))
    else:
      cols = {k: [r[k] for r in rows] for k in rows[0]}
      write_parquet(folder / f"{split}-00000-of-00001.parquet", cols)
  return folder


def write_vocab(path: pathlib.Path, lowercase=True) -> str:
  corpus = list(WORDS) + [".", "?", ","]
  return vocab_lib.write_vocab(str(path), vocab_lib.build_vocab(corpus, lowercase=lowercase))


def write_tfds(data_dir: pathlib.Path, tfds_name: str, splits: dict) -> pathlib.Path:
  """What `tfds build <tfds_name> --file_format=array_record` writes (dataset_info.json and
  array_record shards under `data_dir/<name>/<config>/<version>/`), from `splits = {split:
  [row, ...]}` instead of the download: TFDS's own builder class (its features, version and
  file names) with only the example source replaced. No TensorFlow needed."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name, config = tfds_name.split("/")
  if name == "glue":
    from tensorflow_datasets.text import glue as module  # pylint: disable=g-import-not-at-top
    base = module.Glue
  else:
    from tensorflow_datasets.datasets.squad import squad_dataset_builder as module  # pylint: disable=g-import-not-at-top
    base = module.Builder

  class FromRows(base, skip_registration=True):

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._rows(split) for split in splits}

    def _rows(self, split):
      for i, row in enumerate(splits[split]):
        yield i, row

  FromRows.name = name
  # TFDS reads a builder's metadata (README, citation) beside its module: the original's.
  FromRows.pkg_dir_path = base._get_pkg_dir_path()  # pylint: disable=protected-access
  tfds.disable_progress_bar()
  builder = FromRows(config=config, data_dir=str(data_dir), file_format="array_record")
  builder.download_and_prepare()
  return pathlib.Path(builder.data_dir)


def glue_rows(task: str, n: int, seed: int = 0) -> list:
  """Rows of GLUE task `task` as TFDS's glue builder declares them (with `idx`)."""
  rng = np.random.default_rng(seed)
  columns = {"cola": ("sentence",), "rte": ("sentence1", "sentence2")}[task]
  return [{**{c: s for c, s in zip(columns, sentences(rng, len(columns)))},
           "label": int(rng.integers(0, 2)), "idx": i} for i in range(n)]
