"""Optimizer, learning-rate schedule and precision of a training run (any task, the probe too).

    optimizer = make_optimizer(OptimizerConfig(...), ScheduleConfig(...), train_steps=1000)

The settings are two small TF-free dataclasses (`d3d_tf.training.config`); a caller with its
own flat settings builds them with `settings_of(config)`.
"""
from __future__ import annotations

import keras
import tensorflow as tf
from absl import logging

from d3d_tf.training.config import OPTIMIZERS, SCHEDULES, OptimizerConfig, ScheduleConfig

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "OptimizerConfig",
    "ScheduleConfig",
    "WarmupSchedule",
    "check_loss_scaling",
    "make_optimizer",
    "make_schedule",
    "make_train_function",
    "set_precision_policy",
    "settings_of",
    "warn_precision",
]


class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `base(warmup_steps)` over `warmup_steps`, then `base(step)`.

    base: a LearningRateSchedule or a constant learning rate (float); either round-trips
    through `get_config` / `from_config`.
    """

    def __init__(self, base, warmup_steps: int):
        self.base = base
        self.warmup_steps = warmup_steps

    def _base(self, step):
        if isinstance(self.base, keras.optimizers.schedules.LearningRateSchedule):
            return tf.cast(self.base(step), tf.float32)
        return tf.constant(float(self.base), tf.float32)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = self._base(step)
        if not self.warmup_steps:
            return lr
        frac = tf.minimum(step / float(self.warmup_steps), 1.0)
        return tf.where(step < self.warmup_steps, frac * self._base(float(self.warmup_steps)),
                        lr)

    def get_config(self):
        base = self.base
        if isinstance(base, keras.optimizers.schedules.LearningRateSchedule):
            base = keras.optimizers.schedules.serialize(base)
        return {"base": base, "warmup_steps": self.warmup_steps}

    @classmethod
    def from_config(cls, config):
        base = config["base"]
        if isinstance(base, dict):
            base = keras.optimizers.schedules.deserialize(base)
        return cls(base, config["warmup_steps"])


def settings_of(config) -> tuple[OptimizerConfig, ScheduleConfig]:
    """The optimizer and schedule settings read off any config holding their fields (the
    fields it lacks keep their defaults)."""
    import dataclasses

    def pick(cls):
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)
                      if hasattr(config, f.name)})

    return pick(OptimizerConfig), pick(ScheduleConfig)


def make_schedule(schedule: ScheduleConfig, learning_rate: float, train_steps: int):
    """The learning rate per optimizer step: `schedule` after a linear warmup to
    `learning_rate`, over `train_steps` steps."""
    s, lr = schedule, learning_rate
    if s.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            0.0 if s.warmup_steps else lr,
            decay_steps=max(train_steps - s.warmup_steps, 1), alpha=s.cosine_alpha,
            warmup_target=lr if s.warmup_steps else None, warmup_steps=s.warmup_steps)
    if s.schedule == "step" and s.step_boundaries:
        bounds = [int(b) for b in s.step_boundaries]
        values = [lr * s.step_factor ** i for i in range(len(bounds) + 1)]
        base = keras.optimizers.schedules.PiecewiseConstantDecay(bounds, values)
        return WarmupSchedule(base, s.warmup_steps)
    return WarmupSchedule(lr, s.warmup_steps)


def make_optimizer(optimizer: OptimizerConfig, schedule: ScheduleConfig, train_steps: int, *,
                   loss_scale: bool = False):
    """The run's optimizer; `loss_scale` wraps it in a `keras.optimizers.LossScaleOptimizer`
    (dynamic loss scaling for float16: the task's train step scales the loss by it)."""
    o = optimizer
    lr = make_schedule(schedule, o.learning_rate, train_steps)
    if o.optimizer == "sgd":
        made = keras.optimizers.SGD(lr, momentum=o.momentum)
    else:
        made = keras.optimizers.AdamW(lr, weight_decay=o.adamw_weight_decay)
    return keras.optimizers.LossScaleOptimizer(made) if loss_scale else made


_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16",
             "mixed_float16": "mixed_float16"}


def warn_precision(precision: str, on_gpu: bool, native_bf16) -> None:
    """Warns where an explicitly asked precision is slow on this machine."""
    if precision == "bfloat16" and not on_gpu and native_bf16 is False:
        logging.warning("precision bfloat16: this CPU has no native bfloat16 (AVX512-BF16 "
                        "or AMX), so bfloat16 convolutions fall back to slow Eigen kernels "
                        "(~10x slower than float32 here); use precision float32.")
    if precision == "mixed_float16" and not on_gpu:
        logging.warning("precision mixed_float16 without a GPU: CPUs have no fast float16 "
                        "convolutions, so this runs slower than float32 (it is meant for "
                        "GPUs; here it only checks a run).")


def check_loss_scaling(clip_norm, precision: str, replicas: int) -> None:
    """ValueError for what loss scaling does not support: `--clip_norm` with several replicas
    (the clipped, all-reduced gradients and the LossScaleOptimizer's conditional update issue
    collectives that TensorFlow mismatches across replicas)."""
    if precision == "mixed_float16" and clip_norm and replicas > 1:
        raise ValueError(f"--clip_norm={clip_norm:g} with --precision=mixed_float16 works on "
                         f"one replica only, this strategy has {replicas}: drop --clip_norm or "
                         "use --precision=float32 or bfloat16")


def set_precision_policy(precision: str) -> None:
    """Sets Keras' global dtype policy for a resolved `precision` (float32, bfloat16 or
    mixed_float16); the networks built afterwards compute in it (variables stay float32)."""
    keras.mixed_precision.set_global_policy(_POLICIES[precision])


def make_train_function(strategy: tf.distribute.Strategy, task, *, jit_compile: bool = False):
    """`tf.function` running `task.train_step` on every replica of `strategy` on one
    distributed batch; returns the logs averaged over replicas. `jit_compile` compiles each
    replica's step with XLA (the input pipeline and the replica reduction stay outside)."""
    step = tf.function(task.train_step, jit_compile=True) if jit_compile else task.train_step

    @tf.function
    def train_fn(batch):
        logs = strategy.run(step, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                for k, v in logs.items()}

    return train_fn


