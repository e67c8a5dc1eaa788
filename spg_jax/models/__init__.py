"""Base models with SPG attach points: vision models and BERT (`bert.py`, text inputs).

Every model maps `(x, *, train)` to `(logits, aux)`: `aux["pre_logits"]` is the exact input
of the classifier head (a submodule named `head`, params["head"]), `aux["features"]` the last
feature map before pooling (MobileNetV2 and EfficientNet also give `aux["pooled"]`, the
pooled vector before the classifier's dropout). `get(name, **kwargs)` builds one by name
(torchvision's spellings too: `canonical_name`, `aliases`), `names()` lists them,
`spg_attachments(model, kind)` (the model's own `spg_attachments(kind)` method, from
`ClassifierHeadMixin`, `DropoutClassifierHeadMixin` or `FCNHeadsMixin`) says how SPG's HPO
or NAS replicas attach, one `spg_jax.spg_model.Attachment` per head; `spg_attachment` gives
the main head's. NAS replica blocks are the models' own blocks with `zero_init_last=True`
(identity at init, trainable).

Models with BatchNorm take `bn_running_var`: "biased" (Flax's running-variance update, the
default) or "unbiased" (torch's, `TorchBatchNorm`; same variables), and EfficientNet
`bn_epsilon` (torchvision's 1e-3). MobileNetV2 and EfficientNet take `spg_attach`:
"after_dropout" (default) or "reference" (the authors' code: HPO replicas from the pooled
vector before the dropout, every step through Dropout + Linear with its own mask).
"""
from spg_jax.models.attach import KINDS, spg_attachment, spg_attachments
from spg_jax.models.bert import Bert, BertConfig, BertLayer, BertNASBlock
from spg_jax.models.efficientnet import (EfficientNet, FusedMBConv, MBConv, SqueezeExcitation,
                                         efficientnet_v2_m)
from spg_jax.models.fcn import FCN, FCNHead, FCNHeadsMixin
from spg_jax.models.fcn_small import FCNSmall
from spg_jax.models.layers import (BN_RUNNING_VAR, SPG_ATTACH, ClassifierHeadMixin, ConvBN,
                                   DropoutClassifierHeadMixin, DropoutDense, TorchBatchNorm,
                                   batch_norm, class_token, flatten, global_avg_pool)
from spg_jax.models.mobilenet import InvertedResidual, MobileNetV2
from spg_jax.models.registry import aliases, canonical_name, get, names
from spg_jax.models.resnet import BasicBlock, Bottleneck, ResNet, ResNetBackbone
from spg_jax.models.small import CNN1D, DigitsCNN
from spg_jax.models.vit import EncoderBlock, VisionTransformer
