"""The training loop: `run(config, task)` trains any registered task on any strategy.

Keras 3 `fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), so this loop
calls the task's `train_step` through `strategy.run` on a dataset distributed with
`strategy.distribute_datasets_from_function` (each input pipeline reads its share of the
shards and batches the per-replica batch).

Outputs under `model_dir`:
  ckpt/            tf.train.CheckpointManager checkpoints (network, optimizer incl. its step
                   counter); a rerun with the same model_dir resumes from the newest intact one
  train/, eval/    TensorBoard summaries (loss terms, learning rate, clips/s, eval metrics,
                   frames)
  model/           what the task saves (`TrainingTask.save`), also rewritten at each evaluation
  train_summary.json  steps, step time, first / last / mean train logs, the settings, metrics
"""
from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from d3d_tf.core import atomic, run_lock
from d3d_tf.core import progress as progress_lib
from d3d_tf.data import damaged_shards, read_errors
from d3d_tf.data import service as data_service
from d3d_tf.models import cpu_choices
from d3d_tf.training import checkpoints, config, optimization, summaries, tasks
from d3d_tf.training import strategy as strategy_lib


def make_optimizer(c, *, loss_scale: bool = False):
    """The optimizer and schedule of run settings `c` (`optimization.make_optimizer`)."""
    return optimization.make_optimizer(*optimization.settings_of(c), c.train_steps,
                                       loss_scale=loss_scale)


@contextlib.contextmanager
def held(c):
    """What a run holds around `run`: `c.model_dir`'s run lock (a second process on the same
    folder is refused, `run_lock.RunLockedError` naming the first), read errors of
    --train_data / --eval_data in one line, and the caller's Keras dtype policy, restored on
    return and on error."""
    policy = keras.mixed_precision.global_policy()
    try:
        with run_lock.hold(c.model_dir, run_lock.lock_name(c.strategy)), \
                read_errors.explained(c.train_data, c.eval_data):
            yield
    finally:
        keras.mixed_precision.set_global_policy(policy)


