"""TensorFlow's data errors while reading shards -> one line naming the shard or video.

    with read_errors.explained(config.train_data, config.eval_data):
        ...iterate pipelines...

tf.data reports a damaged shard as a bare `DataLossError: truncated record at N` without the
file, an undecodable JPEG as `InvalidArgumentError: Invalid JPEG data` and a label outside
the labels file as a failed assertion. Inside `explained`, these become RecordError (the
damaged shard, found by re-reading the shards of the given globs) or ValueError (the video and
its label), each pointing to `python -m d3d_tf.prepare --verify`.
"""
from __future__ import annotations

import contextlib
import re

import tensorflow as tf

from d3d_tf.data import records
from d3d_tf.data.pipeline import LABEL_CHECK

NO_FLOW = "record has no flow/encoded"  # the pipeline's flow assertion


def _verify_hint(patterns) -> str:
    return " or ".join(f"python -m d3d_tf.prepare --verify='{p}'" for p in patterns)


def damaged_shard(patterns) -> str | None:
    """The RecordError message of the first damaged shard matching `patterns`, else None."""
    for pattern in patterns:
        for path in sorted(tf.io.gfile.glob(pattern)):
            try:
                records.verify_shard(path, parse=False)
            except records.RecordError as e:
                return str(e)
    return None


def _label_message(text: str) -> str | None:
    if LABEL_CHECK not in text:
        return None
    match = re.search(re.escape(LABEL_CHECK) + r"\]\s*\[(\d+)\]\s*\[classes; video\]\s*"
                      r"\[(.*?)\]\s*\[label\]\s*\[(-?\d+)\]", text)
    if not match:
        return f"a record has a {LABEL_CHECK.rstrip(':')}"
    classes, video, label = match.groups()
    return (f"video {video.strip()} has label {label}, "
            f"outside the {classes} classes of the labels file (or of the model): the "
            f"records were prepared with another labels.txt")


def nothing_read(flag: str, pattern: str, log=None) -> ValueError:
    """The error for an input that gave no video at all: which shards of `pattern` (the value
    of `flag`) are empty, and which `log` (a `damaged_shards.DamageLog`, with
    --skip_corrupt_records) found damaged."""
    files = sorted(tf.io.gfile.glob(pattern)) if pattern else []
    empty = [f for f in files if tf.io.gfile.stat(f).length == 0]
    damaged = log.shards if log is not None else []
    parts = []
    if damaged:
        parts.append(f"{len(damaged)} of its {len(files)} shard(s) damaged: {log.summary()}")
    if empty:
        more = f" and {len(empty) - 3} more" if len(empty) > 3 else ""
        parts.append(f"{len(empty)} of its {len(files)} shard(s) empty "
                     f"({', '.join(empty[:3])}{more})")
    return ValueError(f"{flag}={pattern} gave no video: {'; '.join(parts) or 'nothing read'}")


@contextlib.contextmanager
def explained(*patterns):
    """Turns the data errors raised inside the block into one-line errors (module doc)."""
    patterns = [p for p in patterns if p]
    try:
        yield
    except tf.errors.DataLossError as e:
        found = damaged_shard(patterns)
        raise records.RecordError(
            (found or f"a TFRecord shard of {patterns} is damaged "
             f"({records._tf_message(e)})") + f"; find every damaged shard with "
            f"{_verify_hint(patterns)}") from None
    except tf.errors.InvalidArgumentError as e:
        text = str(getattr(e, "message", e))
        label = _label_message(text)
        if label:
            raise ValueError(label) from None
        if NO_FLOW in text:
            raise ValueError(f"the records {patterns} hold no optical flow but this model or "
                             f"run reads flow: prepare them with --flow=tvl1 (or farneback)"
                             ) from None
        if "JPEG" in text or "PNG" in text:
            raise records.RecordError(
                f"a frame of {patterns} does not decode ({records._tf_message(e)}); find the "
                f"record with {_verify_hint(patterns)}") from None
        raise
