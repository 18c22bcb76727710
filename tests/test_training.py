"""Training tasks, losses, fine-tuning helpers and trainer validation (tiny models)."""
import dataclasses
import json
import logging
import os
import sys
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
import train_fixtures

from d3d_tf import methods, models
from d3d_tf.distill.task import Distiller
from d3d_tf.models import saving
from d3d_tf.training import losses, tasks, trainer

T, S, K = 4, 32, 4
TINY = {"num_classes": K, "depth_multiplier": 0.25, "dropout_keep_prob": 1.0}
# A short network (up to Mixed_3c) keeps graph tracing, the bulk of these tests' time, small.
SHORT = dict(TINY, final_endpoint="Mixed_3c")


def _batch(seed=0, b=4):
    rng = np.random.default_rng(seed)
    return {"rgb": tf.constant(rng.uniform(-1, 1, (b, T, S, S, 3)), tf.float32),
            "flow": tf.constant(rng.uniform(-1, 1, (b, T, S, S, 2)), tf.float32),
            "label": tf.constant(np.arange(b) % K, tf.int32)}


def _run(task, batch, steps):
    step = tf.function(task.train_step)
    return [{k: float(v) for k, v in step(batch).items()} for _ in range(steps)]


@pytest.mark.parametrize("modality", ["rgb", "flow"])
def test_classifier_lowers_loss(modality):
    keras.utils.set_random_seed(0)
    c = 3 if modality == "rgb" else 2
    net = models.build_classifier("s3dg", input_shape=(T, S, S, c), in_channels=c, **SHORT)
    task = tasks.Classifier(net, modality=modality)
    task.compile(optimizer=keras.optimizers.SGD(0.02, momentum=0.9))
    logs = _run(task, _batch(), 6)
    assert logs[-1]["ce"] < logs[0]["ce"] - 0.1
    assert set(logs[0]) >= {"ce", "l2", "total", "top1", "top5", "grad_norm"}
    assert logs[0]["total"] == pytest.approx(logs[0]["ce"] + logs[0]["l2"], rel=1e-5)


def test_distillation_loss_is_eq2_mean_over_clips_and_classes():
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(5, 7)).astype("f4"), rng.normal(size=(5, 7)).astype("f4")
    per_example = losses.distillation_mse(tf.constant(s), tf.constant(t)).numpy()
    np.testing.assert_allclose(per_example, ((s - t) ** 2).mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(per_example.mean(), ((s - t) ** 2).mean(), rtol=1e-6)
    fmap_s, fmap_t = rng.normal(size=(2, 3, 4, 4, 5)), rng.normal(size=(2, 3, 4, 4, 5))
    np.testing.assert_allclose(losses.distillation_mse(fmap_s, fmap_t).numpy(),
                               ((fmap_s - fmap_t) ** 2).mean(axis=(1, 2, 3, 4)), rtol=1e-5)
    ce = losses.cross_entropy(tf.constant([2, 0]), tf.constant(s[:2])).numpy()
    logp = s[:2] - np.log(np.exp(s[:2]).sum(1, keepdims=True))
    np.testing.assert_allclose(ce, -logp[[0, 1], [2, 0]], rtol=1e-5)


def test_distiller_trains_student_and_never_touches_teacher():
    keras.utils.set_random_seed(0)
    teacher = models.build_classifier("s3dg", input_shape=(T, S, S, 2), in_channels=2,
                                      endpoints=("2C",), **SHORT)
    student = models.build_classifier("s3dg", input_shape=(T, S, S, 3), endpoints=("2C",),
                                      **SHORT)
    task = Distiller(student, teacher, teacher_modality="flow", endpoints=("logits", "2C"),
                           distill_weights=(1.0, 100.0), action_loss_weight=0.5)
    task.compile(optimizer=keras.optimizers.SGD(0.003, momentum=0.9))
    before = [w.numpy().copy() for w in teacher.weights]
    batch = _batch()
    logs = _run(task, batch, 6)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, teacher.weights))
    assert not teacher.trainable_variables
    first, last = logs[0], logs[-1]
    assert last["total"] < first["total"]
    assert first["total"] == pytest.approx(0.5 * first["ce"] + first["distill_logits"] +
                                           100 * first["distill_Conv2d_2c_3x3"] + first["l2"],
                                           rel=1e-4)
    # The logged distill term equals Eq. 2 recomputed from the two networks' logits.
    t_logits = teacher(batch["flow"], training=False)["logits"].numpy()
    s_logits = student(batch["rgb"], training=False)["logits"].numpy()
    test_logs = task.test_step(batch)
    np.testing.assert_allclose(float(test_logs["distill_logits"]),
                               ((s_logits - t_logits) ** 2).mean(), rtol=1e-4)


