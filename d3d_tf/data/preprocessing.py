"""What training, evaluation and serving must do identically to a video: one implementation each.

* `FLOW_BOUND`: stored flow is clipped to [-20, 20] px; networks see `flow / FLOW_BOUND`.
* `normalize_rgb`: uint8 (or float 0..255) pixels -> the network's range, `[-1,1]` or `[0,1]`.
  The input pipeline, the SavedModel and the TFLite graphs call it.
* `eval_clip_starts` / `clip_indices`: which stored frames a clip takes (the eval rule: K starts
  evenly spaced, loop short videos). The input pipeline and `d3d_tf.deploy.predictor` call it.
* `read_labels` / `write_labels`: `labels.txt`, one class name a line.

A leaf of the package, below every layer (models, data, training, export import it; it imports
no d3d_tf module): the models' saved specs name the same ranges the pipeline applies. No cv2,
and TensorFlow is imported only inside the functions that run TF ops, so `prepare`'s worker
processes and `d3d_tf.data.flow` import this module without loading TensorFlow.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

FLOW_BOUND = 20.0  # pixels
RGB_RANGES = ("[-1,1]", "[0,1]")


def normalize_rgb(frames, rgb_range: str = "[-1,1]") -> tf.Tensor:
    """Pixels in 0..255 (uint8 or float, any shape `[..., 3]`) -> float32 in `rgb_range`."""
    import tensorflow as tf

    x = tf.cast(frames, tf.float32)
    if rgb_range == "[-1,1]":
        return x / 127.5 - 1.0
    if rgb_range == "[0,1]":
        return x / 255.0
    raise ValueError(f"rgb_range must be one of {RGB_RANGES}, got {rgb_range!r}")


def normalization_text(rgb_range: str) -> str:
    """How `normalize_rgb` scales pixels, in words (model cards)."""
    return {"[-1,1]": "x / 127.5 - 1 (uint8 -> [-1, 1])",
            "[0,1]": "x / 255 (uint8 -> [0, 1])"}[rgb_range]


def eval_clip_starts(num_video_frames, span, num_clips: int) -> tf.Tensor:
    """First stored frame of each of K = `num_clips` evaluation clips, int32 [K].

    A clip spans `span` = (T-1)*stride + 1 frames. K = 1: the centre clip, start (N-span)//2;
    K > 1: starts round(k*(N-span)/(K-1)), k = 0..K-1, evenly spaced from the first to the last
    possible start. Videos shorter than one clip start at 0 (they loop).
    """
    import tensorflow as tf

    n = tf.cast(num_video_frames, tf.int32)
    max_start = tf.maximum(n - tf.cast(span, tf.int32), 0)
    if num_clips == 1:
        return tf.reshape(max_start // 2, [1])
    k = tf.range(num_clips, dtype=tf.int32)
    return (2 * k * max_start + (num_clips - 1)) // (2 * (num_clips - 1))


def clip_indices(starts, num_frames: int, stride: int, num_video_frames) -> tf.Tensor:
    """Stored frame indices int32 [K,T] of clips starting at `starts` [K]; short videos loop
    (frame index modulo N)."""
    import tensorflow as tf

    starts = tf.cast(starts, tf.int32)
    steps = tf.range(num_frames, dtype=tf.int32) * stride
    return (starts[:, None] + steps[None, :]) % tf.cast(num_video_frames, tf.int32)


def read_labels(path: str) -> list[str]:
    """Class names of a `labels.txt`, in class-index order: one per line, surrounding
    whitespace stripped, blank lines skipped. FileNotFoundError / ValueError name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"labels file not found: {path}")
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ValueError(f"labels file {path} is empty")
    return names


def write_labels(path: str, labels) -> None:
    """Writes `labels` one a line (`d3d_tf.core.atomic`: readers never see half a file)."""
    from d3d_tf.core import atomic

    atomic.write_text(path, "".join(f"{name}\n" for name in labels))
