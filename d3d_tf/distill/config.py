"""The settings of `--task=distill` (a section of the training config; TF-free)."""
from __future__ import annotations

import dataclasses

from d3d_tf.core.config_flags import field


@dataclasses.dataclass
class DistillConfig:
    """D3D: the frozen teacher and where and how much the student matches it (Eq. 1)."""
    teacher: str | None = field(None, "distill: model directory of the frozen teacher.")
    distill_endpoints: tuple = field(("logits",), "distill: where to match the teacher: logits "
                                     "and/or endpoints (2C, 4C, 4F, ... or slim names).",
                                     aliases=("distill_endpoint",))
    distill_weights: tuple = field((1.0,), "distill: lambda of Eq. 1, one per "
                                   "--distill_endpoints value (or one for all).", item=float,
                                   aliases=("distill_weight",))
    action_loss_weight: float = field(1.0, "distill: weight of the CE loss; 0 = 'D3D without "
                                      "action loss'.")
    distill_lambda_rule: bool = field(False, "distill: the paper's rule for lambda (Sec. 5.6): "
                                      "the first step multiplies each --distill_weights value "
                                      "by the action loss over that endpoint's L_d on its "
                                      "batch, so lambda * L_d starts equal to the action loss; "
                                      "the factor is kept in checkpoints.")
