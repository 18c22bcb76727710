"""Per-frame teacher logits stored with a video's record (DistInit's precomputed targets).

Context features added to the SequenceExample (`d3d_tf.data.records`):

    teacher/logits    float [N*D]   row-major [N frames, D logits], D = sum of teacher classes
    teacher/dim       int   [1]     D
    teacher/names     bytes [M]     the teachers, in order
    teacher/classes   int   [M]     classes per teacher (sums to D)

The pipeline, given `FRAME_FEATURE` in `PipelineConfig.frame_features`, gathers the rows of
the clip's frames into `teacher_logits` float32 `[B,T,D]`, so a training step runs no teacher.

Beside each labelled shard, `STATE_DIR/<shard name>.json` records what made it (the teachers'
sources, file contents and weights, the RGB range, the input shard; `d3d_tf.core.fingerprint`).
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


def read_logits(serialized: bytes) -> tuple[np.ndarray, list[str], list[int]]:
    """A record's stored logits float32 `[N frames, D]`, the teachers' names and classes per
    teacher; an empty `[0,0]` array when the record has none."""
    names, classes = read_info(serialized)
    if not classes:
        return np.zeros((0, 0), np.float32), [], []
    feature = tf.train.SequenceExample.FromString(serialized).context.feature
    values = np.asarray(feature[LOGITS_KEY].float_list.value, np.float32)
    return values.reshape(-1, sum(classes)), names, classes


def first_teacher_entropies(paths) -> tuple[np.ndarray, str, int]:
    """Entropy (nats, natural log) of the first teacher's softmax over its own classes, per
    stored frame of every record in the shards `paths`: float64 `[F]`, with that teacher's
    name and number of teachers. Raises ValueError naming the shards when none has logits."""
    from d3d_tf.data import records

    out, name, teachers = [], "", 0
    for path in paths:
        for raw in records.read_records(path):
            logits, names, classes = read_logits(raw)
            if not classes:
                continue
            name, teachers = (names[0] if names else "teacher 1"), len(classes)
            z = logits[:, :classes[0]].astype(np.float64)
            z -= z.max(-1, keepdims=True)
            log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
            out.append(-(np.exp(log_p) * log_p).sum(-1))
    if not out:
        raise ValueError(f"no stored teacher logits (teacher/logits) in {', '.join(paths)}: "
                         "give the records python -m d3d_tf.distinit_targets wrote")
    return np.concatenate(out), name, teachers


# The pipeline's per-frame feature (`d3d_tf.data.pipeline.PipelineConfig.frame_features`).
FRAME_FEATURE = ("teacher_logits", gather)
