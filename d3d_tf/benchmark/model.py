"""Throughput of a model's forward pass and train step (used by `python -m d3d_tf.benchmark`).

Modes: `eager` (Keras call per step), `function` (`tf.function`), `xla` (`jit_compile=True`).
Precisions: `float32`, `bfloat16` (Keras `mixed_bfloat16`: bf16 compute, fp32 variables).
Conv lowerings: `2d`, `3d` (`layers.Conv3D`), or `auto` (what this CPU gets by default).
Times are medians over `iters` calls after `warmup` calls (the first call traces/compiles).
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from d3d_tf import models
from d3d_tf.benchmark import latency
from d3d_tf.models import cpu_choices, summary

MODES = ("eager", "function", "xla")
PRECISIONS = ("float32", "bfloat16")


@dataclasses.dataclass
class SpeedResult:
    what: str  # "inference" or "train_step"
    model: str
    frames: int
    size: int
    batch: int
    mode: str
    precision: str
    conv_impl: str  # as built: `auto` is resolved for this CPU
    depth_multiplier: float
    seconds_per_batch: float
    clips_per_second: float
    gflops_per_clip: float  # forward pass, 2 x MACs
    achieved_gflops: float  # forward FLOPs (x3 for a train step) per second


def median_seconds(fn, *, warmup: int = 1, iters: int = 3) -> float:
    """Median wall time of `fn()` over `iters` calls after `warmup` calls."""
    return latency.measure(fn, warmup=warmup, runs=iters).median_ms / 1e3


def _build(name, frames, size, num_classes, depth_multiplier, precision, conv_impl):
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    previous = keras.mixed_precision.global_policy()
    policy = "mixed_bfloat16" if precision == "bfloat16" else "float32"
    keras.mixed_precision.set_global_policy(policy)
    try:
        return models.build_classifier(
            name,
            num_classes=num_classes,
            input_shape=(frames, size, size, 3),
            depth_multiplier=depth_multiplier,
            conv_impl=conv_impl,
        )
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _compile(fn, mode):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "eager":
        return fn
    return tf.function(fn, jit_compile=(mode == "xla"))


def measure(
    what: str,
    *,
    name: str = "s3dg",
    frames: int = 64,
    size: int = 224,
    batch: int = 1,
    mode: str = "function",
    precision: str = "float32",
    conv_impl: str = "auto",
    depth_multiplier: float = 1.0,
    num_classes: int = 400,
    warmup: int = 1,
    iters: int = 3,
) -> SpeedResult:
    """Times `inference` (forward, training=False) or `train_step` (forward+backward+SGD)."""
    conv_impl = cpu_choices.resolve_conv_impl(conv_impl)
    fn, model = make_step(what, name=name, frames=frames, size=size, batch=batch, mode=mode,
                          precision=precision, conv_impl=conv_impl,
                          depth_multiplier=depth_multiplier, num_classes=num_classes)
    seconds = median_seconds(lambda: np.asarray(fn()), warmup=warmup, iters=iters)
    gflops = summary.total_flops(model) / 1e9
    work = step_gflop(gflops, what, batch)
    return SpeedResult(
        what, name, frames, size, batch, mode, precision, conv_impl, depth_multiplier,
        seconds, batch / seconds, gflops, work / seconds,
    )


def step_gflop(forward_gflop: float, what: str, batch: int) -> float:
    """GFLOPs of one `inference` or `train_step` call on `batch` clips of `forward_gflop` each:
    a train step counts as 3 forward passes (the backward pass ~ 2x the forward)."""
    return forward_gflop * batch * (1 if what == "inference" else 3)


def make_step(what: str, *, name: str = "s3dg", frames: int, size: int, batch: int,
              mode: str = "function", precision: str = "float32", conv_impl: str = "auto",
              depth_multiplier: float = 1.0, num_classes: int = 400):
    """(step function, model): one `inference` or `train_step` on fixed random clips
    `[batch,frames,size,size,3]` in [-1,1], compiled as `mode` says; what `measure` times."""
    conv_impl = cpu_choices.resolve_conv_impl(conv_impl)
    model = _build(name, frames, size, num_classes, depth_multiplier, precision, conv_impl)
    rng = np.random.default_rng(0)
    clips = tf.constant(rng.uniform(-1, 1, (batch, frames, size, size, 3)).astype("float32"))
    labels = tf.constant(rng.integers(0, num_classes, batch).astype("int32"))
    if what == "inference":

        def step():
            return model(clips, training=False)

    elif what == "train_step":
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        optimizer.build(model.trainable_variables)

        def step():
            with tf.GradientTape() as tape:
                logits = tf.cast(model(clips, training=True), tf.float32)
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
                ) + tf.add_n(model.losses)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

    else:
        raise ValueError(f"what must be 'inference' or 'train_step', got {what!r}")
    return _compile(step, mode), model


def activation_bytes_per_clip(name="s3dg", frames=64, size=224, depth_multiplier=1.0) -> int:
    """Bytes of every layer output for one float32 clip: what a train step keeps for backprop."""
    model = models.build_classifier(
        name, num_classes=400, input_shape=(frames, size, size, 3),
        depth_multiplier=depth_multiplier,
    )
    elements = 0
    for layer in model.layers:
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        elements += sum(int(np.prod(o.shape[1:])) for o in outputs)
    return 4 * elements


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux); 8 GiB if it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def largest_batch(what: str, *, memory_fraction=0.5, cap=64, **model_kw) -> int:
    """Largest power-of-two batch whose estimated memory fits `memory_fraction` of free RAM.

    A train step keeps every activation (x2 for their gradients); inference keeps about the
    two largest layers at once, so it is bounded by `cap` long before memory.
    """
    per_clip = activation_bytes_per_clip(**model_kw)
    per_clip = 2 * per_clip if what == "train_step" else per_clip // 8
    budget = memory_fraction * available_memory_bytes()
    batch = 1
    while batch * 2 <= cap and batch * 2 * per_clip <= budget:
        batch *= 2
    return batch


def measure_distillation(
    *,
    frames: int = 64,
    size: int = 224,
    batch: int = 1,
    depth_multiplier: float = 1.0,
    num_classes: int = 400,
    iters: int = 3,
) -> dict:
    """Seconds per train step of the RGB baseline (`Classifier`), of D3D (`Distiller`, which
    adds the frozen flow teacher's forward pass) and of the flow teacher's own training (a
    `Classifier` on 2-channel flow), all with `tf.function`."""
    from d3d_tf.distill.task import Distiller
    from d3d_tf.training import tasks

    rng = np.random.default_rng(0)
    data = {
        "rgb": tf.constant(rng.uniform(-1, 1, (batch, frames, size, size, 3)), tf.float32),
        "flow": tf.constant(rng.uniform(-1, 1, (batch, frames, size, size, 2)), tf.float32),
        "label": tf.constant(rng.integers(0, num_classes, batch), tf.int32),
    }

    def net(channels):
        return models.build_classifier(
            "s3dg", num_classes=num_classes, input_shape=(frames, size, size, channels),
            in_channels=channels, depth_multiplier=depth_multiplier,
        )

    out = {}
    for name, task in (
        ("baseline", tasks.Classifier(net(3), modality="rgb")),
        ("d3d", Distiller(net(3), net(2), teacher_modality="flow")),
        ("teacher", tasks.Classifier(net(2), modality="flow")),
    ):
        task.optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        task.optimizer.build(task.network.trainable_variables)
        step = tf.function(task.train_step)
        out[name] = median_seconds(lambda s=step: np.asarray(s(data)["total"]), iters=iters)
    out["ratio"] = out["d3d"] / out["baseline"]
    return out
