"""Which RGB range a converted classifier expects, judged on one clip the user knows.

A network fed pixels in the wrong range still predicts something, but its top-1 confidence on
a clip of a class it knows is usually much lower. `compare_ranges` scores the centre clip of a
video under both ranges so the user can see which one the checkpoint was trained with.
"""
from __future__ import annotations

import numpy as np

from d3d_tf.data import preprocessing


def centre_clip(frames: np.ndarray, num_frames: int, size: int) -> np.ndarray:
    """uint8 `[N,H,W,3]` (short side >= size) -> the centre clip uint8 `[T,size,size,3]`,
    sampled and cropped as evaluation does (`d3d_tf.data.preprocessing`; short videos loop)."""
    n, h, w = frames.shape[:3]
    if min(h, w) < size:
        raise ValueError(f"frames of {h}x{w} are smaller than the {size}x{size} crop")
    starts = preprocessing.eval_clip_starts(n, num_frames, 1)
    idx = preprocessing.clip_indices(starts, num_frames, 1, n).numpy()[0]
    y0, x0 = (h - size) // 2, (w - size) // 2
    return frames[idx, y0:y0 + size, x0:x0 + size]


def compare_ranges(model, clip_uint8: np.ndarray, labels=()) -> dict:
    """`{range: (top-1 class name or index, its softmax probability)}` for both ranges.

    model: a classifier returning logits `[B,K]`; clip_uint8: `[T,H,W,3]` uint8.
    """
    out = {}
    for rgb_range in preprocessing.RGB_RANGES:
        x = preprocessing.normalize_rgb(clip_uint8[None], rgb_range)  # what serving applies
        logits = np.asarray(model(x, training=False))[0]
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        top = int(np.argmax(probs))
        out[rgb_range] = (labels[top] if labels else top, float(probs[top]))
    return out


def check_video(model, path: str, labels=()) -> dict:
    """`compare_ranges` on the centre clip of the video file `path` at the model's T x H."""
    from d3d_tf.data import video

    t, size, channels = model.inputs[0].shape[1], model.inputs[0].shape[2], model.inputs[0].shape[4]
    if channels != 3:
        raise ValueError(f"--check_clip needs an RGB model; this one takes {channels} channels")
    frames = video.read_video(path, short_side=size)
    return compare_ranges(model, centre_clip(frames, t, size), labels)
