"""Settings of training shared by every task, as TF-free dataclasses (each field a flag).

`OptimizerConfig` and `ScheduleConfig` are read by `d3d_tf.training.optimization`; the run's
`TrainConfig` (`d3d_tf.training.trainer`) holds their fields, and so can any other tool's
config (the probe's).
"""
from __future__ import annotations

import dataclasses

from d3d_tf.core.config_flags import field

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")


@dataclasses.dataclass
class OptimizerConfig:
    """The optimizer: SGD with momentum or AdamW, and its peak learning rate."""
    optimizer: str = field("sgd", "SGD with momentum or AdamW.", choices=OPTIMIZERS)
    learning_rate: float = field(0.1, "Peak learning rate.", min=0)
    momentum: float = field(0.9, "SGD momentum.", min=0)
    adamw_weight_decay: float = field(1e-4, "AdamW decoupled weight decay.", min=0)


@dataclasses.dataclass
class ScheduleConfig:
    """The learning rate over the steps: a linear warmup from 0, then the schedule."""
    schedule: str = field("cosine", "Learning-rate schedule after the warmup.",
                          choices=SCHEDULES)
    warmup_steps: int = field(0, "Linear warmup steps from 0.", min=0)
    step_boundaries: tuple = field((), "step schedule: steps where lr *= step_factor.", item=int)
    step_factor: float = field(0.1, "step schedule: decay factor.")
    cosine_alpha: float = field(0.0, "cosine schedule: final lr fraction.")
