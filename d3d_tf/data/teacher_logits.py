"""Per-frame teacher logits stored with a video's record (DistInit's precomputed targets).

Context features added to the SequenceExample (`d3d_tf.data.records`):

    teacher/logits    float [N*D]   row-major [N frames, D logits], D = sum of teacher classes
    teacher/dim       int   [1]     D
    teacher/names     bytes [M]     the teachers, in order
    teacher/classes   int   [M]     classes per teacher (sums to D)

The pipeline (`PipelineConfig.teacher_logits`) gathers the rows of the clip's frames into
`teacher_logits` float32 `[B,T,D]`, so a training step runs no teacher.

Beside each labelled shard, `STATE_DIR/<shard name>.json` records what made it (the teachers'
sources, file contents and weights, the RGB range, the input shard; `d3d_tf.fingerprint`).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

LOGITS_KEY = "teacher/logits"
DIM_KEY = "teacher/dim"
NAMES_KEY = "teacher/names"
CLASSES_KEY = "teacher/classes"
STATE_DIR = ".distinit_targets"  # the shards' fingerprints, in the shards' folder


def add_to_example(example: tf.train.SequenceExample, logits: np.ndarray, names, classes):
    """Adds `logits` float `[N,D]` (one row per stored frame) to `example` in place."""
    logits = np.asarray(logits, np.float32)
    n = len(example.feature_lists.feature_list["image/encoded"].feature)
    if logits.ndim != 2 or logits.shape[0] != n or logits.shape[1] != sum(classes):
        raise ValueError(f"teacher logits of shape {logits.shape} for a video of {n} frames and "
                         f"{sum(classes)} teacher classes")
    feature = example.context.feature
    feature[LOGITS_KEY].float_list.value[:] = logits.reshape(-1).tolist()
    feature[DIM_KEY].int64_list.value[:] = [logits.shape[1]]
    feature[NAMES_KEY].bytes_list.value[:] = [str(s).encode() for s in names]
    feature[CLASSES_KEY].int64_list.value[:] = [int(k) for k in classes]
    return example


def read_info(serialized: bytes) -> tuple[list[str], list[int]]:
    """(teacher names, classes per teacher) of a record; ([], []) when it has no logits."""
    ex = tf.train.SequenceExample.FromString(serialized)
    feature = ex.context.feature
    if LOGITS_KEY not in feature:
        return [], []
    return ([b.decode() for b in feature[NAMES_KEY].bytes_list.value],
            [int(k) for k in feature[CLASSES_KEY].int64_list.value])


def gather(serialized, frame_indices, k, t):
    """Rows `frame_indices` (int32 `[K*T]`) of a record's logits as float32 `[K,T,D]`."""
    ctx = tf.io.parse_single_example(serialized, {
        LOGITS_KEY: tf.io.VarLenFeature(tf.float32),
        DIM_KEY: tf.io.FixedLenFeature([1], tf.int64, default_value=[0]),
    })
    dim = tf.cast(ctx[DIM_KEY][0], tf.int32)
    check = tf.debugging.assert_positive(
        dim, message="record has no teacher/logits: run python -m d3d_tf.distinit_targets on "
                     "the shards, or train with on-the-fly teachers")
    with tf.control_dependencies([check]):
        table = tf.reshape(tf.sparse.to_dense(ctx[LOGITS_KEY]), [-1, dim])
    return tf.reshape(tf.gather(table, frame_indices), [k, t, dim])