def test_distiller_without_action_loss_ignores_labels():
    keras.utils.set_random_seed(0)
    teacher = models.build_classifier("s3dg", input_shape=(T, S, S, 3), **SHORT)
    student = models.build_classifier("s3dg", input_shape=(T, S, S, 3), **SHORT)
    task = Distiller(student, teacher, teacher_modality="rgb", action_loss_weight=0.0)

    def grads(labels):
        batch = {**_batch(), "label": tf.constant(labels, tf.int32)}
        with tf.GradientTape() as tape:
            terms, per_example, l2, _ = task._objective(batch, training=True)
            loss = tf.reduce_mean(per_example) + l2
        return terms["ce"].numpy(), tape.gradient(loss, student.trainable_variables)

    ce_a, g_a = grads([0, 1, 2, 3])
    ce_b, g_b = grads([3, 3, 0, 1])
    assert not np.allclose(ce_a, ce_b)          # CE is computed (and logged) ...
    for a, b in zip(g_a, g_b):                  # ... but contributes no gradient.
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


def test_finetune_init_and_freeze(tmp_path):
    src = models.build_classifier("s3dg", input_shape=(T, S, S, 3), **{**TINY, "num_classes": 7})
    saving.save_model_dir(str(tmp_path / "src"), src, saving.spec_for(src, name="s3dg"))
    net = models.build_classifier("s3dg", input_shape=(T, S, S, 3), **TINY)
    loaded = tasks.init_from_model_dir(net, str(tmp_path / "src"))
    assert loaded and not any(p.startswith("Logits.") for p in loaded)
    w = {v.path: v.numpy() for v in net.weights}
    ref = {v.path: v.numpy() for v in src.weights}
    np.testing.assert_array_equal(w["Mixed_5c.Branch_0.Conv2d_0a_1x1/kernel"],
                                  ref["Mixed_5c.Branch_0.Conv2d_0a_1x1/kernel"])
    frozen = tasks.freeze_until(net, "4F")
    assert any(n.startswith("Mixed_4f") for n in frozen)
    assert not any(n.startswith(("Mixed_5", "Logits")) for n in frozen)
    trainable = {v.path for v in net.trainable_variables}
    assert all(p.startswith(("Mixed_5", "Logits")) for p in trainable)
    flow_net = models.build_classifier("s3dg", input_shape=(T, S, S, 2), in_channels=2, **TINY)
    with pytest.raises(ValueError, match="input channels"):
        tasks.init_from_model_dir(flow_net, str(tmp_path / "src"))


def _config(tmp_path, **kw):
    data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=4)
    base = {"model_dir": str(tmp_path / "run"), "train_data": data, "depth_multiplier": 0.25,
                "num_frames": T, "crop_size": S, "batch_size": 2, "train_steps": 2}
    return methods.TrainConfig(**{**base, **kw})


@pytest.mark.slow
def test_flow_teacher_trains_and_evaluates_end_to_end(tmp_path):
    """trainer.train on 2-channel flow with evaluation between steps: the flow stem's
    zero-padded conv3d must survive grappler's rewrites of the training and the eval graph."""
    # 8 frames: with 4 the bug below did not show.
    cfg = _config(tmp_path, modality="flow", num_frames=8, train_steps=4, eval_every=2,
                  log_every=1)
    cfg = methods.TrainConfig(**{**cfg.__dict__, "eval_data": cfg.train_data})
    trainer.train(cfg)
    summary_path = os.path.join(cfg.model_dir, "train_summary.json")
    with open(summary_path) as f:
        first = json.load(f)
    assert first["step"] == 4 and first["seconds_per_step"] > 0
    # The losses of step 1 (the λ rule's "at the start"), not those of the last step.
    assert set(first["first_train_logs"]) >= {"ce", "total"}
    assert first["first_train_logs"] != first["final_train_logs"]
    assert first["config"]["modality"] == "flow" and first["config"]["train_steps"] == 4
    spec = saving.load_spec(os.path.join(cfg.model_dir, "model"))
    assert spec.modality == "flow" and spec.input_shape[-1] == 2
    # Rerunning the finished run trains nothing and keeps the measured step time.
    trainer.train(cfg)
    with open(summary_path) as f:
        again = json.load(f)
    assert again["start_step"] == 4 and again["seconds_per_step"] == first["seconds_per_step"]
    assert again["first_train_logs"] == first["first_train_logs"]  # kept, not emptied


