"""Training tasks: keras.Model subclasses with their own `train_step` / `test_step`.

    task = Classifier(network, modality="rgb")                  # RGB or flow S3D-G
    task.compile(optimizer=...)
    logs = task.train_step(batch)   # batch: dict from d3d_tf.data.pipeline.make_dataset

A step works on one device and, called through `strategy.run`, on every replica of a
tf.distribute strategy: the loss whose gradient is taken is the per-replica SUM of the
per-example losses divided by the GLOBAL batch size, plus the L2 weight decay divided by the
number of replicas (each replica holds the same weights, and the optimizer SUMS replica
gradients). The logged values are the true ones: the mean over this replica's examples (so a
MEAN over replicas with equal batches is the global-batch mean) and the full L2 term — not
Keras' `compute_loss`, which divides by the replica count.

Mixed precision: under a float16/bfloat16 Keras policy the networks compute in that dtype and
keep float32 variables; logits are cast to float32 before any loss (losses, logged values and
accuracies are float32). With a `keras.optimizers.LossScaleOptimizer` (float16) the step
multiplies the loss by the optimizer's dynamic loss scale, divides the gradients by it again
(exact: the scale is a power of two) for the logged norm and the clipping, and hands the
optimizer the scaled gradients it expects: on non-finite gradients it skips the update and
halves the scale (such a step logs `grad_norm` 0); `loss_scale` is then also logged.

Methods subclass `Task` (D3D's `d3d_tf.distill.task.Distiller`, DistInit's, AVA's, the
probes'). Logged keys: `ce` (cross-entropy, nats), `l2` (weight decay),
`total` (the weighted objective), `top1`, `top5` (fractions), `grad_norm` (global L2 norm of
the gradient before clipping).
"""
from __future__ import annotations

import os

import keras
import tensorflow as tf

from d3d_tf.models import registry, saving
from d3d_tf.training import losses


def _num_replicas() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


class Task(keras.Model):
    """Shared step logic. Subclasses implement `loss_terms`.

    network: the classifier being trained (its output is logits [B,K] or a dict with `logits`).
    modality: batch key fed to `network` (`rgb` [B,T,H,W,3] or `flow` [B,T,H,W,2]).
    global_batch_size: the batch over all replicas; None = this replica's batch x replicas.
    clip_norm: clip the (all-reduced) gradient to this global L2 norm; None = no clipping.
    """

    def __init__(self, network: keras.Model, *, modality: str = "rgb",
                 label_smoothing: float = 0.0, global_batch_size: int | None = None,
                 clip_norm: float | None = None, **kwargs):
        super().__init__(**kwargs)
        if modality not in ("rgb", "flow"):
            raise ValueError(f"modality must be 'rgb' or 'flow', got {modality!r}")
        self.network = network
        self.modality = modality
        self.label_smoothing = float(label_smoothing)
        self.global_batch_size = global_batch_size
        self.clip_norm = clip_norm

    def call(self, inputs, training=False):
        x = inputs[self.modality] if isinstance(inputs, dict) else inputs
        out = self.network(x, training=training)
        return tf.cast(out["logits"] if isinstance(out, dict) else out, tf.float32)

    def loss_terms(self, batch, training: bool):
        """Returns (terms {name: per-example float32 [B]}, weights {name: float}, logits [B,K])."""
        raise NotImplementedError

    def _objective(self, batch, training):
        terms, weights, logits = self.loss_terms(batch, training)
        per_example = tf.add_n([weights[n] * terms[n] for n in terms])
        l2 = tf.add_n([tf.cast(x, tf.float32) for x in self.network.losses]) \
            if self.network.losses else tf.constant(0.0)
        return terms, per_example, l2, logits

    def _logs(self, batch, terms, per_example, l2, logits):
        labels = batch["label"]
        logs = {n: tf.reduce_mean(v) for n, v in terms.items()}
        logs["l2"] = l2
        logs["total"] = tf.reduce_mean(per_example) + l2
        logs["top1"] = tf.reduce_mean(losses.topk_correct(labels, logits, 1))
        logs["top5"] = tf.reduce_mean(losses.topk_correct(labels, logits, 5))
        return logs

    def train_step(self, batch):
        replicas = _num_replicas()
        variables = self.network.trainable_variables
        loss_scaled = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        if loss_scaled:   # the scale of this step, read before the optimizer updates it
            loss_scale = tf.identity(tf.cast(self.optimizer.scale_loss(1.0), tf.float32))
        with tf.GradientTape() as tape:
            terms, per_example, l2, logits = self._objective(batch, training=True)
            global_batch = self.global_batch_size
            if global_batch is None:
                global_batch = tf.shape(per_example)[0] * replicas
            scaled = tf.reduce_sum(per_example) / tf.cast(global_batch, tf.float32) \
                + l2 / replicas
            if loss_scaled:
                scaled = scaled * loss_scale
        grads = tape.gradient(scaled, variables)
        ctx = tf.distribute.get_replica_context()
        if loss_scaled:
            grads = [None if g is None else g / loss_scale for g in grads]
            if ctx is not None and replicas > 1:
                # Every replica must skip (or apply) the same step: one replica's overflow
                # makes all replicas' gradients non-finite.
                finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g))
                                        for g in grads if g is not None])
                bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite,
                                                                              tf.float32))
                poison = tf.where(bad > 0, float("nan"), 1.0)
                grads = [None if g is None else g * poison for g in grads]
        if self.clip_norm and ctx is not None and replicas > 1:
            # Clip the GLOBAL gradient: all-reduce here, clip, then hand the optimizer
            # grad/replicas, which its own all-reduce (SUM) turns back into the global gradient.
            grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            grads, norm = tf.clip_by_global_norm(grads, self.clip_norm)
            grads = [g / replicas for g in grads]
        elif self.clip_norm:
            grads, norm = tf.clip_by_global_norm(grads, self.clip_norm)
        else:
            norm = tf.linalg.global_norm(grads)
        if loss_scaled:
            grads = [None if g is None else g * loss_scale for g in grads]
            norm = tf.where(tf.math.is_finite(norm), norm, 0.0)
        self.optimizer.apply_gradients(zip(grads, variables))
        logs = self._logs(batch, terms, per_example, l2, logits)
        logs["grad_norm"] = norm
        if loss_scaled:
            logs["loss_scale"] = loss_scale
        return logs

    def test_step(self, batch):
        terms, per_example, l2, logits = self._objective(batch, training=False)
        return self._logs(batch, terms, per_example, l2, logits)


