"""wav2vec2 CTC speech recognition (the authors' code covers it; the paper reports no
number): a `wav2vec2-large-lv60` style model (LayerNorm convs, pre-LN encoder) fine-tuned
with CTC on LibriSpeech train-clean-100, selected on dev-clean, tested on test-clean (WER,
lower is better; CER also logged), as a retraining protocol: standard fine-tuning (control)
and SPG-HPO on the last hidden states before lm_head (a step is correct when at least 50 %
of the target characters match its greedy decoding, as the reference).

  python -m experiments.convert --source=huggingface --model=wav2vec2 \
      --weights=wav2vec2-large-lv60 --head=ctc --out=/ckpt/w2v2_large_ctc
  python -m experiments.main --config=experiments/configs/ctc_wav2vec2_large_paper.py \
      --workdir=DIR --config.protocol.init_checkpoint=/ckpt/w2v2_large_ctc \
      --config.dataset.data_dir=/data/LibriSpeech
  python -m experiments.main --config=...ctc_wav2vec2_large_paper.py:quick ...  # tests

The pretrained checkpoint has no lm_head: `--head=ctc` starts one for config.json's
vocab_size, which must be 32 (the vocabulary of `spg_jax.data.librispeech`, that of
Hugging Face's English CTC models; `facebook/wav2vec2-large-960h-lv60-self` already has it).
Data: the LibriSpeech layout (`train-clean-100`, `dev-clean`, `test-clean` under
data_dir, 16 kHz FLAC (needs `pip install soundfile`) or WAV), utterances up to 20 s and
400 characters (longer ones are left out, also from dev and test: the WER is of the rest).

The optimiser values are this project's choice (the paper gives none for CTC; they are
in the range of Hugging Face's CTC fine-tuning examples): AdamW at lr 1e-4, no weight decay,
batch 32, linear decay after a 10 % warm-up, 20 epochs, `ctc_zero_infinity`.
"""
import ml_collections

from spg_jax import config as config_lib
from experiments import audio_recipes

TRAIN_EXAMPLES = 28_539  # train-clean-100 utterances (all of them; fewer pass the filter)
BATCH, EPOCHS = 32, 20
# wav2vec2's English CTC vocabulary: blank = <pad> = 0, word delimiter "|" = 4.
TASK = {"name": "ctc", "inputs": ("input_values", "attention_mask"), "blank_id": 0,
        "word_delimiter": 4, "threshold": 0.5, "zero_infinity": True}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = config_lib.variant(arg)
  per_epoch = TRAIN_EXAMPLES // BATCH
  config = audio_recipes.wav2vec2_recipe(
      "librispeech", model_kwargs={"size": "large", "head_type": "ctc", "vocab_size": 32},
      task=TASK, learning_rate=1e-4, batch_size=BATCH, num_steps=EPOCHS * per_epoch,
      eval_every=per_epoch, eval_batch_size=16)
  if variant == "quick":
    config = audio_recipes.quick(config)
    # The tiny model in large-lv60's style: LayerNorm convs with bias, pre-LN encoder.
    config.model.kwargs.feat_extract_norm = "layer"
    config.model.kwargs.conv_bias = True
    config.model.kwargs.do_stable_layer_norm = True
    # Half-second utterances of up to 12 characters: 24 output frames of the tiny stack.
    config.dataset.preprocess.max_samples = 8000
    config.dataset.preprocess.max_tokens = 12
  return config
