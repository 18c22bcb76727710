"""Tiny datasets and model directories for the probe tests (no downloads, no TV-L1)."""
from __future__ import annotations

import os

import numpy as np

from d3d_tf import models
from d3d_tf.data import records
from d3d_tf.models import saving

# Constant translations: the whole frame moves by (dx, dy) px per frame, so the flow field
# is that vector everywhere (the stored "TV-L1" is the exact flow).
SHIFTS = ((2, 0), (-2, 0), (0, 2), (0, -2))
TINY = {"depth_multiplier": 0.25, "dropout_keep_prob": 1.0, "final_endpoint": "Mixed_3b"}


def write_translations(out_dir: str, *, videos: int = 8, frames: int = 6, size: int = 32,
                       with_flow: bool = True, prefix: str = "train", seed: int = 0) -> str:
    """Shards of noise textures translated by one of SHIFTS per video; returns the glob."""
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"shift_{dx}_{dy}" for dx, dy in SHIFTS]
    with open(os.path.join(out_dir, "labels.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    writer = records.ShardWriter(os.path.join(out_dir, f"{prefix}-00000.tfrecord"))
    for v in range(videos):
        label = v % len(SHIFTS)
        dx, dy = SHIFTS[label]
        texture = rng.integers(0, 256, (size, size, 1), dtype=np.uint8).repeat(2, 0).repeat(2, 1)
        texture = np.repeat(texture[:size, :size], 3, axis=-1)
        video = np.stack([np.roll(texture, (dy * t, dx * t), axis=(0, 1))
                          for t in range(frames)])
        flow = np.zeros((frames - 1, size, size, 2), np.float32) + (dx, dy)
        q = np.round((flow + 20) * 255 / 40).astype(np.uint8)
        writer.write(records.make_sequence_example(
            video, video_id=f"{prefix}_{v}", label=label, label_name=names[label],
            flow_q=q if with_flow else None))
    writer.close()
    return os.path.join(out_dir, f"{prefix}-*.tfrecord")


def save_model(directory: str, *, modality: str = "rgb", frames: int = 4, size: int = 32,
               seed: int = 0, train_data: str | None = None, steps: int = 0) -> str:
    """A tiny S3D-G model directory of `modality`, trained `steps` steps to classify the
    translations of `train_data` (0: as initialized)."""
    import keras
    import tensorflow as tf

    from d3d_tf.data import pipeline
    from d3d_tf.training import tasks

    keras.utils.set_random_seed(seed)
    c = 3 if modality == "rgb" else 2
    net = models.build_classifier("s3dg", num_classes=len(SHIFTS),
                                  input_shape=(frames, size, size, c), in_channels=c,
                                  batch_norm_decay=0.9, **TINY)
    if steps:
        task = tasks.Classifier(net, modality=modality)
        task.compile(optimizer=keras.optimizers.Adam(3e-3))
        ds = pipeline.make_dataset(pipeline.PipelineConfig(
            train_data, num_frames=frames, crop_size=size, modalities=(modality,),
            batch_size=4, random_flip=False, seed=seed))
        step = tf.function(task.train_step)
        for _, batch in zip(range(steps), ds):
            step(batch)
    saving.save_model_dir(directory, net, saving.spec_for(net, name="s3dg", modality=modality))
    return directory
