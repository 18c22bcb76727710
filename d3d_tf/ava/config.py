"""The settings of `--task=ava` (a section of the training config; TF-free)."""
from __future__ import annotations

import dataclasses

from d3d_tf.core.config_flags import field


@dataclasses.dataclass
class AvaConfig:
    """AVA detection: the backbone endpoint, RoIAlign, boxes and the box loss (docs/ava.md)."""
    ava_endpoint: str = field("Mixed_4f", "ava: backbone endpoint whose time-averaged features "
                              "are cropped per person box (RoIAlign).")
    ava_roi_size: int = field(14, "ava: RoIAlign output side, feature pixels (MaxPool_5a "
                              "halves it before Mixed_5b).", min=1)
    ava_max_boxes: int = field(16, "ava: boxes per keyframe (ground truth in training, best-"
                               "scored proposals at evaluation); more are dropped.", min=1)
    ava_box_jitter: float = field(0.1, "ava: training boxes = ground truth with centre moved by "
                                  "up to this fraction of its size and sides scaled by "
                                  "exp(+-this).", min=0)
    ava_box_loss_weight: float = field(1.0, "ava: weight of the box-offset (Huber) loss.",
                                       min=0)
