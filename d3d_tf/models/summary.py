"""Per-endpoint table of an S3D-G-family model: output shape, parameters and FLOPs.

    python -m d3d_tf.models.summary --model=s3dg --num_frames=64 --crop_size=224

FLOPs are 2 x multiply-accumulates of the convolutions and the self-gating matrices, for one
clip (batch 1); batch norm, ReLU, pooling and the gating's elementwise work are not counted
(they are < 1% of the multiply-adds), which is the usual convention for 3D CNN FLOP tables.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from d3d_tf.core.config_flags import field

if TYPE_CHECKING:
    import keras


@dataclasses.dataclass
class Row:
    endpoint: str
    output_shape: tuple
    params: int
    flops: int


def layer_flops(layer) -> int:
    """FLOPs (2 x MACs) of one layer for batch 1; 0 for layers without multiply-adds."""
    import keras  # here, not at import: `--help` answers before TensorFlow loads

    from d3d_tf.models.layers import SelfGating

    if isinstance(layer, keras.layers.Conv3D):
        out = layer.output.shape
        kernel = layer.kernel.shape  # [kt,kh,kw,cin,cout]
        return int(2 * np.prod(out[1:4]) * np.prod(kernel))
    if isinstance(layer, SelfGating):
        c = layer.transformer_W.shape[-1]
        return int(2 * c * c)
    return 0


def _endpoint_of(layer_name: str) -> str:
    return layer_name.split(".", 1)[0]


def endpoint_table(model: keras.Model) -> list[Row]:
    """One row per endpoint (and `Logits` when the model has a head), in build order."""
    import keras

    rows: dict[str, Row] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        name = _endpoint_of(layer.name)
        row = rows.setdefault(name, Row(name, (), 0, 0))
        row.params += int(sum(np.prod(w.shape) for w in layer.weights))
        row.flops += layer_flops(layer)
        row.output_shape = tuple(layer.output.shape[1:])
    return list(rows.values())


def total_flops(model: keras.Model) -> int:
    """FLOPs of one clip through the whole model (2 x MACs)."""
    return sum(layer_flops(layer) for layer in model.layers)


def format_table(rows: list[Row]) -> str:
    lines = [f"{'endpoint':<16} {'output [T,H,W,C]':<22} {'params':>12} {'GFLOPs':>9}"]
    for r in rows:
        shape = "x".join(str(s) for s in r.output_shape)
        lines.append(f"{r.endpoint:<16} {shape:<22} {r.params:>12,} {r.flops / 1e9:>9.3f}")
    params = sum(r.params for r in rows)
    flops = sum(r.flops for r in rows)
    lines.append(f"{'total':<16} {'':<22} {params:>12,} {flops / 1e9:>9.3f}")
    return "\n".join(lines)


@dataclasses.dataclass
class SummaryConfig:
    """The flags of `python -m d3d_tf.models.summary` (`d3d_tf.core.config_flags`); num_frames
    and crop_size are the names every tool gives the clip (`d3d_tf.data.clip`)."""
    model: str = field("s3dg", "Model preset: s3dg, s3d or i3d.")
    num_frames: int = field(64, "Input frames T.", min=1)
    crop_size: int = field(224, "Input height and width, pixels.", min=1)
    channels: int = field(3, "Input channels: 3 for RGB, 2 for optical flow.", min=1)
    num_classes: int = field(400, "Classes of the logits head.", min=1)
    depth_multiplier: float = field(1.0, "Channel multiplier of every conv.")
    first_temporal_kernel_size: int | None = field(None, "Temporal kernel of the stem (default: "
                                                   "the preset's).", min=1)


def main(argv):
    del argv
    from d3d_tf import models
    from d3d_tf.core import config_flags

    c = config_flags.from_flags(SummaryConfig)
    options = {"depth_multiplier": c.depth_multiplier}
    if c.first_temporal_kernel_size is not None:
        options["first_temporal_kernel_size"] = c.first_temporal_kernel_size
    model = models.build_classifier(
        c.model,
        num_classes=c.num_classes,
        input_shape=(c.num_frames, c.crop_size, c.crop_size, c.channels),
        **options,
    )
    shape = f"{c.num_frames}x{c.crop_size}x{c.crop_size}x{c.channels}"
    print(f"{c.model}: input {shape}, {c.num_classes} classes")
    print(format_table(endpoint_table(model)))
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    print(f"trainable parameters: {trainable:,} (the rest are batch-norm moving statistics)")


if __name__ == "__main__":
    from d3d_tf.core import cli, config_flags

    config_flags.define_flags(SummaryConfig)
    cli.run(main, groups=cli.help_groups(SummaryConfig))
