"""Vision base models with SPG attach points.

Every model maps `(x, *, train)` to `(logits, aux)`: `aux["pre_logits"]` is the exact input
of the classifier head (a submodule named `head`, params["head"]), `aux["features"]` the last
feature map before pooling. `get(name, **kwargs)` builds one by name, `names()` lists them,
`spg_attachments(model, kind)` (the model's own `spg_attachments(kind)` method, from
`ClassifierHeadMixin` or `FCNHeadsMixin`) says how SPG's HPO or NAS replicas attach, one
`spg_jax.spg_model.Attachment` per head; `spg_attachment` gives the main head's. NAS replica
blocks are the models' own blocks with `zero_init_last=True` (identity at init, trainable).
"""
from spg_jax.models.attach import KINDS, spg_attachment, spg_attachments
from spg_jax.models.fcn import FCN, FCNHead, FCNHeadsMixin
from spg_jax.models.fcn_small import FCNSmall
from spg_jax.models.layers import (ClassifierHeadMixin, ConvBN, class_token, flatten,
                                   global_avg_pool)
from spg_jax.models.mobilenet import InvertedResidual, MobileNetV2
from spg_jax.models.registry import get, names
from spg_jax.models.resnet import BasicBlock, Bottleneck, ResNet, ResNetBackbone
from spg_jax.models.small import CNN1D, DigitsCNN
from spg_jax.models.vit import EncoderBlock, VisionTransformer
