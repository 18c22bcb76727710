"""The AVA action detector: an S3D-G / D3D backbone with a per-person head (D3D Sec. 5.5).

    detector = build_detector(backbone_config, DetectorConfig(num_classes=60),
                              input_shape=(32, 224, 224, 3))
    out = detector({"rgb": clips, "boxes": boxes})
    out["logits"]      # [B,N,K] per-box multi-label logits (sigmoid, not softmax)
    out["box_deltas"]  # [B,N,4] offsets of each box (`encode_boxes`), to refine it

The structure of the AVA baseline the paper follows (Girdhar et al. 2018, "A better baseline
for AVA"): the backbone runs up to `endpoint` (default Mixed_4f), its features are averaged
over time, each person box (x1, y1, x2, y2 normalized to the frame) is cropped from that map
with RoIAlign to `roi_size` x `roi_size`, and the remaining blocks (MaxPool_5a, Mixed_5b,
Mixed_5c: the backbone's own layers and names, so a classifier's weights load) run per box on
the `[1, roi, roi]` crop; spatial mean, dropout, then a sigmoid classifier and one set of box
offsets per box (zero-initialized: the boxes start as given).

A detector directory holds `detector.json` (backbone config, detector config, labels, input
shape and range) and `weights.npz` (`saving.save_weights`).
"""
from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np
import tensorflow as tf

from d3d_tf.core import atomic
from d3d_tf.models import layers as L
from d3d_tf.models import s3dg, saving
from d3d_tf.models.video_model import VideoModel

DETECTOR_FILE = "detector.json"
# Faster R-CNN's scaling of (dx, dy, dw, dh): offsets of unit variance for typical jitter.
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_MAX_LOG_SCALE = float(np.log(1000.0 / 16))  # clip dw, dh as Detectron does


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """The head. num_classes: label-map classes; endpoint: backbone endpoint cropped (slim
    name or alias, before MaxPool_5a); roi_size: RoIAlign output side in feature pixels;
    sampling_ratio: bilinear samples per bin side."""
    num_classes: int
    endpoint: str = "Mixed_4f"
    roi_size: int = 14
    sampling_ratio: int = 2

    def __post_init__(self):
        object.__setattr__(self, "endpoint", s3dg.resolve_endpoint(self.endpoint))
        last = s3dg.VALID_ENDPOINTS.index("MaxPool_5a_2x2")
        if s3dg.VALID_ENDPOINTS.index(self.endpoint) >= last:
            raise ValueError(f"endpoint must come before MaxPool_5a_2x2 (the head runs the "
                             f"blocks after it per box), got {self.endpoint}")
        if self.num_classes < 1 or self.roi_size < 1 or self.sampling_ratio < 1:
            raise ValueError(f"num_classes, roi_size and sampling_ratio must be >= 1, got "
                             f"{self.num_classes}, {self.roi_size}, {self.sampling_ratio}")


# ---- boxes ------------------------------------------------------------------------------------

def encode_boxes(boxes, reference):
    """Offsets (dx, dy, dw, dh) * BOX_WEIGHTS that turn `reference` [...,4] into `boxes` [...,4]
    (both x1, y1, x2, y2): dx = (cx - cx_ref) / w_ref, dw = log(w / w_ref)."""
    boxes, reference = tf.convert_to_tensor(boxes, tf.float32), \
        tf.convert_to_tensor(reference, tf.float32)
    w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    rw, rh = reference[..., 2] - reference[..., 0], reference[..., 3] - reference[..., 1]
    rw, rh = tf.maximum(rw, 1e-6), tf.maximum(rh, 1e-6)
    dx = ((boxes[..., 0] + boxes[..., 2]) - (reference[..., 0] + reference[..., 2])) / 2 / rw
    dy = ((boxes[..., 1] + boxes[..., 3]) - (reference[..., 1] + reference[..., 3])) / 2 / rh
    dw = tf.math.log(tf.maximum(w, 1e-6) / rw)
    dh = tf.math.log(tf.maximum(h, 1e-6) / rh)
    return tf.stack([dx, dy, dw, dh], -1) * BOX_WEIGHTS


