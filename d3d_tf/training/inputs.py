"""What a training run reads: its shards, labels and input-pipeline settings."""
from __future__ import annotations

import os

import tensorflow as tf

from d3d_tf.data import pipeline, preprocessing, records
from d3d_tf.models import saving


def require_data(pattern: str, what: str) -> list[str]:
    """The files matching `pattern` (sorted); FileNotFoundError naming the flag `what` if none."""
    files = sorted(tf.io.gfile.glob(pattern)) if pattern else []
    if not files:
        raise FileNotFoundError(f"{what}: no TFRecord files match {pattern!r}")
    return files


def shards_without_flow(files: list[str]) -> list[str]:
    """The shards of `files` whose first record holds no optical flow (one record read per
    shard: `prepare` writes a shard with one --flow setting). Empty shards, and shards whose
    first record is damaged (the input pipeline reports those), are not listed."""
    missing = []
    for path in files:
        try:
            first = next(records.read_records(path), None)
        except records.RecordError:
            continue
        if first is None:
            continue
        parsed = records.parse_sequence_example(tf.constant(first), with_rgb=False,
                                                with_flow=True)
        if int(tf.shape(parsed[records.FLOW_KEY])[0]) == 0:
            missing.append(path)
    return missing


def no_flow_text(files: list[str], missing: list[str]) -> str:
    """Which of the shards `files` hold no flow (`missing`, from `shards_without_flow`)."""
    if len(missing) == len(files):
        return "none of its shards holds optical flow"
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    return (f"{len(missing)} of its {len(files)} shards hold no optical flow "
            f"({', '.join(missing[:3])}{more})")


def labels_path(c) -> str:
    """`c.labels`, else labels.txt next to the first shard of `c.train_data`."""
    if c.labels:
        return c.labels
    files = sorted(tf.io.gfile.glob(c.train_data))
    return os.path.join(os.path.dirname(files[0]) if files else ".", "labels.txt")


def label_names(c, *, optional: bool = False) -> list[str]:
    """Class names of the run's labels file (`labels_path`), in label-id order.

    optional: a task that learns no labels (its records may be unlabeled, label -1;
    `prepare --format=list` writes no labels.txt): a missing labels.txt next to the shards or
    an empty one gives [] (no label range to check); an explicit `--labels` must still exist.
    Otherwise the file must exist and list classes: FileNotFoundError / ValueError name it."""
    path = labels_path(c)
    if optional and ((not c.labels and not os.path.exists(path))
                     or (os.path.isfile(path) and not os.path.getsize(path))):
        return []
    if not os.path.isfile(path):
        raise FileNotFoundError(f"labels file {path} not found: pass --labels or put "
                                "labels.txt next to the training shards")
    return preprocessing.read_labels(path)


def pipeline_config(c, *, training: bool, batch: int, seed: int | None, modalities,
                    num_classes: int | None, frame_features=()) -> pipeline.PipelineConfig:
    """The clip pipeline of run settings `c` for training or evaluation."""
    return pipeline.PipelineConfig(
        file_pattern=c.train_data if training else c.eval_data, num_frames=c.num_frames,
        frame_stride=c.frame_stride, crop_size=c.crop_size, training=training,
        modalities=tuple(modalities), batch_size=batch,
        num_clips=1 if training else c.eval_clips, num_crops=1 if training else c.eval_crops,
        resize_short_side=c.resize_short_side,
        min_scale=c.min_scale if training else 1.0, random_flip=c.random_flip,
        rgb_range=c.rgb_range, num_classes=num_classes,
        frame_features=tuple(frame_features), shuffle_buffer=c.shuffle_buffer, seed=seed)


def require_model_dir(path, flag: str, task: str, hint: str = "") -> None:
    """Raises a clear error unless `path` (the value of `flag`) is a model directory."""
    if not path:
        raise ValueError(f"{task} needs {flag}=<model directory>")
    try:
        saving.resolve_model_dir(path)  # a model directory or a run directory holding one
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{flag}={path}: not a model directory ({e}){hint}") from None
