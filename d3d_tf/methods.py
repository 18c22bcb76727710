"""The methods d3d_tf trains: importing this module registers every `--task`.

Each line imports one method's module that registers its tasks
(`d3d_tf.training.task.register`); the core (`training/`, `models/`, `data/`, `export/`)
imports none of them. Adding a method is a folder plus one line here.
"""
# isort: skip_file  (the order is that of `--task`'s list of choices)
from d3d_tf.ava import ava_task  # noqa: F401  ava
from d3d_tf.distill import task as distill_task  # noqa: F401  distill
from d3d_tf.distinit import distinit  # noqa: F401  distinit
from d3d_tf.probes import flow_tasks  # noqa: F401  flow_loss, cnn_flow
from d3d_tf.training import classify  # noqa: F401  classify, finetune
