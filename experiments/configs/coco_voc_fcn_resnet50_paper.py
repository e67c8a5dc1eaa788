"""The paper's segmentation row: torchvision's FCN-ResNet50 COCO_WITH_VOC_LABELS_V1 (mIoU
60.5 / pixel accuracy 91.4 on COCO val2017 with VOC labels, torchvision's evaluation)
retrained on COCO 2017 with VOC labels, control vs SPG-HPO vs SPG-NAS (reported with the
authors' own evaluation: mIoU 58.9 -> 59.5).

  python -m spg_jax.data.coco_voc --coco_dir=COCO_DIR --data_dir=DATA_DIR   # once
  python -m experiments.convert --source=torchvision --model=fcn_resnet50 \
      --weights=fcn_resnet50_coco-1167a1af.pth --out=/ckpt/fcn_tv   # needs torch once
  python -m experiments.main --config=experiments/configs/coco_voc_fcn_resnet50_paper.py \
      --workdir=/runs/fcn --config.dataset.data_dir=DATA_DIR \
      --config.protocol.init_checkpoint=/ckpt/fcn_tv

Where the values come from (the authors' segmentation command on torchvision's
segmentation reference script, whose defaults it keeps): 5 epochs, global batch 16, SGD
with momentum 0.9 and weight decay 1e-4, lr 2e-4, the auxiliary loss (out + 0.5 aux; SPG
acts on both heads), a constant warm-up of factor 0 for 3 epochs (the first 3 epochs only
update BatchNorm statistics, as that command sets it) and then torchvision's polynomial
decay (power 0.9); SPG dropout 0.1, T = 3, lambdas 0.4/0.2/0.1; the authors' code's loss
(base cross-entropy averaged over every pixel, ignored ones included; the head's BatchNorm
updated by every trajectory step; no effective normalisation). Presets as torchvision's:
train shorter side random in [260, 1040], flip, crop 480; evaluation shorter side 520,
padded with ignored pixels to a square (`dataset.preprocess.eval_pad_size`).
Not known: the exact number of training images after torchvision's filter (the builder
prints it; `_TRAIN_IMAGES` below is an estimate that sets the step budget; override
`protocol.retrain.num_steps` and `schedule.warmup_steps` with the printed count) and how
the authors chose their checkpoint (this protocol selects on a validation split carved from
train and reports val2017 as the test split).
"""
from experiments import paper_recipes
from spg_jax import config as config_lib

# An estimate, not a measurement: COCO train2017 has 118,287 images; torchvision's filter
# keeps those whose VOC-category annotations cover more than 1000 pixels.
_TRAIN_IMAGES = 92_000
_VALIDATION_FRACTION = 0.01
_BATCH = 16
_STEPS_PER_EPOCH = int(_TRAIN_IMAGES * (1 - _VALIDATION_FRACTION)) // _BATCH


def get_config(arg: str | None = None):
  config = config_lib.base_config()
  config.model.name = "fcn_resnet50"
  config.model.kwargs.bn_running_var = "unbiased"
  config.dataset.name = "coco_voc"
  config.dataset.validation_fraction = _VALIDATION_FRACTION
  config.task.name = "segmentation"
  config.batch_size = _BATCH
  config.eval_batch_size = 16
  config.log_every_steps = 100
  config.optimizer.name = "sgd"
  config.optimizer.momentum = 0.9
  config.optimizer.learning_rate = 2e-4
  config.optimizer.weight_decay = 1e-4
  config.schedule.name = "poly"
  config.schedule.warmup_steps = 3 * _STEPS_PER_EPOCH
  config.schedule.warmup_method = "constant"
  config.schedule.warmup_factor = 0.0
  config.checkpoint.every_steps = _STEPS_PER_EPOCH
  config.checkpoint.keep = 2
  config.progress_bar = False
  paper_recipes.reference_spg(config, rate=0.1)
  paper_recipes.set_protocol(config, (0, 1, 2), 5 * _STEPS_PER_EPOCH, _STEPS_PER_EPOCH)
  if config_lib.variant(arg) == "quick":
    paper_recipes.quick(config, tiny_model="fcn_small")
    config.dataset.preprocess.base_size = 64
    config.dataset.preprocess.crop_size = 48
    config.dataset.preprocess.eval_pad_size = 128
  return config
