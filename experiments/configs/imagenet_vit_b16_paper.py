"""The paper's ViT-B/16 row: torchvision's IMAGENET1K_V1 ViT-B/16 (81.072 % top-1)
retrained on ImageNet-1K, control vs SPG-HPO vs SPG-NAS (reported: 81.072 -> 81.092 ->
81.114).

  python -m experiments.convert --source=torchvision --model=vit_b_16 \
      --weights=vit_b_16-c867db91.pth --out=/ckpt/vit_b16_tv   # needs torch once
  python -m experiments.main --config=experiments/configs/imagenet_vit_b16_paper.py \
      --workdir=/runs/vit --config.protocol.init_checkpoint=/ckpt/vit_b16_tv

Where the values come from: torchvision's weights card (evaluation: resize 256 bilinear,
centre crop 224; label smoothing 0.11 in its recipe) and the paper's shared ImageNet
retraining settings (SGD momentum 0.9, lr 4e-4, x0.5 every 10 epochs, T = 3, lambdas
0.4/0.2/0.1). The replicas act on the class token (768-d), the head's input. Not known: the
authors' batch size, epochs, weight decay and dropout rate for this model (256, 40, 0 and
0.2 are assumed).
"""
from experiments import paper_recipes
from spg_jax import config as config_lib


def get_config(arg: str | None = None):
  config = paper_recipes.imagenet_recipe(
      "vit_b16", batch_size=256, epochs=40, learning_rate=4e-4, weight_decay=0.0,
      rate=0.2, label_smoothing=0.11)
  if config_lib.variant(arg) == "quick":
    return paper_recipes.quick(config)
  return config
