"""Flow probes (D3D Sec. 5.2-5.3, Table 1, Figs. 4-5) and the flow-based alternatives to
distillation (Table 6): flow decoders, the probe task, flow-loss / CNN-flow tasks, EPE tables.

Importing the package loads no TensorFlow: `SECTION` is its part of the training config
(`d3d_tf.training.config.assemble`), `register_tasks()` registers its `--task`s.
"""
from d3d_tf.probes.config import FlowConfig

SECTION = ("flow", FlowConfig, "Flow tasks (--task=flow_loss, cnn_flow)")
TASKS = ("flow_loss", "cnn_flow")


def register_tasks() -> None:
    """Registers this method's training tasks (`d3d_tf.training.task`; imports TensorFlow)."""
    from d3d_tf.probes import flow_tasks  # noqa: F401
