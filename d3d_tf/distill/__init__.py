"""D3D (Stroud et al. 2020): an RGB student distilled from a frozen teacher (`--task=distill`).
Importing the package loads no TensorFlow: `SECTION` is its part of the training config
(`d3d_tf.training.config.assemble`), `register_tasks()` registers its `--task`s.
"""
from d3d_tf.distill.config import DistillConfig

SECTION = ("distill", DistillConfig, "D3D distillation (--task=distill)")
TASKS = ("distill",)


def register_tasks() -> None:
    """Registers this method's training tasks (`d3d_tf.training.task`; imports TensorFlow)."""
    from d3d_tf.distill import task  # noqa: F401
