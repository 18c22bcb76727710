"""Mixed float16 with dynamic loss scaling, XLA train steps, and the per-device `auto` choices
(all on CPU: tiny networks, one or two steps)."""
import collections
import dataclasses
import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
import train_fixtures

from d3d_tf import methods, models
from d3d_tf.models import cpu_choices, saving
from d3d_tf.training import tasks, trainer

T, S, K = 4, 32, 4
# A stem-only network (conv, max pool, 1x1 conv, head): the steps below trace in seconds.
STEM = {"num_classes": K, "depth_multiplier": 0.25, "dropout_keep_prob": 1.0,
        "final_endpoint": "Conv2d_2b_1x1"}

Device = collections.namedtuple("Device", "name device_type")   # tf.config.PhysicalDevice
CPU = (Device("/physical_device:CPU:0", "CPU"),)
GPU = CPU + (Device("/physical_device:GPU:0", "GPU"),)
AVX2 = frozenset({"avx2"})
AMX = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"})


def _batch(b=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"rgb": tf.constant(rng.uniform(-1, 1, (b, T, S, S, 3)), tf.float32),
            "label": tf.constant(np.arange(b) % K, tf.int32)}


def _task(optimizer, weights=None, clip_norm=None):
    keras.utils.set_random_seed(0)
    net = models.build_classifier("s3dg", input_shape=(T, S, S, 3), **STEM)
    if weights is not None:
        net.set_weights(weights)
    task = tasks.Classifier(net, clip_norm=clip_norm)
    task.compile(optimizer=optimizer)
    task.optimizer.build(net.trainable_variables)
    return task, net


def test_auto_choices_per_device_list():
    """A GPU among the devices: conv3d and mixed_float16; CPUs keep their own rules."""
    assert cpu_choices.auto_choices(GPU, AVX2) == cpu_choices.AutoChoices("3d", "mixed_float16")
    assert cpu_choices.auto_choices(GPU, AMX, 100.0).precision == "mixed_float16"
    assert cpu_choices.auto_choices(["CPU", "GPU"], None).conv_impl == "3d"
    assert cpu_choices.auto_choices(CPU, AVX2) == cpu_choices.AutoChoices("2d_spatial",
                                                                          "float32")
    assert cpu_choices.auto_choices(CPU, AMX, 100.0) == cpu_choices.AutoChoices("2d", "bfloat16")
    assert cpu_choices.auto_choices(CPU, AMX, 1.0).precision == "float32"
    assert not cpu_choices.has_gpu(CPU) and cpu_choices.has_gpu(GPU)
    # The trainer's precision=auto follows the device list; an explicit value still wins.
    config = methods.TrainConfig(model_dir="unused", train_data="x", num_frames=4,
                                 crop_size=32, depth_multiplier=0.25, batch_size=2)
    assert trainer.resolve_precision(config, K, 2, devices=GPU) == "mixed_float16"
    assert trainer.resolve_precision(dataclasses.replace(config, precision="float32"), K, 2,
                                     devices=GPU) == "float32"


def test_auto_conv_impl_is_3d_on_a_machine_with_a_gpu(monkeypatch):
    monkeypatch.setattr(cpu_choices, "local_devices", lambda: GPU)
    assert cpu_choices.resolve_conv_impl("auto") == "3d"
    monkeypatch.setattr(cpu_choices, "local_devices", lambda: CPU)
    assert cpu_choices.resolve_conv_impl("auto") in ("2d", "2d_spatial")
    assert cpu_choices.resolve_conv_impl("2d") == "2d"


@pytest.mark.parametrize("clip_norm", [None, 1e-3])
def test_loss_scaled_step_gives_the_unscaled_update(clip_norm):
    """Same float32 network, one step: LossScaleOptimizer(SGD) moves the weights as SGD does
    (the clipping sees the unscaled gradient); an overflowing scale skips the step and halves."""
    plain, net = _task(keras.optimizers.SGD(0.5, momentum=0.9), clip_norm=clip_norm)
    start = net.get_weights()
    scaled, net_scaled = _task(keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.5, momentum=0.9), initial_scale=2.0 ** 12), start, clip_norm)
    logs_plain = tf.function(plain.train_step)(_batch())
    logs = tf.function(scaled.train_step)(_batch())
    assert float(logs["loss_scale"]) == 2.0 ** 12
    np.testing.assert_allclose(float(logs["grad_norm"]), float(logs_plain["grad_norm"]),
                               rtol=1e-4)
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(net.get_weights(), start))
    assert moved > 1e-4
    for a, b in zip(net_scaled.get_weights(), net.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # A scale that overflows float32: no update, scale halved, grad_norm logged as 0.
    huge, net_huge = _task(keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.5), initial_scale=2.0 ** 127), start, clip_norm)
    trainable = [v.numpy() for v in net_huge.trainable_variables]
    logs = tf.function(huge.train_step)(_batch())
    assert float(logs["grad_norm"]) == 0.0 and np.isfinite(float(logs["total"]))
    for v, before in zip(net_huge.trainable_variables, trainable):
        np.testing.assert_array_equal(v.numpy(), before)
    assert float(huge.optimizer.dynamic_scale.numpy()) == 2.0 ** 126


