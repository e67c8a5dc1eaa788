"""The paper's MobileNetV2 row: torchvision's IMAGENET1K_V1 MobileNetV2 (71.878 % top-1)
retrained on ImageNet-1K, control vs SPG-HPO vs SPG-NAS (reported: 71.878 -> 72.104 ->
72.208).

  python -m experiments.convert --source=torchvision --model=mobilenet_v2 \
      --weights=mobilenet_v2-b0353104.pth --out=/ckpt/mobilenet_v2_tv   # needs torch once
  python -m experiments.main --config=experiments/configs/imagenet_mobilenet_v2_paper.py \
      --workdir=/runs/mnv2 --config.protocol.init_checkpoint=/ckpt/mobilenet_v2_tv

Where the values come from: the authors' command sets global batch 768, lr 4e-4, weight
decay 4e-5 and SPG dropout 0.15; SGD with momentum 0.9 and the x0.5-every-10-epochs step
schedule are torchvision's reference-script defaults as in the ResNet-50 command. The
replicas attach as in the authors' code: on the pooled features before the classifier's
Dropout(0.2), every step's prediction through the whole classifier with its own dropout
mask. Not known: the number of epochs (40, as the ResNet-50 recipe, is assumed) and label
smoothing (none).
"""
from experiments import paper_recipes
from spg_jax import config as config_lib


def get_config(arg: str | None = None):
  config = paper_recipes.imagenet_recipe(
      "mobilenet_v2", batch_size=768, epochs=40, learning_rate=4e-4, weight_decay=4e-5,
      rate=0.15,
      model_kwargs={"bn_running_var": "unbiased", "spg_attach": "reference"})
  if config_lib.variant(arg) == "quick":
    return paper_recipes.quick(config)
  return config
