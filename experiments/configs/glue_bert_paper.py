"""The paper's GLUE rows: bert-base-cased retrained on a GLUE task, control vs standard
fine-tuning (Hugging Face defaults) vs SPG-HPO (reported after SPG: CoLA Matthews 62.1,
SST-2 92.6, RTE 72.6, QQP accuracy 90.9 / F1 87.7).

  python -m experiments.convert --source=huggingface --model=bert \
      --weights=/models/bert-base-cased --head=sequence --num_classes=2 --out=/ckpt/bert_cola
  python -m experiments.main --config=experiments/configs/glue_bert_paper.py:cola \
      --workdir=/runs/cola --config.protocol.init_checkpoint=/ckpt/bert_cola \
      --config.dataset.data_dir=/data/glue/cola \
      --config.dataset.preprocess.tokenizer=/models/bert-base-cased

The argument after ':' is the task (cola, sst2, mrpc, qqp, stsb, mnli, mnli_mismatched,
qnli, rte; default cola), optionally followed by "-quick" (`:rte-quick`); `:quick` alone is
CoLA's quick variant (a tiny BERT on tiny files, for the tests). STS-B needs
`--num_classes=1` at conversion (regression), MNLI `--num_classes=3`; MNLI mismatched is
the matched model evaluated on `glue/mnli_mismatched` (`--config.mode=evaluate` with that
dataset).

Where the values come from: the paper gives CoLA (lr 2.5e-5, batch 32, 6 epochs), SST-2
(3e-5, 64, 5), RTE (5e-5, 32, 5) and QQP (10 epochs); for the rest (and QQP's lr and
batch) the values of the BERT paper's / Hugging Face run_glue example are used: lr 2e-5,
batch 32, 3 epochs. AdamW (betas 0.9 / 0.999, eps 1e-8, no weight decay: Hugging Face's
defaults), linear decay to 0, no warm-up (run_glue's default; the authors' exact warm-up
is not known). Sequences of 128 tokens (run_glue's default). SPG: T = 3, lambdas
0.4/0.2/0.1, dropout 0.1 on the 768-d pooled output after the classifier dropout (the rate
is not published: BERT's own hidden dropout is used), the reference replica.
Loss normalisation: "none". The authors meant it to be off for sequence classification,
and in their code the factor is exactly 1 anyway, so "none" is both what they intended and
what their published runs did. Selection: the task's GLUE metric on a 10 % slice carved
from train (2 % for QQP and MNLI); reports: GLUE's validation split (test labels are
hidden), every task metric logged (accuracy, F1, Matthews / Pearson, Spearman).
Cost: 3 arms x 3 seeds x the epochs above.
"""
from experiments import text_recipes
from spg_jax import config as config_lib
from spg_jax.data import text_catalog

# task: (lr, batch, epochs, official train examples, validation fraction); train sizes of
# GLUE's train splits.
RECIPES = {
    "cola": (2.5e-5, 32, 6, 8_551, 0.1),
    "sst2": (3e-5, 64, 5, 67_349, 0.1),
    "rte": (5e-5, 32, 5, 2_490, 0.1),
    "qqp": (2e-5, 32, 10, 363_846, 0.02),
    "mrpc": (2e-5, 32, 3, 3_668, 0.1),
    "qnli": (2e-5, 32, 3, 104_743, 0.1),
    "mnli": (2e-5, 32, 3, 392_702, 0.02),
    "mnli_mismatched": (2e-5, 32, 3, 392_702, 0.02),
    "stsb": (2e-5, 32, 3, 5_749, 0.1),
}
BERT_BASE_CASED_VOCAB = 28_996


def parse(arg: str | None) -> tuple[str, str]:
  """(task, variant) from "cola", "rte-quick", "quick" or ""/None (CoLA, full)."""
  arg = arg or ""
  if arg == "quick":
    return "cola", "quick"
  task, _, rest = arg.partition("-")
  task = task or "cola"
  if task not in RECIPES:
    raise ValueError(f"config argument {arg!r}: the task must be one of {list(RECIPES)}")
  return task, config_lib.variant(rest)


def get_config(arg: str | None = None):
  task, variant = parse(arg)
  lr, batch, epochs, train, fraction = RECIPES[task]
  spec = text_catalog.SPECS[f"glue/{task}"]
  config = text_recipes.bert_recipe(
      f"glue/{task}", vocab_size=BERT_BASE_CASED_VOCAB, head_type="sequence",
      metric=spec.metric, learning_rate=lr, batch_size=batch, epochs=epochs,
      train_examples=train, validation_fraction=fraction, max_length=128)
  if variant == "quick":
    return text_recipes.quick(config)
  return config