@pytest.mark.slow
def test_checkpoint_and_eval_frequency_do_not_change_the_trained_weights(tmp_path):
    """Saving and evaluating between steps must not touch the random streams or the data
    order: the same run with other checkpoint / eval intervals ends with the same weights."""
    data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=4)
    weights = []
    for steps, every in ((4, 4), (4, 2)):
        run = tmp_path / f"run{steps}_{every}"
        trainer.train(_config(tmp_path, model_dir=str(run), train_data=data, eval_data=data,
                              depth_multiplier=0.1, train_steps=steps, checkpoint_every=every,
                              eval_every=every))
        weights.append(np.load(run / "model" / "weights.npz"))
    first, second = weights
    assert first.files == second.files
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    # The comparison does see training: two steps fewer (the second run's checkpoint at
    # step 2) give other weights.
    kept = tf.train.get_checkpoint_state(str(run / "ckpt")).all_model_checkpoint_paths
    assert [int(p.rsplit("-", 1)[1]) for p in kept] == [2, 4]
    at2, at4 = (tf.train.load_checkpoint(p) for p in kept)
    names = [n for n in at4.get_variable_to_shape_map() if n.startswith("network/")]
    assert len(names) > 100
    assert any(not np.array_equal(at2.get_tensor(n), at4.get_tensor(n)) for n in names)


def test_validation_errors(tmp_path):
    with pytest.raises(ValueError, match="--model='nope' unknown"):
        trainer.validate(_config(tmp_path, model="nope"))
    with pytest.raises(FileNotFoundError, match="--train_data: no TFRecord"):
        trainer.validate(_config(tmp_path, train_data=str(tmp_path / "missing-*.tfrecord")))
    with pytest.raises(FileNotFoundError, match="--teacher=.*not a model directory"):
        trainer.validate(_config(tmp_path, task="distill", teacher=str(tmp_path / "none")))
    with pytest.raises(ValueError, match="needs --teacher"):
        trainer.validate(_config(tmp_path, task="distill"))
    with pytest.raises(FileNotFoundError, match="--init_from"):
        trainer.validate(_config(tmp_path, task="finetune", init_from=str(tmp_path / "x")))
    with pytest.raises(ValueError, match="Unknown endpoint"):
        trainer.validate(_config(tmp_path, freeze_until="9Z"))
    # A flow teacher on records prepared without flow.
    noflow = train_fixtures.write_dataset(str(tmp_path / "noflow"), videos=2, with_flow=False)
    teacher = models.build_classifier("s3dg", input_shape=(T, S, S, 2), in_channels=2, **TINY)
    tdir = str(tmp_path / "teacher")
    saving.save_model_dir(tdir, teacher, saving.spec_for(teacher, name="s3dg", modality="flow"))
    with pytest.raises(ValueError, match="needs optical flow.*none of its shards holds"):
        trainer.validate(_config(tmp_path, task="distill", teacher=tdir, train_data=noflow))
    with pytest.raises(ValueError, match="feature maps of equal shape"):
        trainer.validate(_config(tmp_path, task="distill", teacher=tdir,
                                 distill_endpoints=("4F",), depth_multiplier=0.5))
    trainer.validate(_config(tmp_path, task="distill", teacher=tdir))   # valid


