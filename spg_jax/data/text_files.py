"""Raw text examples of GLUE and SQuAD v1.1 from files the user already has (never a download,
never TensorFlow): Hugging Face parquet / JSON files, or TFDS array_record built once.

  read_hf_split(folder, split, columns)      -> {column: list}   (pyarrow, the [text] extra)
  read_tfds_split(tfds_name, split, data_dir) -> {column: list}  (tfds.data_source)

Hugging Face layout: the folder of one task holds `<split>-*.parquet` (the Hub's shards,
e.g. nyu-mll/glue's `cola/train-00000-of-00001.parquet`), `<split>.parquet`, JSON lines
`<split>.jsonl` / `<split>.json`, or for SQuAD the official nested `train-v1.1.json` /
`dev-v1.1.json`. SQuAD rows come out flat: `id, question, context, answer_starts` (list of
int) and `answer_texts` (list of str).
"""
from __future__ import annotations

import glob
import json
import os
from typing import Any, Sequence

from spg_jax import validation

# The official SQuAD v1.1 files, by Hugging Face split name.
SQUAD_OFFICIAL = {"train": "train-v1.1.json", "validation": "dev-v1.1.json"}
SQUAD_COLUMNS = ("id", "question", "context", "answer_starts", "answer_texts")


def split_files(folder: str, split: str) -> list[str]:
  """The files of `split` in `folder`, first matching pattern wins (sorted shards)."""
  patterns = (f"{split}-*.parquet", f"{split}.parquet", f"{split}.jsonl", f"{split}.json",
              f"{split}-*.jsonl", f"{split}-*.json")
  for pattern in patterns:
    found = sorted(glob.glob(os.path.join(glob.escape(folder), pattern)))
    if found:
      return found
  official = SQUAD_OFFICIAL.get(split)
  if official and os.path.isfile(os.path.join(folder, official)):
    return [os.path.join(folder, official)]
  return []


def _read_json(path: str) -> list[dict]:
  """JSON lines, a JSON list of rows, or the official nested SQuAD file, as flat rows."""
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise ValueError(f"data file {path!r}: not readable as UTF-8 ({e})") from None
  try:
    whole = json.loads(text)
  except ValueError:
    whole = None
  if isinstance(whole, dict) and "data" in whole:
    return squad_official_rows(whole, path)
  if isinstance(whole, list):
    return whole
  rows = []
  for number, line in enumerate(text.splitlines(), 1):
    if line.strip():
      try:
        rows.append(json.loads(line))
      except ValueError:
        raise ValueError(f"data file {path!r}: line {number} is not JSON (expected JSON "
                         "lines, a JSON list of rows or an official SQuAD file)") from None
  return rows


def squad_official_rows(document: dict, where: str = "SQuAD file") -> list[dict]:
  """The official SQuAD v1.1 nesting (data -> paragraphs -> qas) as flat rows."""
  rows = []
  try:
    for article in document["data"]:
      for paragraph in article["paragraphs"]:
        for qa in paragraph["qas"]:
          rows.append({"id": qa["id"], "question": qa["question"],
                       "context": paragraph["context"],
                       "answers": {"text": [a["text"] for a in qa["answers"]],
                                   "answer_start": [a["answer_start"] for a in qa["answers"]]}})
  except (KeyError, TypeError) as e:
    raise ValueError(f"data file {where!r}: not the SQuAD v1.1 layout (missing {e})") from None
  return rows