def decode_boxes(deltas, reference, clip: bool = True):
    """Inverse of `encode_boxes`: the boxes [...,4] that `deltas` make of `reference`, clipped
    to [0, 1] when `clip`."""
    deltas = tf.convert_to_tensor(deltas, tf.float32) / BOX_WEIGHTS
    reference = tf.convert_to_tensor(reference, tf.float32)
    rw, rh = reference[..., 2] - reference[..., 0], reference[..., 3] - reference[..., 1]
    cx = (reference[..., 0] + reference[..., 2]) / 2 + deltas[..., 0] * rw
    cy = (reference[..., 1] + reference[..., 3]) / 2 + deltas[..., 1] * rh
    w = rw * tf.exp(tf.minimum(deltas[..., 2], _MAX_LOG_SCALE))
    h = rh * tf.exp(tf.minimum(deltas[..., 3], _MAX_LOG_SCALE))
    out = tf.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    return tf.clip_by_value(out, 0.0, 1.0) if clip else out


def roi_align(features, boxes, box_indices, output_size: int, sampling_ratio: int = 2):
    """RoIAlign (Detectron2's `aligned=True`) of normalized boxes on a feature map.

    features: [B,H,W,C]; boxes: [R,4] x1, y1, x2, y2 in [0, 1] of the map's extent (pixel
    centres at (i + 0.5) / W); box_indices: int32 [R], the batch item of each box.
    Each of the output_size^2 bins averages sampling_ratio^2 bilinear samples at its
    regular grid points; samples within a pixel of the border read the border value.
    Returns [R, output_size, output_size, C].
    """
    h, w = tf.shape(features)[1], tf.shape(features)[2]
    # Replicate the border by one pixel: bilinear reads at coordinates in [-1, 0) and
    # (W-1, W] then equal Detectron's clamp to the border.
    padded = tf.pad(features, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    m = output_size * sampling_ratio
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)

    def span(lo, hi, size):
        step = (hi - lo) * size / m
        first = lo * size + 0.5 * step - 0.5 + 1.0  # +1: the padding
        last = first + (m - 1) * step
        return first / (size + 1.0), last / (size + 1.0)  # padded map: size + 2 pixels

    y1, y2 = span(boxes[:, 1], boxes[:, 3], hf)
    x1, x2 = span(boxes[:, 0], boxes[:, 2], wf)
    crops = tf.image.crop_and_resize(padded, tf.stack([y1, x1, y2, x2], -1), box_indices,
                                     [m, m], method="bilinear")
    c = tf.shape(features)[-1]
    crops = tf.reshape(crops, [-1, output_size, sampling_ratio, output_size, sampling_ratio, c])
    return tf.reduce_mean(crops, axis=[2, 4])


class RoIAlign(keras.layers.Layer):
    """`roi_align` of every box of every batch item: ([B,H,W,C], [B,N,4]) -> [B*N,S,S,C]."""

    def __init__(self, output_size: int, sampling_ratio: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.output_size, self.sampling_ratio = output_size, sampling_ratio

    def call(self, features, boxes):
        b, n = tf.shape(boxes)[0], tf.shape(boxes)[1]
        index = tf.repeat(tf.range(b), n)
        out = roi_align(features, tf.reshape(boxes, [-1, 4]), index, self.output_size,
                        self.sampling_ratio)
        s = self.output_size
        return tf.reshape(out, [-1, 1, s, s, features.shape[-1]])  # [B*N,1,S,S,C]

    def compute_output_shape(self, features_shape, boxes_shape):
        return (None, 1, self.output_size, self.output_size, features_shape[-1])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size,
                "sampling_ratio": self.sampling_ratio}


class _TimeMean(keras.layers.Layer):
    """[B,T,H,W,C] -> [B,H,W,C]."""

    def call(self, x):
        return keras.ops.mean(x, axis=1)

    def compute_output_shape(self, shape):
        return (shape[0], *shape[2:])


class _PerBox(keras.layers.Layer):
    """[B*N,D] -> [B,N,D] (N from the boxes input)."""

    def call(self, x, boxes):
        return tf.reshape(x, [tf.shape(boxes)[0], tf.shape(boxes)[1], x.shape[-1]])

    def compute_output_shape(self, x_shape, boxes_shape):
        return (boxes_shape[0], boxes_shape[1], x_shape[-1])


