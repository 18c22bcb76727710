"""Which RGB range a converted classifier expects, judged on one clip the user knows.

A network fed pixels in the wrong range still predicts something, but its top-1 confidence on
a clip of a class it knows is usually much lower. `compare_ranges` scores the centre clip of a
video under both ranges so the user can see which one the checkpoint was trained with.
"""
from __future__ import annotations

import numpy as np

from d3d_tf.models import saving


def centre_clip(frames: np.ndarray, num_frames: int, size: int) -> np.ndarray:
    """uint8 `[N,H,W,3]` (short side >= size) -> the centre clip uint8 `[T,size,size,3]`.

    Frames are looped (index modulo N) when the video has fewer than T frames, as in eval.
    """
    n, h, w = frames.shape[:3]
    if min(h, w) < size:
        raise ValueError(f"frames of {h}x{w} are smaller than the {size}x{size} crop")
    start = max(n - num_frames, 0) // 2
    idx = (start + np.arange(num_frames)) % n
    y0, x0 = (h - size) // 2, (w - size) // 2
    return frames[idx, y0:y0 + size, x0:x0 + size]


def compare_ranges(model, clip_uint8: np.ndarray, labels=()) -> dict:
    """`{range: (top-1 class name or index, its softmax probability)}` for both ranges.

    model: a classifier returning logits `[B,K]`; clip_uint8: `[T,H,W,3]` uint8.
    """
    from d3d_tf.export import common  # the scaling export and serving apply

    out = {}
    for input_range in saving.INPUT_RANGES:
        x = common.normalize(clip_uint8[None], input_range)
        logits = np.asarray(model(x, training=False))[0]
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        top = int(np.argmax(probs))
        out[input_range] = (labels[top] if labels else top, float(probs[top]))
    return out


def check_video(model, path: str, labels=()) -> dict:
    """`compare_ranges` on the centre clip of the video file `path` at the model's T x H."""
    from d3d_tf.data import video

    t, size, channels = model.inputs[0].shape[1], model.inputs[0].shape[2], model.inputs[0].shape[4]
    if channels != 3:
        raise ValueError(f"--check_clip needs an RGB model; this one takes {channels} channels")
    frames = video.read_video(path, short_side=size)
    return compare_ranges(model, centre_clip(frames, t, size), labels)
