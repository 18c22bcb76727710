"""The methods d3d_tf trains, one entry each: their config sections and their `--task`s.

    from d3d_tf import methods
    config = methods.TrainConfig(model_dir=..., train_data=..., task="distill", teacher=...)
    methods.register_tasks()      # imports TensorFlow: every method's TrainingTask

Each method is a package whose `__init__` (no TensorFlow) gives `SECTION`, its part of the
training config, and `register_tasks()`. The core (`training/`, `models/`, `data/`,
`export/`) imports none of them: adding a method is its folder plus its entry in `METHODS`.
"""
from __future__ import annotations

from d3d_tf import ava, distill, distinit, probes
from d3d_tf.training import config

METHODS = (distill, distinit, ava, probes)

# The training config: the core's sections and one section per method.
TrainConfig = config.assemble([m.SECTION for m in METHODS])


def register_tasks() -> None:
    """Registers every `--task`: the core's (classify, finetune) and each method's."""
    from d3d_tf.training import classify  # noqa: F401
    for method in METHODS:
        method.register_tasks()


def section_of(task: str) -> str | None:
    """The help title of the method section of `--task=task` (None: a core task)."""
    for method in METHODS:
        if task in method.TASKS:
            return method.SECTION[2]
    return None
