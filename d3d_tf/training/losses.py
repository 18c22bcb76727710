"""Per-example losses of the D3D paper (Eq. 1-2) and accuracy counts.

Every function returns one value per example (shape [B]) so that a distributed step can
divide the per-replica SUM by the GLOBAL batch size for gradients (each replica's gradients
are then all-reduced by summing) while the logged value is the plain batch mean.

Distillation loss (D3D, Eq. 2):

    L_d = 1/(N-1) * sum_i (f_s(x_i) - f_t(x_i))^2

The paper calls L_d "the mean squared error between the pre-softmax outputs" and writes the
sum over the N clips; it writes no sum over the K classes (the square of a vector), and the
1/(N-1) with i running 0..N is an off-by-one in the notation (there are N clips x_0..x_{N-1}).
We implement the mean squared error as TensorFlow defines it (`tf.losses.mean_squared_error`,
the function the authors' TF code base would call): the MEAN over clips AND classes (and over
T,H,W,C for a feature map). The paper's own remarks pin the reduction down: lambda = 1 makes
L_d "roughly match" the cross-entropy at the logits (a SUM over 400 classes would be ~400x
larger), and lambda = 100 is needed at the 4F feature map, whose elements are small post-ReLU
activations — both only hold for the element-wise mean.
"""
from __future__ import annotations

import tensorflow as tf


def cross_entropy(labels, logits, *, label_smoothing: float = 0.0):
    """Softmax cross-entropy per example.

    labels: int [B] class indices. logits: float [B,K] (pre-softmax). Returns float32 [B] (nats).
    With label_smoothing e the target is (1-e)*onehot + e/K.
    """
    logits = tf.cast(logits, tf.float32)
    num_classes = tf.shape(logits)[-1]
    onehot = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float32)
    if label_smoothing:
        onehot = onehot * (1.0 - label_smoothing) + label_smoothing / tf.cast(num_classes,
                                                                               tf.float32)
    return tf.nn.softmax_cross_entropy_with_logits(labels=onehot, logits=logits)


def distillation_mse(student, teacher):
    """Eq. 2 per example: mean over all non-batch axes of (student - teacher)^2.

    student, teacher: float [B,K] logits or [B,T,H,W,C] feature maps of the same shape.
    The teacher is wrapped in stop_gradient: no gradient ever flows into it.
    Returns float32 [B]; its batch mean is the paper's L_d.
    """
    student = tf.cast(student, tf.float32)
    teacher = tf.stop_gradient(tf.cast(teacher, tf.float32))
    if student.shape.rank is not None and teacher.shape.rank is not None and \
            student.shape[1:].is_fully_defined() and teacher.shape[1:].is_fully_defined() and \
            student.shape[1:] != teacher.shape[1:]:
        raise ValueError(f"distillation: student output {student.shape} and teacher output "
                         f"{teacher.shape} differ in shape")
    sq = tf.square(student - teacher)
    axes = tf.range(1, tf.rank(sq))
    return tf.reduce_mean(sq, axis=axes)


def topk_correct(labels, logits, k: int):
    """1.0 where the label is among the top-k logits, else 0.0: float32 [B]."""
    logits = tf.cast(logits, tf.float32)
    k = min(k, int(logits.shape[-1])) if logits.shape[-1] is not None else k
    return tf.cast(tf.math.in_top_k(tf.cast(labels, tf.int32), logits, k), tf.float32)