def test_xla_and_plain_train_steps_agree():
    """`make_train_function(jit_compile=True)`: the same update as without XLA (one step)."""
    plain, net = _task(keras.optimizers.SGD(0.5, momentum=0.9))
    start = net.get_weights()
    xla, net_xla = _task(keras.optimizers.SGD(0.5, momentum=0.9), start)
    strategy = tf.distribute.get_strategy()
    logs_plain = trainer.make_train_function(strategy, plain)(_batch())
    logs_xla = trainer.make_train_function(strategy, xla, jit_compile=True)(_batch())
    np.testing.assert_allclose(float(logs_xla["total"]), float(logs_plain["total"]), rtol=1e-4)
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(net.get_weights(), start)) > 1e-4
    for a, b in zip(net_xla.get_weights(), net.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def _config(tmp_path, data, **kw):
    return methods.TrainConfig(**{
        "model_dir": str(tmp_path / "run"), "train_data": data, "depth_multiplier": 0.25,
        "num_frames": T, "crop_size": S, "batch_size": 2, "train_steps": 2, "log_every": 1,
        "precision": "mixed_float16", **kw})


def _loss_scale_in(ckpt_dir):
    path = tf.train.latest_checkpoint(ckpt_dir)
    names = [n for n, _ in tf.train.list_variables(path) if "dynamic_scale" in n]
    assert names, tf.train.list_variables(path)
    return float(tf.train.load_variable(path, names[0]))


@pytest.mark.slow
def test_mixed_float16_classify_trains_checkpoints_and_resumes_the_loss_scale(tmp_path,
                                                                             monkeypatch):
    data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=4)
    make = trainer.make_optimizer

    def first_scale(c, *, loss_scale=False):   # a scale that the default (2^15) is not
        opt = make(c, loss_scale=loss_scale)
        assert loss_scale
        return keras.optimizers.LossScaleOptimizer(opt.inner_optimizer, initial_scale=2.0 ** 9)

    monkeypatch.setattr(trainer, "make_optimizer", first_scale)
    summary = trainer.train(_config(tmp_path, data))
    logs = summary["final_train_logs"]
    assert all(np.isfinite(v) for v in logs.values()) and logs["loss_scale"] == 2.0 ** 9
    assert keras.mixed_precision.global_policy().name == "float32"   # restored after the run
    assert _loss_scale_in(str(tmp_path / "run" / "ckpt")) == 2.0 ** 9
    # Resumed with the default optimizer: the checkpoint's loss scale comes back.
    monkeypatch.setattr(trainer, "make_optimizer", make)
    summary = trainer.train(_config(tmp_path, data, train_steps=3))
    assert summary["start_step"] == 2 and summary["step"] == 3
    assert summary["final_train_logs"]["loss_scale"] == 2.0 ** 9


@pytest.mark.slow
def test_mixed_float16_distill_trains_with_a_frozen_float16_teacher(tmp_path):
    data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=4)
    teacher = models.build_classifier("s3dg", input_shape=(T, S, S, 2), in_channels=2,
                                      num_classes=K, depth_multiplier=0.25)
    tdir = str(tmp_path / "teacher")
    saving.save_model_dir(tdir, teacher, saving.spec_for(teacher, name="s3dg", modality="flow"))
    config = _config(tmp_path, data, task="distill", teacher=tdir)
    summary = trainer.train(config)
    logs = summary["final_train_logs"]
    assert {"ce", "distill", "loss_scale"} <= set(logs)
    assert all(np.isfinite(v) for v in logs.values()) and logs["distill"] > 0
    with open(tmp_path / "run" / "train_summary.json") as f:
        assert json.load(f)["step"] == 2
    # model.json records what the training read (the papers' "training input" column).
    assert saving.load_spec(str(tmp_path / "run")).train_inputs == ["rgb", "flow"]
    # The teacher runs in the run's policy (float16 compute), the Eq. 2 MSE in float32.
    trainer.set_precision_policy("mixed_float16")
    try:
        task, _, _ = trainer.build_task(config, K, 2, loss_scale=True)
    finally:
        trainer.set_precision_policy("float32")
    assert task.teacher.dtype_policy.compute_dtype == "float16"
    assert task.network.dtype_policy.compute_dtype == "float16"
    assert isinstance(task.optimizer, keras.optimizers.LossScaleOptimizer)
    terms, _, _ = task.loss_terms({"rgb": tf.zeros((2, T, S, S, 3)),
                                   "flow": tf.zeros((2, T, S, S, 2)),
                                   "label": tf.constant([0, 1])}, training=False)
    assert terms["distill"].dtype == tf.float32 and terms["ce"].dtype == tf.float32


def test_clip_norm_with_loss_scaling_is_refused_on_several_replicas():
    config = methods.TrainConfig(model_dir="unused", train_data="x", clip_norm=1.0)
    trainer.check_loss_scaling(config, "mixed_float16", 1)
    trainer.check_loss_scaling(config, "float32", 2)
    trainer.check_loss_scaling(dataclasses.replace(config, clip_norm=None), "mixed_float16", 2)
    with pytest.raises(ValueError, match="--clip_norm=1 with --precision=mixed_float16 works on "
                                         "one replica only, this strategy has 2"):
        trainer.check_loss_scaling(config, "mixed_float16", 2)