def test_auto_precision_counts_the_step_and_reads_the_cpu(monkeypatch, tmp_path, caplog):
    """precision=auto: float32 without native bf16; on a bf16 CPU bfloat16 only for a step of
    at least BF16_MIN_GFLOPS_PER_STEP (counted on the run's network); explicit values win."""
    from d3d_tf.models import cpu_choices

    bf16_cpu = frozenset({"avx2", "avx512f", "avx512_bf16"})
    monkeypatch.setattr(cpu_choices, "cpu_flags", lambda cpuinfo="": bf16_cpu)
    small = methods.TrainConfig(model_dir=str(tmp_path), train_data="x", num_frames=4,
                                crop_size=32, depth_multiplier=0.25, batch_size=2)
    assert trainer.resolve_precision(small, 4, 2) == "float32"
    # 64x224^2 S3D-G: 128 GFLOPs per clip, far above the threshold
    big = dataclasses.replace(small, num_frames=64, crop_size=224, depth_multiplier=1.0)
    assert trainer.resolve_precision(big, 400, 1) == "bfloat16"
    assert trainer.resolve_precision(dataclasses.replace(big, precision="float32"),
                                     400, 1) == "float32"
    monkeypatch.setattr(cpu_choices, "cpu_flags", lambda cpuinfo="": frozenset({"avx2"}))
    assert trainer.resolve_precision(big, 400, 1) == "float32"
    with caplog.at_level(logging.WARNING):
        assert trainer.resolve_precision(dataclasses.replace(small, precision="bfloat16"),
                                         4, 2) == "bfloat16"
    assert "no native bfloat16" in caplog.text   # explicit bf16 on an AVX2-only CPU: warned
    caplog.clear()
    monkeypatch.setattr(cpu_choices, "cpu_flags", lambda cpuinfo="": bf16_cpu)
    with caplog.at_level(logging.WARNING):
        trainer.resolve_precision(dataclasses.replace(small, precision="bfloat16"), 4, 2)
    assert "no native bfloat16" not in caplog.text


def test_clip_shape_has_the_modalitys_channels(tmp_path):
    rgb = methods.TrainConfig(model_dir=str(tmp_path), train_data="x", num_frames=8,
                              crop_size=48)
    assert trainer.clip_shape(rgb) == (8, 48, 48, 3)
    assert trainer.clip_shape(dataclasses.replace(rgb, modality="flow")) == (8, 48, 48, 2)


def test_train_restores_the_callers_dtype_policy(monkeypatch, tmp_path):
    """--precision=bfloat16 changes Keras' global policy for the run only, also when it fails."""
    def failing_run(config):
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        raise RuntimeError("boom")

    monkeypatch.setattr(trainer, "validate", lambda config: None)
    monkeypatch.setattr(trainer, "_train", failing_run)
    config = methods.TrainConfig(model_dir=str(tmp_path / "run"),
                                 train_data=str(tmp_path / "none-*.tfrecord"))
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train(config)
    assert keras.mixed_precision.global_policy().name == "float32"


def test_lambda_rule_matches_the_distillation_loss_to_the_action_loss_once():
    """The paper's rule: the first step sets lambda so that lambda * L_d equals the action loss
    of that batch; later steps keep it, and so does a checkpoint restored into a new task."""
    keras.utils.set_random_seed(0)
    teacher = models.build_classifier("s3dg", input_shape=(T, S, S, 2), in_channels=2, **SHORT)
    student = models.build_classifier("s3dg", input_shape=(T, S, S, 3), **SHORT)
    task = Distiller(student, teacher, teacher_modality="flow", distill_weights=(2.0,),
                     action_loss_weight=0.5, lambda_rule=True)
    task.compile(optimizer=keras.optimizers.SGD(0.003, momentum=0.9))
    logs = _run(task, _batch(), 3)
    first = logs[0]
    # --distill_weights stays a multiplier: lambda * L_d = 2 x the action loss (0.5 CE).
    assert first["lambda"] * first["distill"] == pytest.approx(2 * 0.5 * first["ce"], rel=1e-4)
    assert first["total"] == pytest.approx(0.5 * first["ce"] * 3 + first["l2"], rel=1e-4)
    assert [log["lambda"] for log in logs] == pytest.approx([first["lambda"]] * 3, rel=1e-6)
    # ... while the ratio it was set from moved: the rule decided once, not every step.
    assert logs[2]["ce"] / logs[2]["distill"] != pytest.approx(first["ce"] / first["distill"],
                                                               rel=1e-6)
    path = tf.train.Checkpoint(factor=task.rule_factor).save(os.path.join(
        tempfile.mkdtemp(), "ckpt"))
    again = Distiller(student, teacher, teacher_modality="flow", distill_weights=(2.0,),
                      action_loss_weight=0.5, lambda_rule=True)
    tf.train.Checkpoint(factor=again.rule_factor).restore(path)
    again.compile(optimizer=keras.optimizers.SGD(0.003, momentum=0.9))
    assert _run(again, _batch(), 1)[0]["lambda"] == pytest.approx(first["lambda"], rel=1e-6)
    with pytest.raises(ValueError, match="action_loss_weight above 0"):
        Distiller(student, teacher, action_loss_weight=0.0, lambda_rule=True)
