"""Precomputes DistInit's teacher logits for every stored frame and writes them into a copy of
the shards (`d3d_tf.data.teacher_logits`), so that a training step costs only the student.

    precompute(TargetsConfig(records="data/u/train-*.tfrecord", out_dir="data/u_t",
                             teachers=("ResNet50",)))

Each frame goes to the teachers whole (resized to the teacher's input size), while on-the-fly
targets see the clip's crop (and flip): on uncropped, unflipped clips both give the same logits.
"""
from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import tensorflow as tf

from d3d_tf import config_flags
from d3d_tf.config_flags import field
from d3d_tf.data import records, teacher_logits
from d3d_tf.data.pipeline import RGB_RANGES
from d3d_tf.training import distinit


@dataclasses.dataclass
class TargetsConfig:
    """Inputs of `precompute` (also the flags of `python -m d3d_tf.distinit_targets`)."""
    records: str = field(help="Glob of the TFRecord shards to label (from d3d_tf.prepare).")
    out_dir: str = field(help="Folder for the labelled copies (same shard names) and "
                         "labels.txt.")
    teachers: tuple = field((), "Image teachers: keras.applications names (ResNet50), .keras "
                            "files or model directories, in the order --distinit_teachers "
                            "will list them.")
    teacher_weights: tuple = field(("imagenet",), "Weights of each keras.applications teacher "
                                   "(imagenet, a local file, or none).")
    rgb_range: str = field("[-1,1]", "RGB range the teachers are given frames in (the "
                           "training run's --rgb_range).", choices=RGB_RANGES)
    batch_frames: int = field(64, "Frames per teacher call.", min=1)


def frame_logits(teachers, frames_uint8: np.ndarray, rgb_range: str, batch: int) -> np.ndarray:
    """Concatenated teacher logits float32 `[N,D]` of uint8 frames `[N,H,W,3]`."""
    x = frames_uint8.astype(np.float32)
    x = x / 127.5 - 1.0 if rgb_range == "[-1,1]" else x / 255.0
    rows = []
    for i in range(0, len(x), batch):
        chunk = tf.constant(x[i:i + batch])
        rows.append(np.concatenate([t.frame_logits(chunk).numpy() for t in teachers], -1))
    return np.concatenate(rows)


def precompute(config: TargetsConfig, *, log=print) -> list[str]:
    """Writes `out_dir/<shard name>` with teacher logits for every frame; returns the paths.
    A shard already in `out_dir` is skipped (reruns resume)."""
    config_flags.check(config)
    files = sorted(tf.io.gfile.glob(config.records)) if config.records else []
    if not files:
        raise FileNotFoundError(f"--records: no TFRecord files match {config.records!r}")
    teachers = distinit.load_teachers(config.teachers, config.teacher_weights,
                                      rgb_range=config.rgb_range)
    names = list(config.teachers)
    classes = [t.num_classes for t in teachers]
    os.makedirs(config.out_dir, exist_ok=True)
    labels = os.path.join(os.path.dirname(files[0]), "labels.txt")
    if os.path.isfile(labels):
        shutil.copy(labels, os.path.join(config.out_dir, "labels.txt"))
    written = []
    for path in files:
        out = os.path.join(config.out_dir, os.path.basename(path))
        written.append(out)
        if os.path.exists(out):
            continue
        writer = records.ShardWriter(out)
        count = 0
        for serialized in records.read_records(path):
            frames = records.decode_example(serialized)["rgb"]
            example = tf.train.SequenceExample.FromString(serialized)
            logits = frame_logits(teachers, frames, config.rgb_range, config.batch_frames)
            writer.write(teacher_logits.add_to_example(example, logits, names, classes))
            count += 1
        writer.close()
        log(f"{out}: {count} videos, teacher logits {classes} per frame")
    return written
