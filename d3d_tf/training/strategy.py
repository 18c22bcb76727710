"""tf.distribute strategies by name, and the batch-size bookkeeping that goes with them.

    strategy = make_strategy("mirrored")          # all local GPUs (or CPU)
    per_replica = per_replica_batch(strategy, 12) # error if 12 % replicas != 0

`multi_worker` is `tf.distribute.MultiWorkerMirroredStrategy`, configured by the `TF_CONFIG`
environment variable exactly as TF documents
(https://www.tensorflow.org/guide/distributed_training#setting_up_the_tf_config_environment_variable):

    TF_CONFIG='{"cluster": {"worker": ["host1:port", "host2:port"]},
                "task": {"type": "worker", "index": 0}}'

Every worker runs the same command; worker 0 is the chief (writes checkpoints, summaries and
the model directory; the others write to throw-away directories, as TF recommends).
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")
_multi_worker: list = []  # this process's MultiWorkerMirroredStrategy, once made


def make_strategy(name: str) -> tf.distribute.Strategy:
    """`default` (one device, no replication), `mirrored` (one process, all local devices)
    or `multi_worker` (one process per worker, `TF_CONFIG`).

    `multi_worker` configures TensorFlow's collective ops, which must happen before the
    process runs its first TensorFlow op (anything eager: reading a record, a tf.constant);
    so make it first, and every later call returns that same strategy."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                             "(cluster and task), see d3d_tf/training/strategy.py")
        if not _multi_worker:
            _multi_worker.append(tf.distribute.MultiWorkerMirroredStrategy())
        return _multi_worker[0]
    raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def per_replica_batch(strategy: tf.distribute.Strategy, global_batch: int) -> int:
    """Per-replica batch for `global_batch`; ValueError if it does not divide evenly."""
    replicas = strategy.num_replicas_in_sync
    if global_batch < 1 or global_batch % replicas:
        raise ValueError(f"--batch_size={global_batch} (the global batch) is not divisible "
                         f"by the {replicas} replicas of the strategy: use a multiple of "
                         f"{replicas} (per-replica batch x replicas)")
    return global_batch // replicas


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes outputs (always true outside multi-worker training)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return True
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and
                                    "chief" not in json.loads(os.environ.get("TF_CONFIG", "{}"))
                                    .get("cluster", {}))


def worker_dir(model_dir: str, strategy: tf.distribute.Strategy) -> str:
    """`model_dir` on the chief; a private temporary directory on other workers (they must
    still write checkpoints, because saving is a collective operation)."""
    if is_chief(strategy):
        return model_dir
    resolver = strategy.cluster_resolver
    return os.path.join(model_dir, "tmp_workers", f"{resolver.task_type}_{resolver.task_id}")
