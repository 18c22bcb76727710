"""tf.data input pipeline: TFRecord shards of videos -> batches of clips.

Elements are dicts with only the requested modalities:
  rgb       float32 [B,T,H,W,3]  in [-1,1] (default) or [0,1] (`rgb_range`)
  flow      float32 [B,T,H,W,2]  (x, y) flow / FLOW_BOUND, in [-1,1]
  label     int32   [B]          -1 for unlabeled videos
  video_id  string  [B]

Sampling rules (also in docs/data_pipeline.md). A video has N stored frames, the clip has
T = num_frames frames taken every s = frame_stride frames, spanning L = (T-1)*s + 1 frames.
  * Temporal window. Training: start uniform in [0, N-L]. Eval: K = num_clips starts evenly
    spaced over [0, N-L] (K = 1: the centre clip, start (N-L)//2). Clip frame j is stored frame
    (start + j*s) mod N.
  * Short videos (N < L) loop: the frame index wraps around modulo N; training picks the start
    uniformly in [0, N-1], eval starts at 0 (so the K eval clips of a short video coincide).
  * Flow. Pair i holds the flow from frame i to frame i+1 (N-1 pairs). Clip frame j at stored
    frame f uses pair min(f, N-2): the motion leaving frame f, and for the last frame the
    motion arriving at it. So flow[t] and rgb[t] are the same instant.
  * Space. With `resize_short_side` = R the frames are (virtually) resized so the short side
    is R and a crop_size square is cut; we cut the equivalent square of side
    crop_size*min(H,W)/R in stored pixels (decoding only that window of each JPEG) and resize
    it to crop_size, which is much cheaper than resizing whole frames. Training: random
    position (and side scaled by U(min_scale, 1) when min_scale < 1, a random-resized crop);
    eval: the centre, or with `num_crops` = 3 three squares along the long side (left, centre,
    right; top, centre, bottom for portrait video), the common 3-crop test protocol. Flow is
    cut from the same window and its values are multiplied by the same resize factor,
    because flow is measured in pixels of the image it describes.
  * Flip (training only, p = 0.5, `random_flip`): RGB and flow of a clip flip together; flow x
    is negated. A flip mirrors motion (left <-> right, clockwise <-> counter-clockwise), so
    datasets whose classes are such motions (the built-in synthetic set) train without it.
  * Eval yields every clip of every video once: K clips x num_crops crops per video as
    separate elements (crop-major: the K clips of crop 0, then of crop 1, ...), video_id
    repeated, so scores can be averaged per video.

Randomness comes from stateless ops seeded per element from `tf.data.Dataset.random(seed)`,
so a seeded pipeline is deterministic regardless of parallelism.

A damaged shard makes iteration stop with a bare `DataLossError` that does not name the file;
`d3d_tf.data.records.verify_shards(pattern)` finds it. With `make_dataset(..., skip_damaged=log)`
the rest of a damaged shard is skipped and counted instead (`d3d_tf.data.damaged_shards`).
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from d3d_tf.data import damaged_shards, preprocessing, records
from d3d_tf.data.preprocessing import RGB_RANGES

MODALITIES = ("rgb", "flow")
LABEL_CHECK = "label outside the labels file:"


@dataclasses.dataclass
class PipelineConfig:
    """Input pipeline settings. Sizes in frames / pixels; see the module doc for the rules."""
    file_pattern: str            # glob of TFRecord shards
    num_frames: int = 16         # T
    frame_stride: int = 1        # s
    crop_size: int = 64          # output H = W
    training: bool = True        # random window/crop/flip vs centre crop + K even clips
    modalities: tuple[str, ...] = ("rgb",)  # subset of ("rgb", "flow"); only these are decoded
    batch_size: int = 8          # GLOBAL batch size
    num_clips: int = 1           # eval: K evenly spaced clips per video (training: ignored)
    num_crops: int = 1           # eval: 1 (centre) or 3 crops along the long side per clip
    resize_short_side: int | None = None  # short side before cropping (None = as stored)
    min_scale: float = 1.0       # training: crop side scaled by U(min_scale, 1), then resized
    random_flip: bool = True     # training: horizontal flip with p = 0.5. Turn it off when the
                                 # class depends on left/right motion or rotation sense.
    rgb_range: str = "[-1,1]"    # or "[0,1]" (imported checkpoints)
    shuffle_buffer: int = 256    # records (training only)
    repeat: bool | None = None   # default: repeat in training, single pass in eval
    drop_remainder: bool | None = None  # default True in training, False in eval
    seed: int | None = None      # deterministic when set
    # Per-frame features a method stores with each record: (key, fn) pairs, fn(serialized
    # record, frame indices int32 [K*T], K, T) -> a tensor [K,T,...] added to the element as
    # `key` (DistInit's stored teacher logits: d3d_tf.distinit.teacher_logits.FRAME_FEATURE).
    frame_features: tuple = ()
    num_classes: int | None = None  # labels must lie in [-1, num_classes): checked per record

    def validate(self) -> None:
        mods = tuple(self.modalities)
        if not mods or any(m not in MODALITIES for m in mods) or len(set(mods)) != len(mods):
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {mods}")
        if self.rgb_range not in RGB_RANGES:
            raise ValueError(f"rgb_range must be one of {RGB_RANGES}, got {self.rgb_range!r}")
        for name in ("num_frames", "frame_stride", "crop_size", "batch_size", "num_clips"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {self.num_crops}")
        if self.resize_short_side is not None and self.resize_short_side < 1:
            raise ValueError(f"resize_short_side must be >= 1, got {self.resize_short_side}")
        if not 0.0 < self.min_scale <= 1.0:
            raise ValueError(f"min_scale must be in (0, 1], got {self.min_scale}")


def list_files(file_pattern: str) -> list[str]:
    files = sorted(tf.io.gfile.glob(file_pattern))
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {file_pattern!r}")
    return files


def num_videos(file_pattern: str) -> int:
    """Number of records (videos) in the shards matching `file_pattern`, without parsing."""
    ds = tf.data.TFRecordDataset(list_files(file_pattern), num_parallel_reads=tf.data.AUTOTUNE)
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def num_eval_clips(config: PipelineConfig) -> int:
    """Clips an evaluation pass over `config` yields: videos x num_clips x num_crops, the
    videos counted from the shards' record headers (cheap: no record is read; a progress
    total, not a check)."""
    videos = sum(records.count_framed(f)[0] for f in list_files(config.file_pattern))
    return videos * config.num_clips * config.num_crops


def _temporal_indices(n, config: PipelineConfig, seed):
    """Stored frame indices int32 [K,T] (K = 1 in training)."""
    t, s = config.num_frames, config.frame_stride
    span = (t - 1) * s + 1
    if config.training:
        # Long enough: any start keeping the window inside; too short: any start (loop).
        hi = tf.where(n >= span, tf.maximum(n - span, 0), n - 1)
        starts = tf.random.stateless_uniform([1], seed, 0, hi + 1, dtype=tf.int32)
    else:
        starts = preprocessing.eval_clip_starts(n, span, config.num_clips)
    return preprocessing.clip_indices(starts, t, s, n)


def _crop_window(h, w, config: PipelineConfig, seed):
    """Square crop window in stored pixels: (y0, x0, side) int32 scalars."""
    short = tf.minimum(h, w)
    side = tf.cast(config.crop_size, tf.float32)
    if config.resize_short_side is not None:
        side = side * tf.cast(short, tf.float32) / float(config.resize_short_side)
    if config.training and config.min_scale < 1.0:
        side = side * tf.random.stateless_uniform([], seed, config.min_scale, 1.0)
    side = tf.clip_by_value(tf.cast(tf.round(side), tf.int32), 1, short)
    if config.training:
        u = tf.random.stateless_uniform([2], seed + 1, 0.0, 1.0)
        y0 = tf.cast(u[0] * tf.cast(h - side + 1, tf.float32), tf.int32)
        x0 = tf.cast(u[1] * tf.cast(w - side + 1, tf.float32), tf.int32)
        y0, x0 = tf.minimum(y0, h - side), tf.minimum(x0, w - side)
    else:
        y0, x0 = (h - side) // 2, (w - side) // 2
    return y0, x0, side


def crop_offsets(h, w, side, num_crops: int):
    """Eval crop corners int32 [num_crops, 2] of (y0, x0) for a side x side square.

    1: the centre. 3: along the long side, first / centre / last position (x for landscape and
    square frames, y for portrait), the short side centred.
    """
    cy, cx = (h - side) // 2, (w - side) // 2
    if num_crops == 1:
        return tf.stack([[cy, cx]])
    along = tf.stack([0, (tf.maximum(h, w) - side) // 2, tf.maximum(h, w) - side])
    landscape = tf.fill([3], cy), along
    portrait = along, tf.fill([3], cx)
    return tf.cond(w >= h, lambda: tf.stack(landscape, axis=1),
                   lambda: tf.stack(portrait, axis=1))


def _resize(images, side, crop_size):
    """float32 [M,side,side,C] -> [M,crop,crop,C] (no-op when side == crop)."""
    return tf.cond(side == crop_size, lambda: images,
                   lambda: tf.image.resize(images, [crop_size, crop_size], method="bilinear"))


def _make_clip_fn(config: PipelineConfig):
    mods = tuple(config.modalities)
    c, t = config.crop_size, config.num_frames

    def clip_fn(serialized, seed):
        ex = records.parse_sequence_example(serialized, with_rgb="rgb" in mods,
                                            with_flow="flow" in mods)
        n = tf.cast(ex["num_frames"], tf.int32)
        h, w = tf.cast(ex["height"], tf.int32), tf.cast(ex["width"], tf.int32)
        idx = _temporal_indices(n, config, seed)            # [K,T]
        y0, x0, side = _crop_window(h, w, config, seed)
        corners = tf.stack([[y0, x0]])                      # [C,2], C = 1 in training
        if not config.training:
            corners = crop_offsets(h, w, side, config.num_crops)
        num_crops = tf.shape(corners)[0]
        k = num_crops * tf.shape(idx)[0]                    # C*K clips, crop-major
        flat = tf.tile(tf.reshape(idx, [-1]), [num_crops])  # [C*K*T] stored frames
        windows = tf.concat([corners, tf.fill([num_crops, 2], side)], axis=1)
        windows = tf.repeat(windows, tf.size(idx), axis=0)  # [C*K*T, 4] (y0, x0, h, w)
        flip = False
        if config.training and config.random_flip:
            flip = tf.random.stateless_uniform([], seed + 2) < 0.5
        out = {}
        if "rgb" in mods:
            frames = tf.map_fn(
                lambda a: tf.io.decode_and_crop_jpeg(a[0], a[1], channels=3),
                (tf.gather(ex[records.IMAGE_KEY], flat), windows),
                fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
            rgb = _resize(tf.cast(frames, tf.float32), side, c)
            if config.training and config.random_flip:
                rgb = tf.cond(flip, lambda: tf.reverse(rgb, axis=[2]), lambda: rgb)
            rgb = preprocessing.normalize_rgb(rgb, config.rgb_range)
            out["rgb"] = tf.reshape(rgb, [k, t, c, c, 3])
        if "flow" in mods:
            encoded = ex[records.FLOW_KEY]
            check = tf.debugging.assert_equal(
                tf.shape(encoded)[0], n - 1,
                message="record has no flow/encoded (or not N-1 entries): prepare the "
                        "dataset with --flow=tvl1|farneback, or drop 'flow' from modalities")
            with tf.control_dependencies([check]):  # check before gathering from it
                encoded = tf.identity(encoded)
            pairs = tf.minimum(flat, n - 2)
            q = tf.map_fn(
                lambda a: tf.io.decode_png(a[0], channels=3)[
                    a[1][0]:a[1][0] + side, a[1][1]:a[1][1] + side, :2],
                (tf.gather(encoded, pairs), windows),
                fn_output_signature=tf.TensorSpec([None, None, 2], tf.uint8))
            # Inverse of flow.quantize_flow: q = round((f + B) * 255 / (2B)) -> f/B.
            flow = tf.cast(q, tf.float32) * (2.0 / 255.0) - 1.0
            flow = _resize(flow, side, c) * (float(c) / tf.cast(side, tf.float32))
            if config.training and config.random_flip:
                flow = tf.cond(flip, lambda: tf.reverse(flow, axis=[2]) * [-1.0, 1.0],
                               lambda: flow)
            out["flow"] = tf.reshape(tf.clip_by_value(flow, -1.0, 1.0), [k, t, c, c, 2])
        for key, read in config.frame_features:
            out[key] = read(serialized, flat, k, t)
        label = tf.cast(ex["label"], tf.int32)
        if config.num_classes is not None:
            # An out-of-range label would train with CE = 0 (one_hot gives zeros).
            check = tf.debugging.Assert(
                tf.logical_and(label >= -1, label < config.num_classes),
                [LABEL_CHECK, config.num_classes, "classes; video", ex["video_id"], "label",
                 label])
            with tf.control_dependencies([check]):
                label = tf.identity(label)
        out["label"] = tf.fill([k], label)
        out["video_id"] = tf.fill([k], ex["video_id"])
        return out

    return clip_fn


def make_dataset(config: PipelineConfig,
                 input_context: tf.distribute.InputContext | None = None,
                 skip_damaged: damaged_shards.DamageLog | None = None) -> tf.data.Dataset:
    """Builds the tf.data pipeline described in the module doc.

    With `skip_damaged`, a truncated or corrupt shard is read up to its damage and entered in
    that log instead of stopping the iteration (`d3d_tf.data.damaged_shards`).

    With `input_context`, this pipeline reads its share of the shards (files split by
    `input_pipeline_id`; if there are fewer files than pipelines, every pipeline reads all
    files in the same order and keeps every num_input_pipelines-th record) and batches
    `input_context.get_per_replica_batch_size(config.batch_size)`.
    """
    config.validate()
    training = config.training
    repeat = training if config.repeat is None else config.repeat
    drop_remainder = training if config.drop_remainder is None else config.drop_remainder
    deterministic = config.seed is not None or not training

    files = list_files(config.file_pattern)
    num_pipelines, pipeline_id = 1, 0
    batch_size = config.batch_size
    if input_context is not None:
        num_pipelines = input_context.num_input_pipelines
        pipeline_id = input_context.input_pipeline_id
        batch_size = input_context.get_per_replica_batch_size(config.batch_size)
    shard_records = num_pipelines > 1 and len(files) < num_pipelines
    if num_pipelines > 1 and not shard_records:
        files = files[pipeline_id::num_pipelines]

    ds = tf.data.Dataset.from_tensor_slices(files)
    if training and not shard_records:
        ds = ds.shuffle(len(files), seed=config.seed, reshuffle_each_iteration=True)
    read = tf.data.TFRecordDataset if skip_damaged is None else damaged_shards.reader(
        skip_damaged)
    ds = ds.interleave(read, cycle_length=min(len(files), 16),
                       block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=deterministic or shard_records)
    if shard_records:
        ds = ds.shard(num_pipelines, pipeline_id)
    if training and config.shuffle_buffer > 1:
        ds = ds.shuffle(config.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    # One [2] int64 stateless seed per element; `seed + pipeline_id` keeps pipelines distinct.
    seed = None if config.seed is None else config.seed + 1000003 * pipeline_id
    rng = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((ds, rng.batch(2)))
    ds = ds.map(_make_clip_fn(config), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=deterministic)
    ds = ds.unbatch()  # [K,...] clips -> K elements (K = 1 in training)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder,
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return with_options(ds.prefetch(tf.data.AUTOTUNE), deterministic)


def with_options(ds: tf.data.Dataset, deterministic: bool) -> tf.data.Dataset:
    """`ds` with the tf.data options every pipeline of the project shares."""
    options = tf.data.Options()
    options.deterministic = deterministic
    # tf.data's autotuner wakes on a period that doubles up to 60 s, and deleting an iterator
    # waits for its next wake-up: up to a minute idle after every training. Without it,
    # AUTOTUNE stages run at tf.data's fixed initial parallelism, which keeps pace here.
    options.autotune.enabled = False
    return ds.with_options(options)