def run(c, task, *, make_optimizer=make_optimizer) -> dict:
    """Trains (or resumes) `task` (a `d3d_tf.training.task.TrainingTask`) with the run
    settings `c` (a TrainConfig); returns the summary written to train_summary.json.
    `make_optimizer(c, loss_scale=...)`: the optimizer (default: the settings' optimizer and
    schedule, `optimization.make_optimizer`).

    Call it inside `held(c)` (the run lock, the dtype policy)."""
    names = task.label_names()
    strategy = strategy_lib.make_strategy(c.strategy)
    replicas = strategy.num_replicas_in_sync
    per_replica = strategy_lib.per_replica_batch(strategy, c.batch_size)
    precision = task.precision(len(names) or 1, per_replica)
    optimization.check_loss_scaling(c.clip_norm, precision, replicas)
    optimization.set_precision_policy(precision)
    logging.info("precision %s%s, conv_impl %s, jit_compile %s (%s)", precision,
                 " (auto)" if c.precision == "auto" else "",
                 cpu_choices.resolve_conv_impl(c.conv_impl), c.jit_compile,
                 cpu_choices.describe(cpu_choices.cpu_flags()))
    chief = strategy_lib.is_chief(strategy)
    out_dir = strategy_lib.worker_dir(c.model_dir, strategy)
    os.makedirs(out_dir, exist_ok=True)
    tf.random.set_seed(c.seed)
    keras.utils.set_random_seed(c.seed)
    logging.info("strategy %s: %d replica(s), global batch %d = %d per replica",
                 c.strategy, replicas, c.batch_size, per_replica)

    with strategy.scope():
        step_model, network = task.build(len(names), c.batch_size)
        step_model.compile(optimizer=make_optimizer(c, loss_scale=precision == "mixed_float16"))
        optimizer = step_model.optimizer
        optimizer.build(network.trainable_variables)
        ckpt = tf.train.Checkpoint(network=network, optimizer=optimizer,
                                   **task.checkpoint_state(step_model))
    checkpoints.remove_temp_dirs(os.path.join(out_dir, "ckpt"))
    # The newest intact checkpoint (damaged ones are skipped loudly), before the manager
    # reads the folder's checkpoint list.
    latest = checkpoints.restore_newest_intact(ckpt, os.path.join(c.model_dir, "ckpt"),
                                               update_state=chief)
    manager = tf.train.CheckpointManager(ckpt, os.path.join(out_dir, "ckpt"),
                                         max_to_keep=c.max_checkpoints)
    if latest:
        logging.info("resumed from %s at step %d", latest, int(optimizer.iterations.numpy()))
    else:
        task.init_weights(network)
    if c.freeze_until:
        frozen = tasks.freeze_until(network, c.freeze_until)
        logging.info("froze %d layers up to %s", len(frozen), c.freeze_until)
    start = int(optimizer.iterations.numpy())

    modalities = task.modalities()
    # Reseed from the start step so that a resumed run does not replay the same clips.
    seed = c.seed + start
    damage = damaged_shards.DamageLog() if c.skip_corrupt_records else None

    def dataset_fn(ctx):
        ds = task.train_dataset(seed, modalities, ctx, damage)
        return data_service.distribute(ds, c.data_service) if c.data_service else ds

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    train_fn = optimization.make_train_function(strategy, step_model, jit_compile=c.jit_compile)

    writer = tf.summary.create_file_writer(os.path.join(out_dir, "train")) if chief \
        else tf.summary.create_noop_writer()
    eval_writer = tf.summary.create_file_writer(os.path.join(out_dir, "eval")) if chief \
        else tf.summary.create_noop_writer()
    metrics: dict = {}

    def run_eval(step):
        nonlocal metrics
        if not c.eval_data:
            return
        t0 = time.time()
        metrics = task.evaluate(network, damage)
        logging.info("%s", task.eval_line(step, metrics, time.time() - t0))
        with eval_writer.as_default():
            for k, v in metrics.items():
                summaries.scalar(f"eval/{k}", v, step=step)
        if chief:
            task.save(os.path.join(c.model_dir, "model"), network, names, metrics, step,
                      modalities)

    step = start
    t_last, steps_last = time.time(), 0
    t_begin = time.time()
    step_times = []
    # The ETA's rate counts from the end of the first step (which traces and compiles).
    progress = progress_lib.Progress(c.train_steps - start)
    logs, first_logs, history = {}, {}, []
    # The last log_every steps' logs (small tensors, no device sync): their mean goes into
    # train_summary.json, steadier than the last batch alone.
    recent = collections.deque(maxlen=c.log_every)
    while step < c.train_steps:
        try:
            batch = next(iterator)
        except StopIteration:  # the training data repeats: it holds no record at all
            raise read_errors.nothing_read("--train_data", c.train_data, damage) from None
        logs = train_fn(batch)
        recent.append(logs)
        step += 1
        steps_last += 1
        progress.update()
        if step == start + 1 or step % c.log_every == 0 or step == c.train_steps:
            values = {k: float(v) for k, v in logs.items()}     # syncs with the device
            if step == 1:  # the losses at the start, for the λ·L_d ≈ CE rule (paper Sec. 5.6)
                first_logs = values
            if not all(math.isfinite(v) for v in values.values()):
                raise FloatingPointError(f"non-finite loss at step {step}: {values}")
            history.append({"step": step, **values})
            now = time.time()
            if step > start + 1:
                step_times.append((now - t_last) / steps_last)
            clips_per_s = steps_last * c.batch_size / max(now - t_last, 1e-9)
            lr = float(optimizer.learning_rate)
            logging.info("%sstep %d/%d  %s  lr %.3g  %.1f clips/s  ETA %s%s", task.log_prefix, step,
                         c.train_steps, "  ".join(f"{k} {v:.4g}" for k, v in values.items()),
                         lr, clips_per_s, progress_lib.hms(progress.eta()),
                         f"  ({damage.count_text()})" if damage and damage.shards else "")
            for shard in damage.new_shards() if damage else ():
                logging.warning("SKIPPED DAMAGED SHARD %s", shard.describe())
            with writer.as_default():
                for k, v in values.items():
                    summaries.scalar(f"train/{k}", v, step=step)
                summaries.scalar("train/learning_rate", lr, step=step)
                summaries.scalar("train/clips_per_second", clips_per_s, step=step)
                if step == start + 1 or (c.summary_images_every and
                                         step % c.summary_images_every == 0):
                    _image_summary(batch, step)
            t_last, steps_last = now, 0
        if step % c.checkpoint_every == 0 or step == c.train_steps:
            manager.save(checkpoint_number=step)
        if c.eval_every and step % c.eval_every == 0 and step != c.train_steps:
            run_eval(step)
            t_last, steps_last = time.time(), 0
    total = time.time() - t_begin
    run_eval(step)
    if chief and not c.eval_data:
        task.save(os.path.join(c.model_dir, "model"), network, names, {}, step, modalities)
    writer.flush()
    eval_writer.flush()
    summary = {"step": step, "start_step": start,
               "seconds_per_step": float(np.median(step_times)) if step_times else None,
               "train_seconds": total,
               "first_train_logs": first_logs,
               "config": config.flat_dict(c),  # every setting of the run, for reports
               "final_train_logs": {k: float(v) for k, v in logs.items()},
               "mean_train_logs": {k: float(np.mean([float(r[k]) for r in recent]))
                                   for k in logs} if recent else {},
               "mean_train_logs_steps": len(recent),
               "loss_history": history,
               **task.summary_metrics(metrics)}
    if damage is not None:
        summary["skipped_damaged"] = damage.to_json()
        if damage.shards:
            logging.warning("done with damaged data: %s", damage.summary())
    logging.info("done: %s", summary)
    if chief:  # step time and final metrics for reports (`make demo` reads it)
        path = os.path.join(c.model_dir, "train_summary.json")
        if os.path.exists(path) and (not step_times or not first_logs):
            # A rerun or resumed run did not time steps / see step 1: keep what was measured.
            with open(path) as f:
                earlier = json.load(f)
            if not step_times:
                summary["seconds_per_step"] = earlier.get("seconds_per_step")
            if not first_logs:
                summary["first_train_logs"] = earlier.get("first_train_logs", {})
        atomic.write_json(path, summary)
    return summary


def _image_summary(batch, step):
    """First clip of the batch: up to 4 frames (RGB, or flow as (x, y, 0))."""
    for key in ("rgb", "flow"):
        if key not in batch:
            continue
        x = batch[key]
        x = x.values[0] if hasattr(x, "values") else x
        clip = tf.cast(x[0], tf.float32)                  # [T,H,W,C]
        frames = tf.gather(clip, np.linspace(0, clip.shape[0] - 1, min(4, clip.shape[0]))
                           .astype(np.int32))
        if key == "flow":
            frames = tf.concat([frames, tf.zeros_like(frames[..., :1])], -1)
        lo = -1.0 if tf.reduce_min(frames) < 0 else 0.0
        summaries.images(f"input/{key}", (frames - lo) / (1.0 - lo), step=step)
