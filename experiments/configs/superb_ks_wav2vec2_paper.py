"""The paper's audio row: wav2vec2-base fine-tuned on SUPERB keyword spotting (Speech
Commands v0.01, 12 classes; the reference run reports 98.26 % test accuracy), as a
retraining protocol: standard fine-tuning (control) and SPG-HPO with the same budget.

  # once: the pretrained checkpoint (a Hugging Face folder with config.json and weights)
  python -m experiments.convert --source=huggingface --model=wav2vec2 \
      --weights=wav2vec2-base --head=sequence --num_classes=12 --out=/ckpt/w2v2_ks
  # once: the data (the two unpacked Speech Commands v0.01 archives)
  python -m spg_jax.data.speech_commands --raw=speech_commands_v0.01 \
      --test=speech_commands_test_set_v0.01 --out=/data
  python -m experiments.main --config=experiments/configs/superb_ks_wav2vec2_paper.py \
      --workdir=DIR --config.protocol.init_checkpoint=/ckpt/w2v2_ks --config.dataset.data_dir=/data
  python -m experiments.main --config=...superb_ks_wav2vec2_paper.py:quick ...  # tests

The recipe (the reference's, as it both intends and does): AdamW at lr 3e-5 (no weight
decay), linear decay after a 10 % warm-up, batch 48 with 4 accumulation steps, loss
normalisation off, 5 epochs of SUPERB's 51,094 training clips (as Hugging Face's
audio-classification example, which uses batch 32 x 4 and whose 98.26 % is measured on
SUPERB's validation split; the protocol's tables report the test split). The accumulation is
`optimizer.accumulation_steps=4` on micro-batches of 48 (`optax.MultiSteps`: the mean of 4
micro-batch gradients per AdamW update, as Hugging Face's Trainer, which also normalises
each micro-batch's loss by its own size); the config's step counts are micro-batches, 4 per
update (num_steps = 4 x 5 epochs of 266 updates). The model
reads the waveforms alone, without the padding mask, as Hugging Face's feature extractor
for wav2vec2-base (group-norm models: zero padding, no attention_mask).
"""
import ml_collections

from spg_jax import config as config_lib
from experiments import audio_recipes

TRAIN_EXAMPLES = 51_094  # SUPERB KS train split
BATCH, ACCUMULATION, EPOCHS = 48, 4, 5


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = config_lib.variant(arg)
  per_epoch = TRAIN_EXAMPLES // (BATCH * ACCUMULATION)  # optimizer updates
  config = audio_recipes.wav2vec2_recipe(
      "speech_commands", model_kwargs={"size": "base", "head_type": "sequence"},
      task={"inputs": ("input_values",), "metric": "accuracy"}, learning_rate=3e-5,
      batch_size=BATCH, accumulation_steps=ACCUMULATION, num_steps=EPOCHS * per_epoch,
      eval_every=per_epoch // 2)
  if variant == "quick":
    return audio_recipes.quick(config)
  return config