class Classifier(Task):
    """Action classification on one modality: softmax cross-entropy (+ label smoothing).

    Also the fine-tuning task: build `network` with the new classes, then
    `init_from_model_dir(network, dir)` and optionally `freeze_until(network, "4F")`.
    """

    def loss_terms(self, batch, training):
        logits = self(batch, training=training)
        ce = losses.cross_entropy(batch["label"], logits, label_smoothing=self.label_smoothing)
        return {"ce": ce}, {"ce": 1.0}, logits


# --- building blocks for the tasks -------------------------------------------------------


def init_from_model_dir(network: keras.Model, directory: str) -> list:
    """Fine-tuning init: loads every variable of `directory` except the head (`Logits.`).

    Returns the loaded variable paths; raises ValueError naming the directory on a mismatch.
    """
    spec = saving.load_spec(directory)
    if spec.config.get("in_channels") != network.d3d_config.in_channels:
        raise ValueError(f"{directory}: a {spec.modality} model ({spec.config.get('in_channels')} "
                         f"input channels) cannot initialize a network with "
                         f"{network.d3d_config.in_channels} input channels")
    directory = saving.resolve_model_dir(directory)  # a run directory works too
    return saving.load_weights(network, os.path.join(directory, saving.WEIGHTS_FILE),
                               skip_prefixes=("Logits.",))


def freeze_until(network: keras.Model, endpoint: str) -> list[str]:
    """Freezes every layer of the blocks up to and including `endpoint` (e.g. `4F`, or
    `layer3` for a video ResNet).

    Frozen BatchNorm layers run in inference mode (Keras 3). Returns the frozen layer names.
    """
    family = registry.family_of_network(network)
    valid = family.valid_endpoints
    last = valid.index(family.resolve_endpoint(endpoint))
    frozen_blocks = set(valid[:last + 1])
    frozen = []
    for layer in network.layers:
        if layer.name.split(".")[0] in frozen_blocks:
            layer.trainable = False
            frozen.append(layer.name)
    return frozen
