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