def build_detector(backbone: s3dg.S3DGConfig, config: DetectorConfig, *,
                   input_shape=(32, 224, 224, 3), max_boxes: int | None = None) -> keras.Model:
    """The detector (module doc). Inputs {"rgb": [B,T,H,W,C], "boxes": [B,N,4]}; outputs
    {"logits": [B,N,K], "box_deltas": [B,N,4]}. Padding boxes (all zero) give outputs that the
    losses and the evaluation mask out."""
    cfg = dataclasses.replace(backbone, final_endpoint="Mixed_5c")
    rgb = keras.Input(shape=tuple(input_shape), name="rgb")
    boxes = keras.Input(shape=(max_boxes, 4), name="boxes")
    trunk = s3dg.s3dg_base(rgb, dataclasses.replace(cfg, final_endpoint=config.endpoint))
    feats = _TimeMean(name="AVA.TimeMean")(trunk[config.endpoint])
    rois = RoIAlign(config.roi_size, config.sampling_ratio, name="AVA.RoIAlign")(feats, boxes)
    head = s3dg.s3dg_base(rois, cfg, start_after=config.endpoint)["Mixed_5c"]
    pooled = L.SpatioTemporalMean(name="AVA.Mean")(head)
    pooled = keras.layers.Dropout(1.0 - cfg.dropout_keep_prob, name="AVA.Dropout")(pooled)
    logits = keras.layers.Dense(config.num_classes, name="AVA.Logits")(pooled)
    deltas = keras.layers.Dense(4, kernel_initializer="zeros", name="AVA.BoxDeltas")(pooled)
    outputs = {"logits": _PerBox(name="AVA.PerBoxLogits")(logits, boxes),
               "box_deltas": _PerBox(name="AVA.PerBoxDeltas")(deltas, boxes)}
    model = VideoModel({"rgb": rgb, "boxes": boxes}, outputs, config=cfg, name="ava_detector")
    model.detector_config = config
    return model


def init_backbone(detector: keras.Model, directory: str) -> list:
    """Loads every backbone variable (stem .. Mixed_5c) of a model or run directory into the
    detector; the classifier head (`Logits.`) is not used, the AVA head stays as initialized.
    Returns the loaded variable paths; ValueError naming the directory on a mismatch."""
    directory = saving.resolve_model_dir(directory)
    spec = saving.load_spec(directory)
    if spec.config.get("in_channels") != detector.d3d_config.in_channels:
        raise ValueError(f"{directory}: a {spec.modality} model cannot initialize an RGB "
                         f"detector")
    return saving.load_weights(detector, os.path.join(directory, saving.WEIGHTS_FILE),
                               skip_prefixes=("Logits.", "AVA."))


def save_detector_dir(directory: str, detector: keras.Model, *, name: str, labels, ids,
                      rgb_range: str, source: str = "", metrics: dict | None = None,
                      pretraining: dict | None = None) -> None:
    """Writes `detector.json` and `weights.npz` (module doc); `pretraining`: what the
    backbone was pre-trained on (`d3d_tf.ava.task.pretraining`)."""
    os.makedirs(directory, exist_ok=True)
    saving.save_weights(detector, os.path.join(directory, saving.WEIGHTS_FILE))
    info = {"name": name, "backbone": dataclasses.asdict(detector.d3d_config),
            "detector": dataclasses.asdict(detector.detector_config),
            "input_shape": list(detector.input["rgb"].shape[1:]),
            "labels": list(labels), "action_ids": [int(i) for i in ids],
            "rgb_range": rgb_range, "source": source, "metrics": metrics or {},
            "pretraining": pretraining or {}}
    atomic.write_json(os.path.join(directory, DETECTOR_FILE), info)


def resolve_detector_dir(path: str) -> str:
    """`path` if it holds `detector.json`, else `path/model` (a training run directory)."""
    for candidate in (path, os.path.join(path, "model")):
        if os.path.isfile(os.path.join(candidate, DETECTOR_FILE)):
            return candidate
    raise FileNotFoundError(f"{path} is not an AVA detector directory (no {DETECTOR_FILE}, "
                            f"nor model/{DETECTOR_FILE})")


def load_detector_dir(path: str, *, input_shape=None, **overrides) -> tuple[keras.Model, dict]:
    """Rebuilds a saved detector (at another `(T,H,W,C)` if given; `overrides`: backbone
    fields without variables, e.g. dropout_keep_prob=1.0). Returns (detector, info dict)."""
    directory = resolve_detector_dir(path)
    with open(os.path.join(directory, DETECTOR_FILE)) as f:
        info = json.load(f)
    backbone = s3dg.S3DGConfig(**{**info["backbone"], **overrides})
    shape = tuple(input_shape or info["input_shape"])
    detector = build_detector(backbone, DetectorConfig(**info["detector"]), input_shape=shape)
    saving.load_weights(detector, os.path.join(directory, saving.WEIGHTS_FILE))
    return detector, info
