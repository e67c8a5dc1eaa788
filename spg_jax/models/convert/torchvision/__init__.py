"""torchvision checkpoints (IMAGENET1K_V1 classifiers, FCN COCO_WITH_VOC_LABELS_V1).

`ARCHITECTURES` maps torchvision's model names to their `common.Architecture`; `ALIASES` maps
other spellings (spg_jax's registry names) to them.
"""
import types

from spg_jax.models.convert import common
from spg_jax.models.convert.torchvision import efficientnet, fcn, mobilenet, resnet, vit

ARCHITECTURES = types.MappingProxyType({
    **{f"resnet{depth}": common.Architecture(f"resnet{depth}", resnet.source,
                                             resnet.model_kwargs)
       for depth in (18, 34, 50, 101)},
    "mobilenet_v2": common.Architecture("mobilenet_v2", mobilenet.source,
                                        mobilenet.model_kwargs),
    "efficientnet_v2_m": common.Architecture("efficientnet_v2_m", efficientnet.source,
                                             efficientnet.model_kwargs),
    "vit_b_16": common.Architecture("vit_b16", vit.source, vit.model_kwargs),
    "fcn_resnet50": common.Architecture("fcn_resnet50", fcn.source, fcn.model_kwargs),
})

# spg_jax's spellings of the same models.
ALIASES = types.MappingProxyType({"vit_b16": "vit_b_16"})
