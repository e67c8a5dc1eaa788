"""Hugging Face transformers checkpoints (model folders: `config.json` + `model.safetensors`
or `pytorch_model.bin`).

`ARCHITECTURES` maps the converter's model names to their `common.Architecture`; `ALIASES`
maps other spellings to them.
"""
import types

from spg_jax.models.convert import common
from spg_jax.models.convert.huggingface import bert, wav2vec2

ARCHITECTURES = types.MappingProxyType({
    "bert": common.Architecture(
        "bert", bert.source, bert.model_kwargs, input_shape=bert.input_shape,
        ignorable=bert.ignorable, config_file="config.json", options=bert.OPTIONS,
        optional=bert.optional_group, source_for=bert.source_for,
        ignored_kind=bert.ignored_kind),
    "wav2vec2": common.Architecture(
        "wav2vec2", wav2vec2.source, wav2vec2.model_kwargs, input_shape=wav2vec2.input_shape,
        ignorable=wav2vec2.ignorable, config_file="config.json", options=wav2vec2.OPTIONS,
        optional=wav2vec2.optional_group, source_for=wav2vec2.source_for,
        ignored_kind=wav2vec2.ignored_kind),
})

ALIASES = types.MappingProxyType({})
