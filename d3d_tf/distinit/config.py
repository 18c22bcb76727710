"""The settings of `--task=distinit` (a section of the training config; TF-free)."""
from __future__ import annotations

import dataclasses

from d3d_tf.core.config_flags import field

FRAME_PICKS = ("center", "random")
LOSSES = ("ce", "mse")


@dataclasses.dataclass
class DistInitConfig:
    """DistInit: the frozen image teachers, the frames they see and the loss (docs/distinit.md)."""
    distinit_teachers: tuple = field((), "distinit: frozen image teachers, keras.applications "
                                     "names (ResNet50), .keras files or model directories of "
                                     "1-frame networks (r2d_18); one head each (Eq. 3).")
    distinit_teacher_weights: tuple = field(("imagenet",), "distinit: weights of each "
                                            "keras.applications teacher (imagenet, a local "
                                            "file, or none), one per teacher or one for all.")
    distinit_frames: str = field("random", "distinit: frames the teachers see: the center "
                                 "frame or random ones.", choices=FRAME_PICKS)
    distinit_num_frames: int = field(1, "distinit: frames per clip whose teacher logits are "
                                     "averaged (Eq. 1; K random frames).", min=1)
    distinit_temperature: float = field(1.0, "distinit: softmax temperature tau (Eq. 1, 2).")
    distinit_loss: str = field("ce", "distinit: soft-target cross-entropy (Eq. 2) or MSE on "
                               "logits (Table 3).", choices=LOSSES)
    distinit_entropy_threshold: float | None = field(
        None, "distinit: zero weight for clips whose target entropy (nats) is above this.")
    distinit_precomputed: bool = field(False, "distinit: read the teachers' per-frame logits "
                                       "stored with the records (python -m "
                                       "d3d_tf.distinit_targets) instead of running them.")
    distinit_loss_weights: tuple = field((), "distinit: loss weight of each teacher (Eq. 3; "
                                         "default 1 each).", item=float)
