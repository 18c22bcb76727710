"""tf.data pipeline for AVA keyframe records (`d3d_tf.ava.ava`): clips + person boxes.

Elements (batched; N = max_boxes, K = classes):
  rgb        float32 [B,T,S,S,3]  the clip centred on the keyframe, [-1,1] or [0,1]
  boxes      float32 [B,N,4]      boxes fed to the detector (x1, y1, x2, y2 in [0, 1] of the
                                  clip's frame); training: jittered ground truth; eval:
                                  proposals (the person detector's), best-scored first
  box_mask   float32 [B,N]        1 for real boxes, 0 for padding
  labels     float32 [B,N,K]      training: multi-hot labels of each box
  targets    float32 [B,N,4]      training: offsets (`ava_head.encode_boxes`) from the box fed
                                  to its ground truth
  scores     float32 [B,N]        eval: the proposals' detector scores
  gt_boxes, gt_labels, gt_mask    eval: the keyframe's ground truth, padded to N
  video_id   string [B], timestamp int64 [B]

Frames: clip frame j is stored frame keyframe_index + (j - T//2) * frame_stride (clamped). The
whole frame is resized to S x S (S = crop_size; AVA's 16:9 frames are squeezed, boxes are
normalized so they do not change). Training may first cut a random window of U(min_scale, 1)
times each side (boxes follow; a box left with < 25% of its area is dropped) and flip (boxes
mirror), then jitters each box: centre moved by U(-j, j) of its size, sides scaled by
exp(U(-j, j)).
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from d3d_tf.ava import ava, ava_head
from d3d_tf.data import records
from d3d_tf.data.pipeline import RGB_RANGES, list_files, with_options


@dataclasses.dataclass
class AvaPipelineConfig:
    file_pattern: str
    num_frames: int = 32          # T
    frame_stride: int = 1
    crop_size: int = 224          # S
    training: bool = True
    batch_size: int = 8
    max_boxes: int = 16           # N
    min_scale: float = 1.0
    random_flip: bool = True
    box_jitter: float = 0.1
    rgb_range: str = "[-1,1]"
    shuffle_buffer: int = 256
    seed: int | None = None

    def validate(self) -> None:
        for name in ("num_frames", "frame_stride", "crop_size", "batch_size", "max_boxes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.min_scale <= 1.0:
            raise ValueError(f"min_scale must be in (0, 1], got {self.min_scale}")
        if self.rgb_range not in RGB_RANGES:
            raise ValueError(f"rgb_range must be one of {RGB_RANGES}, got {self.rgb_range!r}")


def _pad(x, n, value=0.0):
    """First n rows of x [M,...], zero-padded to exactly n."""
    x = x[:n]
    pad = [[0, n - tf.shape(x)[0]]] + [[0, 0]] * (len(x.shape) - 1)
    return tf.pad(x, pad, constant_values=value)


def _area(b):
    return tf.maximum(b[:, 2] - b[:, 0], 0.0) * tf.maximum(b[:, 3] - b[:, 1], 0.0)


def _jitter(boxes, amount, seed):
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    u = tf.random.stateless_uniform(tf.stack([tf.shape(boxes)[0], 4]), seed, -amount, amount)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 + u[:, 0] * w
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + u[:, 1] * h
    w, h = w * tf.exp(u[:, 2]), h * tf.exp(u[:, 3])
    out = tf.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    return tf.clip_by_value(out, 0.0, 1.0)


def _make_fn(config: AvaPipelineConfig):
    t, s, n = config.num_frames, config.crop_size, config.max_boxes

    def fn(serialized, seed):
        ex = ava.parse_keyframe(serialized)
        count = tf.cast(ex["num_frames"], tf.int32)
        kf = tf.cast(ex["keyframe_index"], tf.int32)
        idx = kf + (tf.range(t) - t // 2) * config.frame_stride
        idx = tf.clip_by_value(idx, 0, count - 1)
        frames = tf.map_fn(lambda b: tf.io.decode_jpeg(b, channels=3),
                           tf.gather(ex[records.IMAGE_KEY], idx),
                           fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
        frames = tf.cast(frames, tf.float32)
        gt, labels = ex["box"], ex["box/labels"]
        if config.training:
            scale = tf.random.stateless_uniform([], seed, config.min_scale, 1.0)
            off = tf.random.stateless_uniform([2], seed + 1, 0.0, 1.0) * (1.0 - scale)
            x0, y0 = off[0], off[1]
            hh, ww = tf.cast(tf.shape(frames)[1], tf.float32), tf.cast(tf.shape(frames)[2],
                                                                       tf.float32)
            window = tf.cast(tf.round(tf.stack([y0 * hh, x0 * ww, scale * hh, scale * ww])),
                             tf.int32)
            frames = frames[:, window[0]:window[0] + tf.maximum(window[2], 1),
                            window[1]:window[1] + tf.maximum(window[3], 1)]
            moved = tf.clip_by_value((gt - [x0, y0, x0, y0]) / scale, 0.0, 1.0)
            keep = _area(moved) * scale * scale >= 0.25 * _area(gt)
            gt, labels = tf.boolean_mask(moved, keep), tf.boolean_mask(labels, keep)
        frames = tf.image.resize(frames, [s, s], method="bilinear")
        if config.training and config.random_flip:
            flip = tf.random.stateless_uniform([], seed + 2) < 0.5
            frames = tf.cond(flip, lambda: tf.reverse(frames, axis=[2]), lambda: frames)
            gt = tf.cond(flip, lambda: tf.stack([1 - gt[:, 2], gt[:, 1], 1 - gt[:, 0],
                                                 gt[:, 3]], -1), lambda: gt)
        rgb = frames / 127.5 - 1.0 if config.rgb_range == "[-1,1]" else frames / 255.0
        out = {"rgb": tf.reshape(rgb, [t, s, s, 3]), "video_id": ex["video_id"],
               "timestamp": ex["timestamp"]}
        if config.training:
            fed = _jitter(gt, config.box_jitter, seed + 3) if config.box_jitter else gt
            out["boxes"] = _pad(fed, n)
            out["targets"] = _pad(ava_head.encode_boxes(gt, fed), n)
            out["labels"] = _pad(labels, n)
            out["box_mask"] = _pad(tf.ones(tf.shape(gt)[:1]), n)
        else:
            order = tf.argsort(ex["proposal/score"], direction="DESCENDING", stable=True)
            out["boxes"] = _pad(tf.gather(ex["proposal"], order), n)
            out["scores"] = _pad(tf.gather(ex["proposal/score"], order), n)
            out["box_mask"] = _pad(tf.ones(tf.shape(order)), n)
            out["gt_boxes"] = _pad(gt, n)
            out["gt_labels"] = _pad(labels, n)
            out["gt_mask"] = _pad(tf.ones(tf.shape(gt)[:1]), n)
        return out

    return fn


def make_dataset(config: AvaPipelineConfig,
                 input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Training: shuffled, repeated, random crops; eval: one pass in file order.

    With `input_context`, this pipeline reads its share of the keyframes as
    `pipeline.make_dataset` does (files split by `input_pipeline_id`; fewer files than
    pipelines: every pipeline reads all files and keeps every num_input_pipelines-th record)."""
    config.validate()
    files = list_files(config.file_pattern)
    batch, pipeline_id, num_pipelines = config.batch_size, 0, 1
    if input_context is not None:
        batch = input_context.get_per_replica_batch_size(config.batch_size)
        pipeline_id = input_context.input_pipeline_id
        num_pipelines = input_context.num_input_pipelines
    shard_records = num_pipelines > 1 and len(files) < num_pipelines
    if num_pipelines > 1 and not shard_records:
        files = files[pipeline_id::num_pipelines]
    ds = tf.data.TFRecordDataset(files)
    if shard_records:
        ds = ds.shard(num_pipelines, pipeline_id)
    if config.training:
        ds = ds.shuffle(config.shuffle_buffer, seed=config.seed,
                        reshuffle_each_iteration=True).repeat()
    seed = None if config.seed is None else config.seed + 1000003 * pipeline_id
    rng = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((ds, rng)).map(_make_fn(config),
                                           num_parallel_calls=tf.data.AUTOTUNE,
                                           deterministic=True)
    ds = ds.batch(batch, drop_remainder=config.training)
    return with_options(ds.prefetch(tf.data.AUTOTUNE), deterministic=True)
