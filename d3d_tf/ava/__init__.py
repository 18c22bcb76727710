"""AVA action localization (D3D Sec. 5.5, Table 5): annotations, the keyframe pipeline, the
detector head, its task, frame-mAP and the export signature.

Importing the package loads no TensorFlow: `SECTION` is its part of the training config
(`d3d_tf.training.config.assemble`), `register_tasks()` registers its `--task`s.
"""
from d3d_tf.ava.config import AvaConfig

SECTION = ("ava", AvaConfig, "AVA detection (--task=ava)")
TASKS = ("ava",)


def register_tasks() -> None:
    """Registers this method's training tasks (`d3d_tf.training.task`; imports TensorFlow)."""
    from d3d_tf.ava import task as ava_task  # noqa: F401
