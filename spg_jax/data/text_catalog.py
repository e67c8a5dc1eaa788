"""The text datasets (GLUE's tasks and SQuAD v1.1): their columns, classes, splits and options.

Plain Python facts only (no imports of the data package), so `catalog` can build their
`DatasetInfo`s without a cycle.

Splits: GLUE's and SQuAD's test labels are hidden, so our "test" split is the official
validation split (MNLI: validation_matched for "glue/mnli", validation_mismatched for
"glue/mnli_mismatched"), and our "validation" (model selection) is a seeded
`validation_fraction` slice carved from the official train split (SQuAD: whole questions,
all their windows).

Options (`config.dataset.preprocess`):
  tokenizer: path of the vocab.txt / tokenizer.json / model folder (required to read data).
  max_length: tokens per sequence (GLUE 128, SQuAD 384, as Hugging Face's scripts).
  stride: SQuAD only, the doc stride (128).
  format: "auto" (TFDS array_record when `<data_dir>/<tfds name>/` is prepared, else
    Hugging Face files in data_dir), "tfds" or "hf".
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

FORMATS = ("auto", "tfds", "hf")
SYNTHETIC = "synthetic_text"


@dataclasses.dataclass(frozen=True)
class TextSpec:
  """One text dataset.

  Attributes:
    text_columns: the first and (pairs) second sentence column; SQuAD: question, context.
    num_classes: classes (1: regression, STS-B; 0: extractive QA).
    task: the `spg_jax.tasks` name.
    metric: the selection metric (GLUE's headline metric of the task).
    tfds_name: TFDS builder ("glue/cola", "squad/v1.1").
    test_split: the official split that serves as our "test".
    hf_folder: the task's folder in Hugging Face's repository (nyu-mll/glue, rajpurkar/squad).
  """
  text_columns: tuple
  num_classes: int
  task: str
  metric: str
  tfds_name: str
  test_split: str = "validation"
  hf_folder: str = ""


def _glue(first: str, second: str | None, num_classes: int, metric: str, task: str,
          test_split: str = "validation") -> TextSpec:
  columns = (first,) if second is None else (first, second)
  task_name = "sequence_regression" if num_classes == 1 else "sequence_classification"
  return TextSpec(columns, num_classes, task_name, metric, f"glue/{task}", test_split, task)


# GLUE's metrics (Wang et al. 2019): CoLA Matthews; MRPC, QQP accuracy and F1; STS-B Pearson
# and Spearman; the others accuracy. Every run logs all of its task's metrics.
SPECS: Mapping[str, TextSpec] = {
    "glue/cola": _glue("sentence", None, 2, "matthews", "cola"),
    "glue/sst2": _glue("sentence", None, 2, "accuracy", "sst2"),
    "glue/mrpc": _glue("sentence1", "sentence2", 2, "f1", "mrpc"),
    "glue/qqp": _glue("question1", "question2", 2, "accuracy", "qqp"),
    "glue/stsb": _glue("sentence1", "sentence2", 1, "pearson", "stsb"),
    "glue/mnli": _glue("premise", "hypothesis", 3, "accuracy", "mnli", "validation_matched"),
    "glue/mnli_mismatched": _glue("premise", "hypothesis", 3, "accuracy", "mnli",
                                  "validation_mismatched"),
    "glue/qnli": _glue("question", "sentence", 2, "accuracy", "qnli"),
    "glue/rte": _glue("sentence1", "sentence2", 2, "accuracy", "rte"),
    "squad_v1": TextSpec(("question", "context"), 0, "extractive_qa", "exact_match",
                         "squad/v1.1", "validation", "plain_text"),
    # SYNTHETIC (the offline demo): generated in memory, its own vocabulary, no files.
    SYNTHETIC: TextSpec(("sentence",), 2, "sequence_classification", "accuracy", "", "test"),
}
NAMES = tuple(SPECS)


def is_squad(name: str) -> bool:
  return SPECS[name].task == "extractive_qa"


def default_options(name: str) -> dict[str, Any]:
  """Hugging Face's run_glue.py / run_qa.py defaults; no tokenizer."""
  if name == SYNTHETIC:
    return {"max_length": 32}
  options = {"tokenizer": None, "max_length": 128, "format": "auto"}
  if is_squad(name):
    options.update(max_length=384, stride=128)
  return options


def check_options(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
  """The options of text dataset `name` with defaults filled in; one-line ValueError naming
  `preprocess.<option>` for an unknown option or a bad value."""
  defaults = default_options(name)
  for key, value in given.items():
    if key not in defaults:
      raise ValueError(f"preprocess.{key}={value!r}: not an option of dataset {name!r}; "
                       f"its options are {sorted(defaults)}")
  options = {**defaults, **given}
  for key in ("max_length", "stride"):
    if key in options:
      value = options[key]
      low = 0 if key == "stride" else 8
      if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"preprocess.{key}={value!r}: must be an integer >= {low}")
  if "stride" in options and options["stride"] >= options["max_length"]:
    raise ValueError(f"preprocess.stride={options['stride']}: must be less than "
                     f"max_length={options['max_length']}")
  if name == SYNTHETIC:
    return options
  if options["format"] not in FORMATS:
    raise ValueError(f"preprocess.format={options['format']!r}: must be one of "
                     f"{list(FORMATS)}")
  tokenizer = options["tokenizer"]
  if tokenizer is not None and not isinstance(tokenizer, str):
    raise ValueError(f"preprocess.tokenizer={tokenizer!r}: must be the path of a vocab.txt, "
                     "tokenizer.json or model folder")
  return options


def feature_specs(name: str, options: Mapping[str, Any]) -> dict[str, tuple]:
  """`{feature: (shape, dtype)}` of one example (no batch axis)."""
  length = (options["max_length"],)
  out = {k: (length, "int32") for k in ("input_ids", "token_type_ids", "attention_mask")}
  spec = SPECS[name]
  if spec.task == "extractive_qa":
    out.update(start_positions=((), "int32"), end_positions=((), "int32"))
  else:
    out["label"] = ((), "float32" if spec.num_classes == 1 else "int32")
  return out
