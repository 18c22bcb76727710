"""Tiny motion-defined TFRecord datasets for the training tests (no downloads)."""
from __future__ import annotations

import os

import numpy as np

from d3d_tf.data import records

# Classes are defined by motion only and survive the pipeline's horizontal flip (which would
# turn "left" into "right" without changing the label).
CLASSES = ("up", "down", "horizontal", "static")


def moving_square(direction: int, *, frames: int, size: int, rng) -> tuple:
    """uint8 [N,H,W,3] frames of a bright square moving as class `direction` (0-3, see CLASSES)
    and its quantized flow uint8 [N-1,H,W,2] (pipeline encoding: q = round((f+20)*255/40))."""
    dx, dy = [(0, -2), (0, 2), (2 * int(rng.choice([-1, 1])), 0), (0, 0)][direction]
    video = np.full((frames, size, size, 3), 40, np.uint8)
    video += rng.integers(0, 20, video.shape, dtype=np.uint8)
    y, x = rng.integers(size // 4, 3 * size // 4, 2)
    flow = np.zeros((frames - 1, size, size, 2), np.float32)
    for t in range(frames):
        yy, xx = (y + dy * t) % (size - 8), (x + dx * t) % (size - 8)
        video[t, yy:yy + 8, xx:xx + 8] = 220
        if t < frames - 1:
            flow[t, yy:yy + 8, xx:xx + 8] = (dx, dy)
    q = np.round((np.clip(flow, -20, 20) + 20) * 255 / 40).astype(np.uint8)
    return video, q


def write_dataset(out_dir: str, *, videos: int = 8, frames: int = 8, size: int = 32,
                  with_flow: bool = True, shards: int = 2, seed: int = 0,
                  prefix: str = "train") -> str:
    """Writes `prefix-XXXXX.tfrecord` shards + labels.txt; returns the shard glob."""
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(os.path.join(out_dir, "labels.txt"), "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    writers = [records.ShardWriter(os.path.join(out_dir, f"{prefix}-{i:05d}.tfrecord"))
               for i in range(shards)]
    for v in range(videos):
        label = v % len(CLASSES)
        video, q = moving_square(label, frames=frames, size=size, rng=rng)
        ex = records.make_sequence_example(video, video_id=f"{prefix}_{v}", label=label,
                                           label_name=CLASSES[label],
                                           flow_q=q if with_flow else None)
        writers[v % shards].write(ex)
    for w in writers:
        w.close()
    return os.path.join(out_dir, f"{prefix}-*.tfrecord")


def write_ava_records(root: str, data, *, clip_frames: int = 4,
                      splits: tuple = ("train", "val")) -> dict:
    """Tiny AVA keyframe records: `data` (a synthetic_ava.MultiActorConfig) generated under
    root/data and prepared (`prepare --format=ava`, one shard per split) into root/rec, label
    map and labels.txt beside them. Returns generate_dataset's paths plus `<split>_records`
    (the shard glob of each split)."""
    from d3d_tf.ava import ava, synthetic_ava
    from d3d_tf.data import prepare_lib

    paths = synthetic_ava.generate_dataset(data, os.path.join(root, "data"), num_workers=1)
    rec = os.path.join(root, "rec")
    for split in splits:
        ava.prepare(paths[f"{split}_annotations"], paths["video_dir"],
                    ava.AvaPrepareConfig(label_map=paths["label_map"],
                                         excluded=paths[f"{split}_excluded"],
                                         person_boxes=paths[f"{split}_proposals"],
                                         clip_frames=clip_frames),
                    prepare_lib.PrepareConfig(out_dir=rec, split=split, num_shards=1, workers=1))
        paths[f"{split}_records"] = os.path.join(rec, f"{split}-*.tfrecord")
    return paths