def _read_parquet(path: str) -> list[dict]:
  pq = validation.require_extra("pyarrow.parquet", "text")
  try:
    return pq.read_table(path).to_pylist()
  except Exception as e:  # pylint: disable=broad-except  (pyarrow raises several types)
    raise ValueError(f"data file {path!r}: not a readable parquet file "
                     f"({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None


def _flat_squad(row: dict) -> dict:
  """A Hugging Face SQuAD row (`answers: {text, answer_start}`) in our flat columns."""
  answers = row.get("answers") or {}
  return {"id": row.get("id"), "question": row.get("question"), "context": row.get("context"),
          "answer_starts": list(answers.get("answer_start", [])),
          "answer_texts": list(answers.get("text", []))}


def columns_of(rows: Sequence[dict], columns: Sequence[str], where: str) -> dict[str, list]:
  """`{column: [value per row]}`; one-line ValueError naming the first missing column."""
  wanted = list(columns)
  if "answer_texts" in wanted:
    rows = [_flat_squad(r) for r in rows]
  out = {c: [] for c in wanted}
  for i, row in enumerate(rows):
    for c in wanted:
      if c not in row or row[c] is None:
        raise ValueError(f"{where}: row {i} has no {c!r} column (it has {sorted(row)}); "
                         f"this dataset reads {wanted}")
      out[c].append(_text(row[c]))
  return out


def _text(value: Any) -> Any:
  """TFDS gives text as bytes (or numpy arrays of them); everything else as it is."""
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if hasattr(value, "tolist"):
    value = value.tolist()
  if isinstance(value, list):
    return [_text(v) for v in value]
  return value


def read_hf_split(folder: str, split: str, columns: Sequence[str]) -> dict[str, list]:
  """The `columns` of Hugging Face split `split` from the files in `folder`.

  Raises:
    ValueError (one line): no such folder, no files of the split (naming the patterns), an
      unreadable file, a missing column; pyarrow missing for parquet files.
  """
  if not os.path.isdir(folder):
    raise ValueError(f"dataset.data_dir={folder!r}: no such folder")
  files = split_files(folder, split)
  if not files:
    raise ValueError(f"dataset.data_dir={folder!r}: no files of split {split!r} (looked for "
                     f"{split}-*.parquet, {split}.parquet, {split}.jsonl, {split}.json)")
  rows = []
  for path in files:
    rows.extend(_read_parquet(path) if path.endswith(".parquet") else _read_json(path))
  return columns_of(rows, columns, f"split {split!r} in {folder}")


def tfds_prepared(tfds_name: str, data_dir: str | None) -> bool:
  """Whether `<data_dir>/<tfds_name>/<version>/dataset_info.json` exists (built once)."""
  if not data_dir:
    return False
  return bool(glob.glob(os.path.join(glob.escape(data_dir), *tfds_name.split("/"), "*",
                                     "dataset_info.json")))


def _register_builders() -> None:
  """TFDS registers GLUE's and SQuAD's builders when their modules are imported (the
  `tfds` package alone does not import `tensorflow_datasets.text`); neither needs TF."""
  import importlib  # pylint: disable=g-import-not-at-top
  for module in ("tensorflow_datasets.text.glue", "tensorflow_datasets.question_answering.squad"):
    importlib.import_module(module)


def read_tfds_split(tfds_name: str, split: str, data_dir: str | None,
                    columns: Sequence[str]) -> dict[str, list]:
  """The `columns` of TFDS split `split` of `tfds_name` (e.g. "glue/cola"), read from its
  prepared array_record files with `tfds.data_source` (random access, no TensorFlow)."""
  tfds = validation.require_extra("tensorflow_datasets", "tfds")
  _register_builders()
  try:
    source = tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # pylint: disable=broad-except  (tfds raises several types here)
    raise ValueError(
        f"dataset {tfds_name!r}: split {split!r} not readable from "
        f"{data_dir or 'the default data_dir'} ({type(e).__name__}); build it once with "
        f"`tfds build {tfds_name} --file_format=array_record --data_dir=DIR`") from None
  rows = [source[i] for i in range(len(source))]
  if rows and "idx" in rows[0]:
    # TFDS stores GLUE's examples shuffled; its `idx` is the row number of the original
    # file, so sorted by it the rows (and our carved validation slice) are those of the
    # Hugging Face files.
    rows.sort(key=lambda row: int(row["idx"]))
  return columns_of(rows, columns, f"TFDS {tfds_name} split {split!r}")
