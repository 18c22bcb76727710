"""The Keras model class every builder of d3d_tf returns."""
from __future__ import annotations

import keras


class VideoModel(keras.Model):
    """A functional Keras model that carries the config it was built from.

    `d3d_config` is the frozen config dataclass of the model's family (`S3DGConfig`,
    `ResNet3DConfig`, ...): what `saving.spec_for` records and what code that needs the
    architecture (input channels, conv lowering, pooling) reads, instead of guessing it from
    the layers. Built like `keras.Model(inputs, outputs, name=...)` plus `config=`.
    """

    def __init__(self, inputs, outputs, *, config, **kwargs):
        super().__init__(inputs, outputs, **kwargs)
        self.d3d_config = config


def config_for(make_config, name: str, input_shape, options: dict):
    """A builder's config: `options["config"]` if given, else the preset `name` with `options`.
    Like Keras applications, the input shape says the channels: `in_channels` follows it unless
    `options` sets it."""
    cfg = options.pop("config", None)
    if cfg is not None:
        return cfg
    shape = tuple(input_shape)
    if len(shape) == 4 and shape[-1] is not None and "in_channels" not in options:
        options["in_channels"] = int(shape[-1])
    return make_config(name, **options)


def check_input_shape(input_shape, in_channels: int) -> tuple:
    """`(T, H, W, C)` for `keras.Input`; ValueError for another rank or a channel count that
    is not `in_channels`. T, H, W may be None."""
    input_shape = tuple(input_shape)
    if len(input_shape) != 4:
        raise ValueError(
            f"input_shape must be (frames, height, width, channels) for NDHWC input, "
            f"got {input_shape} (rank {len(input_shape)} + batch)"
        )
    if input_shape[-1] is not None and input_shape[-1] != in_channels:
        raise ValueError(
            f"input_shape has {input_shape[-1]} channels but in_channels={in_channels}")
    return (*input_shape[:3], in_channels)
