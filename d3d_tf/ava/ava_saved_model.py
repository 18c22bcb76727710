"""SavedModel export of an AVA detector (`python -m d3d_tf.export --format=ava_saved_model`).

Layout as `saved_model.py` (`<out>/<model_name>/<version>/`, labels in `assets.extra/`), with

Signature `serving_default`:
    inputs  frames   uint8   [batch, T, H, W, 3]  RGB 0..255, the clip centred on the keyframe,
                                                  whole frames resized to H x W
            boxes    float32 [batch, N, 4]        person boxes x1, y1, x2, y2 in [0, 1]
    outputs scores   float32 [batch, N, K]        per-box action probabilities (sigmoid)
            logits   float32 [batch, N, K]
            boxes    float32 [batch, N, 4]        the boxes refined by the predicted offsets

T, H and W are fixed (checked at run time, as for the classifier); N is free.
"""
from __future__ import annotations

import os

import tensorflow as tf

from d3d_tf.ava import ava_head
from d3d_tf.data import preprocessing
from d3d_tf.deploy import common, saved_model


def serving_function(detector, rgb_range: str):
    t, h, w, _ = detector.input["rgb"].shape[1:]

    def serve(frames, boxes):
        frames = tf.ensure_shape(frames, [None, t, h, w, 3])
        boxes = tf.ensure_shape(boxes, [None, None, 4])
        out = detector({"rgb": preprocessing.normalize_rgb(frames, rgb_range), "boxes": boxes},
                       training=False)
        logits = tf.cast(out["logits"], tf.float32)
        return {"scores": tf.sigmoid(logits), "logits": logits,
                "boxes": ava_head.decode_boxes(tf.cast(out["box_deltas"], tf.float32), boxes)}

    signature = [tf.TensorSpec([None, t, h, w, 3], tf.uint8, name="frames"),
                 tf.TensorSpec([None, None, 4], tf.float32, name="boxes")]
    return serve, signature


def export(checkpoint: str, out_dir: str, *, model_name: str | None = None, version: int = 1,
           overwrite: bool = False) -> str:
    """Exports a detector directory (or its run directory); returns the version directory.

    The version is swapped in whole, as the classifier's (`saved_model.write_version`): with
    `overwrite`, the served version stays until the new one is complete. `model_name`
    (default `ava_<detector.json "name">`) must be a plain name (`common.check_model_name`).
    """
    if version < 1:
        raise ValueError(f"--version must be a positive integer, got {version}")
    common.check_model_name(model_name)
    directory = ava_head.resolve_detector_dir(checkpoint)
    detector, info = ava_head.load_detector_dir(directory, dropout_keep_prob=1.0)
    name = common.check_model_name(
        model_name or f"ava_{info['name']}",
        source="--model_name" if model_name else
        f'{os.path.join(directory, ava_head.DETECTOR_FILE)} "name" (prefixed ava_)')
    base = os.path.join(out_dir, name)
    serve, signature = serving_function(detector, info["rgb_range"])

    def write(path):
        saved_model.write_module(detector, serve, signature, path)
        os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
        preprocessing.write_labels(os.path.join(path, "assets.extra", common.LABELS_FILE),
                                   info["labels"])

    final = saved_model.write_version(base, version, write, overwrite=overwrite)
    preprocessing.write_labels(os.path.join(base, common.LABELS_FILE), info["labels"])
    return final
