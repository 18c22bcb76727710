"""What a clip is, declared once for every tool that samples clips (train, evaluate, predict,
export, probe, benchmark): a `config_flags.section` of their configs.

Imports no TensorFlow, so a CLI can parse these flags before TensorFlow starts. A tool whose
default differs (evaluate takes T and H from the model) passes
`config_flags.define_flags(..., defaults={"num_frames": None})`.
"""
from __future__ import annotations

import dataclasses

from d3d_tf.core.config_flags import field


@dataclasses.dataclass
class ClipConfig:
    """A clip: `num_frames` frames [T,H,W,C] taken every `frame_stride` stored frames, the
    short side resized to `resize_short_side` pixels (None: as stored), a square crop of
    `crop_size` pixels (H = W)."""
    num_frames: int | None = field(64, "Frames per clip (T).", min=1)
    frame_stride: int = field(1, "Take every n-th stored frame.", min=1)
    crop_size: int | None = field(224, "Square crop side in pixels (H = W).", min=1)
    resize_short_side: int | None = field(None, "Resize the short side to this many pixels "
                                          "before cropping (default: as stored).", min=1)
