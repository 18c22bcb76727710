"""DistInit (d3d_tf.distinit.task): Eq. 1-3, the entropy filter, frozen teachers, the task."""
from __future__ import annotations

import os
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from d3d_tf import methods, models
from d3d_tf.data import pipeline, records
from d3d_tf.distinit import precompute_targets as distinit_targets
from d3d_tf.distinit import task as distinit
from d3d_tf.distinit import teacher_logits
from d3d_tf.models import saving
from d3d_tf.training import trainer

T, S = 4, 16
TINY = {"depth_multiplier": 0.125}


def _np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _image_teacher(classes: int, seed: int, path: str) -> str:
    """A small random image CNN `[N,S,S,3] -> logits`, saved as .keras; returns the path."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((S, S, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, kernel_initializer=keras.initializers.RandomNormal(
        stddev=2.0))(x)
    keras.Model(inputs, outputs).save(path)
    return path


def test_frame_picks_and_eq1_average_with_temperature():
    idx = distinit.pick_frames(8, 5, pick="center", k=1).numpy()
    assert idx.shape == (5, 1) and (idx == 4).all()
    idx = distinit.pick_frames(8, 64, pick="random", k=3, seed=1).numpy()
    assert idx.shape == (64, 3) and idx.min() >= 0 and idx.max() <= 7
    assert all(len(set(row)) == 3 for row in idx)         # K distinct frames per clip
    assert len(np.unique(idx[:, 0])) > 4                   # and they vary over clips
    with pytest.raises(ValueError, match="cannot pick 9 frames"):
        distinit.pick_frames(8, 2, pick="random", k=9)
    with pytest.raises(ValueError, match="center pick takes 1 frame"):
        distinit.pick_frames(8, 2, pick="center", k=2)

    rng = np.random.default_rng(0)
    clips = rng.normal(size=(2, 6, 3, 3, 1)).astype("float32")
    picked = np.array([[1, 4], [5, 0]], "int32")
    frames = distinit.gather_frames(tf.constant(clips), tf.constant(picked)).numpy()
    np.testing.assert_array_equal(frames, clips[[0, 0, 1, 1], [1, 4, 5, 0]])
    frame_logits = rng.normal(size=(6, 7)).astype("float32")  # 3 clips x 2 frames
    z = distinit.video_logits(tf.constant(frame_logits), 2).numpy()
    np.testing.assert_allclose(z, frame_logits.reshape(3, 2, 7).mean(1), rtol=1e-6)
    # Eq. 1: average the logits, THEN softmax with tau (not the average of softmaxes).
    tau = 2.5
    p = _np_softmax(z / tau)
    assert not np.allclose(p, _np_softmax(frame_logits.reshape(3, 2, 7) / tau).mean(1))
    s = rng.normal(size=(3, 7)).astype("float32")
    ce = distinit.soft_cross_entropy(tf.constant(s), tf.constant(z), tau).numpy()
    np.testing.assert_allclose(ce, -(p * np.log(_np_softmax(s / tau))).sum(-1), rtol=1e-5)
    mse = distinit.logits_mse(tf.constant(s), tf.constant(z)).numpy()
    np.testing.assert_allclose(mse, ((s - z) ** 2).mean(-1), rtol=1e-5)


def test_entropy_filter_weights():
    sharp = np.array([10.0, 0.0, 0.0, 0.0])
    flat = np.zeros(4)
    half = np.array([0.0, 0.0, -50.0, -50.0])  # two equal classes: entropy ln 2
    z = tf.constant(np.stack([sharp, flat, half]), tf.float32)
    h = distinit.entropy(z).numpy()
    p = _np_softmax(np.stack([sharp, flat, half]))
    np.testing.assert_allclose(h, -(p * np.log(np.maximum(p, 1e-30))).sum(-1), atol=1e-5)
    np.testing.assert_allclose(h[1:], [np.log(4), np.log(2)], rtol=1e-5)
    w = distinit.confidence_weights(z, threshold=1.0).numpy()
    np.testing.assert_array_equal(w, [1.0, 0.0, 1.0])       # ln 4 = 1.39 > 1.0 dropped
    np.testing.assert_array_equal(distinit.confidence_weights(z, 0.5).numpy(), [1, 0, 0])
    np.testing.assert_array_equal(distinit.confidence_weights(z, None).numpy(), [1, 1, 1])


def test_multi_teacher_heads_losses_and_frozen_teachers(tmp_path):
    teachers = distinit.load_teachers(
        [_image_teacher(3, 0, str(tmp_path / "a.keras")),
         _image_teacher(5, 1, str(tmp_path / "b.keras"))], ["none"])
    student = models.build_classifier("r2plus1d_18", num_classes=8, input_shape=(T, S, S, 3),
                                      **TINY)
    task = distinit.DistInit(student, teachers, pick="center", temperature=2.0,
                             entropy_threshold=1.2, teacher_weights=(1.0, 0.5))
    task.compile(optimizer=keras.optimizers.SGD(0.05))
    rgb = np.random.default_rng(3).uniform(-1, 1, (4, T, S, S, 3)).astype("float32")
    batch = {"rgb": tf.constant(rgb), "label": tf.fill([4], -1)}

    terms, weights, logits = task.loss_terms(batch, training=False)
    s = logits.numpy()
    center = rgb[:, T // 2]
    for i, (teacher, lo, hi) in enumerate(((teachers[0], 0, 3), (teachers[1], 3, 8))):
        z = teacher.model(center).numpy()      # center frame, k=1: Eq. 1's average is z itself
        p = _np_softmax(z / 2.0)
        h = -(p * np.log(p)).sum(-1)
        keep = (h <= 1.2).astype("float32")
        ce = -(p * np.log(_np_softmax(s[:, lo:hi] / 2.0))).sum(-1)
        np.testing.assert_allclose(terms[f"distinit_{i}"].numpy(), keep * ce, rtol=1e-4,
                                   atol=1e-6)
        np.testing.assert_array_equal(terms[f"kept_{i}"].numpy(), keep)
    assert weights["distinit_0"] == 1.0 and weights["distinit_1"] == 0.5
    assert weights["kept_0"] == 0.0 and weights["teacher_entropy_1"] == 0.0

    before_t = [[w.numpy().copy() for w in t.model.weights] for t in teachers]
    before_s = [w.numpy().copy() for w in student.trainable_weights]
    for _ in range(2):
        logs = task.train_step(batch)
    assert {"distinit_0", "distinit_1", "kept_0", "kept_1", "total"} <= set(logs)
    assert "top1" not in logs  # unlabeled: no accuracy against label -1
    for t, ref in zip(teachers, before_t):   # frozen (incl. BN statistics): bit-identical
        for w, r in zip(t.model.weights, ref):
            np.testing.assert_array_equal(w.numpy(), r)
    assert any(not np.array_equal(w.numpy(), r) for w, r in zip(student.trainable_weights,
                                                                  before_s))
    with pytest.raises(ValueError, match="8 logits but the teachers \\[3\\]"):
        distinit.DistInit(student, teachers[:1])


def test_flow_student_learns_from_the_rgb_teacher(tmp_path):
    teachers = distinit.load_teachers([_image_teacher(3, 0, str(tmp_path / "a.keras"))])
    student = models.build_classifier("r2plus1d_18", num_classes=3, input_shape=(T, S, S, 2),
                                      in_channels=2, **TINY)
    task = distinit.DistInit(student, teachers, pick="center", modality="flow")
    rng = np.random.default_rng(4)
    rgb = rng.uniform(-1, 1, (2, T, S, S, 3)).astype("float32")
    flow = rng.uniform(-1, 1, (2, T, S, S, 2)).astype("float32")
    terms, _, logits = task.loss_terms({"rgb": rgb, "flow": flow, "label": tf.fill([2], -1)},
                                       training=False)
    np.testing.assert_allclose(logits, student(flow, training=False), rtol=1e-5, atol=1e-6)
    p = _np_softmax(teachers[0].model(rgb[:, T // 2]).numpy())   # the teacher saw RGB
    want = -(p * np.log(_np_softmax(logits.numpy()))).sum(-1)
    np.testing.assert_allclose(terms["distinit"], want, rtol=1e-4)


def test_model_dir_teacher_is_a_frozen_2d_network_on_single_frames(tmp_path):
    # Saved for 4-frame clips (a 2D net runs on any T): the teacher rebuilds it for 1 frame.
    saved = models.build_classifier("r2d_18", num_classes=4, input_shape=(4, S, S, 3), **TINY)
    saving.save_model_dir(str(tmp_path), saved, saving.spec_for(saved, name="r2d_18",
                                                                rgb_range="[0,1]"))
    net = models.build_classifier("r2d_18", num_classes=4, input_shape=(1, S, S, 3), **TINY)
    net.set_weights(saved.get_weights())
    teacher = distinit.load_image_teacher(str(tmp_path), rgb_range="[-1,1]")
    assert teacher.num_classes == 4 and not teacher.model.trainable_weights
    frames = np.random.default_rng(5).uniform(-1, 1, (3, S, S, 3)).astype("float32")
    want = net(((frames + 1) / 2)[:, None], training=False).numpy()   # [0,1] for this model
    np.testing.assert_allclose(teacher.frame_logits(frames).numpy(), want, rtol=1e-5, atol=1e-5)


def test_keras_applications_teacher_preprocessing():
    # ResNet50 (the paper's teacher): caffe-style, frames in [-1,1] -> [0,255] -> BGR - mean.
    pre = distinit._applications_preprocess(keras.applications.ResNet50)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 4, 4, 3)).astype("float32")
    got = np.asarray(pre((x + 1.0) * 127.5))
    want = ((x + 1.0) * 127.5)[..., ::-1] - np.array([103.939, 116.779, 123.68])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
    teacher = distinit.load_image_teacher("MobileNetV3Small", weights="none")
    assert teacher.num_classes == 1000 and teacher.image_size == (224, 224)
    assert not teacher.model.trainable_weights
    out = teacher.frame_logits(tf.constant(x))   # resized to 224x224, raw logits
    assert tuple(out.shape) == (2, 1000) and not np.allclose(np.sum(np.exp(out), -1), 1.0)
    with pytest.raises(ValueError, match="'NoSuchNet': not a keras.applications"):
        distinit.load_image_teacher("NoSuchNet")
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        distinit.load_image_teacher("/nowhere/missing.keras")


def test_a_damaged_keras_teacher_is_named_as_damaged(tmp_path):
    _image_teacher(3, 0, str(tmp_path / "good.keras"))
    good = (tmp_path / "good.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(good[:len(good) // 2])  # an interrupted copy
    with pytest.raises(ValueError, match=r"cut\.keras: damaged or not a \.keras file"):
        distinit.load_image_teacher(str(tmp_path / "cut.keras"))
    with zipfile.ZipFile(tmp_path / "good.keras") as src, \
            zipfile.ZipFile(tmp_path / "cut_weights.keras", "w") as dst:
        for name in src.namelist():  # a whole archive whose weights file is cut short
            data = src.read(name)
            dst.writestr(name, data[:len(data) // 3] if name.endswith(".h5") else data)
    with pytest.raises(ValueError, match=r"cut_weights\.keras: unreadable \.keras file"):
        distinit.load_image_teacher(str(tmp_path / "cut_weights.keras"))


def _unlabeled_records(out_dir, videos=4, labels=None):
    """Records of label -1; `labels`: the text of a labels.txt beside them (None: none, as
    `prepare --format=list` writes)."""
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    if labels is not None:
        with open(os.path.join(out_dir, "labels.txt"), "w") as f:
            f.write(labels)
    writer = records.ShardWriter(os.path.join(out_dir, "unlabeled-00000.tfrecord"))
    for v in range(videos):
        frames = rng.integers(0, 255, (6, S, S, 3), dtype=np.uint8)
        writer.write(records.make_sequence_example(frames, video_id=f"u{v}", label=-1))
    writer.close()
    return os.path.join(out_dir, "unlabeled-*.tfrecord")


def test_precomputed_and_on_the_fly_targets_agree_on_uncropped_frames(tmp_path):
    teachers = [_image_teacher(3, 0, str(tmp_path / "a.keras")),
                _image_teacher(4, 1, str(tmp_path / "b.keras"))]
    written = distinit_targets.precompute(distinit_targets.TargetsConfig(
        records=_unlabeled_records(str(tmp_path / "u"), labels="a\nb\n"),
        out_dir=str(tmp_path / "t"),
        teachers=tuple(teachers)), log=lambda m: None)
    assert os.path.isfile(str(tmp_path / "t" / "labels.txt"))
    cfg = pipeline.PipelineConfig(file_pattern=written[0], num_frames=T, crop_size=S,
                                  batch_size=4, random_flip=False, seed=0,
                                  frame_features=(teacher_logits.FRAME_FEATURE,))
    batch = next(iter(pipeline.make_dataset(cfg)))
    assert tuple(batch["teacher_logits"].shape) == (4, T, 7)
    loaded = distinit.load_teachers(teachers, ["none"])
    student = models.build_classifier("r3d_18", num_classes=7, input_shape=(T, S, S, 3), **TINY)
    # All T frames (k = T): the pick's order does not matter, so both paths average the same.
    task = distinit.DistInit(student, loaded, pick="random", num_frames=T)
    stored = task.targets(batch)
    fly = task.targets({"rgb": batch["rgb"]})
    for a, b in zip(stored, fly):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    assert np.abs(stored[0].numpy()).max() > 0.1
    center = distinit.DistInit(student, loaded, pick="center")
    for a, b in zip(center.targets(batch), center.targets({"rgb": batch["rgb"]})):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="holds logits of"):
        distinit.check_precomputed(True, written[0], teachers[:1])


def test_train_distinit_then_finetune_drops_teacher_heads(tmp_path):
    from tests import train_fixtures

    teacher = _image_teacher(6, 0, str(tmp_path / "teacher.keras"))
    base = {"model": "r3d_18", "depth_multiplier": 0.125, "num_frames": T, "crop_size": S,
            "batch_size": 2, "train_steps": 2, "weight_decay": 1e-4}
    unlabeled = _unlabeled_records(str(tmp_path / "u"))
    with pytest.raises(ValueError, match="has no teacher logits"):
        trainer.validate(methods.TrainConfig(
            model_dir=str(tmp_path / "x"), train_data=unlabeled, task="distinit",
            distinit_teachers=(teacher,), distinit_precomputed=True, **base))
    lines = []
    precomputed = distinit_targets.precompute(distinit_targets.TargetsConfig(
        records=unlabeled, out_dir=str(tmp_path / "t"), teachers=(teacher,)), log=lines.append)
    # Progress: the first video, then the last with its ETA.
    assert [ln for ln in lines if ln.startswith("[distinit_targets]")][-1].startswith(
        "[distinit_targets] 4/4 videos") and lines[-2].endswith("ETA 0:00:00"), lines
    # Unlabeled records and no labels.txt (nor beside the copies): DistInit needs none.
    assert not os.path.exists(tmp_path / "t" / "labels.txt")
    summary = trainer.train(methods.TrainConfig(
        model_dir=str(tmp_path / "distinit"), train_data=precomputed[0], task="distinit",
        distinit_teachers=(teacher,), distinit_num_frames=2, distinit_precomputed=True,
        distinit_entropy_threshold=10.0, **base))
    logs = summary["final_train_logs"]
    assert logs["kept"] == 1.0 and logs["distinit"] > 0
    # the mean over the last log window (both steps here), not only the last batch
    mean = summary["mean_train_logs"]
    assert summary["mean_train_logs_steps"] == 2 and mean.keys() == logs.keys()
    assert mean["kept"] == 1.0 and mean["distinit"] != logs["distinit"]
    spec = saving.load_spec(str(tmp_path / "distinit"))
    assert spec.name == "r3d_18" and spec.num_classes == 6 and spec.labels == []
    data = train_fixtures.write_dataset(str(tmp_path / "labeled"), videos=4, frames=6, size=S)
    out = trainer.train(methods.TrainConfig(
        model_dir=str(tmp_path / "ft"), train_data=data, eval_data=data, task="finetune",
        init_from=str(tmp_path / "distinit" / "model"), learning_rate=0.01,
        freeze_until="layer3", **base))
    assert "clip_top1" in out and "video_top5" in out
    ft, _ = saving.load_model_dir(str(tmp_path / "ft"))
    src, _ = saving.load_model_dir(str(tmp_path / "distinit"))
    assert ft.get_layer("Logits.fc").kernel.shape[-1] == 4          # the data's classes
    # Frozen up to layer3: the DistInit weights there are kept, layer4 trained on.
    np.testing.assert_array_equal(src.get_layer("layer3.1.conv2").kernel.numpy(),
                                  ft.get_layer("layer3.1.conv2").kernel.numpy())
    assert not np.array_equal(src.get_layer("layer4.1.conv2").kernel.numpy(),
                              ft.get_layer("layer4.1.conv2").kernel.numpy())
    # An empty labels.txt is no labels for DistInit, and refused for a labeled task; an
    # explicit --labels must exist.
    (tmp_path / "u" / "labels.txt").write_text("")
    on_the_fly = dict(model_dir=str(tmp_path / "x"), train_data=unlabeled, task="distinit",
                      distinit_teachers=(teacher,), **base)
    trainer.validate(methods.TrainConfig(**on_the_fly))
    with pytest.raises(FileNotFoundError, match="nowhere/labels.txt not found"):
        trainer.validate(methods.TrainConfig(**on_the_fly, labels=str(tmp_path / "nowhere" /
                                                                      "labels.txt")))
    with pytest.raises(ValueError, match=r"labels file .*u/labels.txt is empty"):
        trainer.validate(methods.TrainConfig(model_dir=str(tmp_path / "x"), train_data=unlabeled,
                                             **base))
    with pytest.raises(ValueError, match="needs --distinit_teachers"):
        trainer.validate(methods.TrainConfig(model_dir=str(tmp_path / "x"), train_data=data,
                                             task="distinit"))


@pytest.mark.slow
def test_paper_flagfile_pretrains_on_an_unlabeled_file_list(tmp_path):
    """As a user: a plain list of videos -> `prepare --format=list` (no labels.txt) -> `train`
    with the paper's DistInit flagfile as written (its data and run paths, its multi-worker
    strategy as one worker), shrunk to seconds of work and given a small local teacher."""
    import json
    import socket
    import subprocess
    import sys

    from d3d_tf.data import video

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rng = np.random.default_rng(0)
    for i in range(3):
        video.write_video(str(tmp_path / f"v{i}.mp4"),
                          rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8), fps=10.0)
    (tmp_path / "videos.txt").write_text("".join(f"v{i}.mp4\n" for i in range(3)))
    teacher = _image_teacher(3, 0, str(tmp_path / "teacher.keras"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": repo, "TF_CPP_MIN_LOG_LEVEL": "2",
           "TF_CONFIG": json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}"]},
                                    "task": {"type": "worker", "index": 0}})}

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stderr

    run("d3d_tf.prepare", "--format=list", f"--annotations={tmp_path / 'videos.txt'}",
        "--out_dir=data/kinetics400_unlabeled", "--flow=none", "--num_shards=1", "--workers=1")
    assert not os.path.exists(tmp_path / "data" / "kinetics400_unlabeled" / "labels.txt")
    flagfile = os.path.join(repo, "configs", "paper", "distinit",
                            "distinit_kinetics_r2plus1d_18.flags")
    log = run("d3d_tf.train", f"--flagfile={flagfile}", "--depth_multiplier=0.125",
              "--num_frames=4", "--crop_size=32", "--resize_short_side=32", "--batch_size=2",
              "--train_steps=2", "--step_boundaries=1", "--checkpoint_every=2", "--log_every=1",
              f"--distinit_teachers={teacher}")
    run_dir = tmp_path / "runs" / "distinit" / "kinetics_r2plus1d_18"
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["step"] == 2 and summary["final_train_logs"]["distinit"] > 0
    spec = saving.load_spec(str(run_dir / "model"))
    assert spec.name == "r2plus1d_18" and spec.num_classes == 3 and spec.labels == []
    # Progress: no ETA after the first step (it compiles: its time says nothing of the
    # rest), one from the second on.
    steps = [ln for ln in log.splitlines() if "] step " in ln]
    assert len(steps) == 2 and steps[0].endswith("ETA ?") and steps[1].endswith(
        "ETA 0:00:00"), log[-3000:]
