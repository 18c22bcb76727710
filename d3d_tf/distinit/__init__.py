"""DistInit: frozen image teachers label the frames of unlabeled videos; video students learn
from them (task, stored targets, representation pictures, the entropy figure).

Importing the package loads no TensorFlow: `SECTION` is its part of the training config
(`d3d_tf.training.config.assemble`), `register_tasks()` registers its `--task`s.
"""
from d3d_tf.distinit.config import DistInitConfig

SECTION = ("distinit", DistInitConfig, "DistInit (--task=distinit)")
TASKS = ("distinit",)


def register_tasks() -> None:
    """Registers this method's training tasks (`d3d_tf.training.task`; imports TensorFlow)."""
    from d3d_tf.distinit import task as distinit  # noqa: F401
