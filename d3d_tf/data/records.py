"""TFRecord schema for videos: one `tf.train.SequenceExample` per video.

Schema (see docs/data_pipeline.md):

  context:
    video_id    bytes   unique id of the video (e.g. `v_ApplyEyeMakeup_g08_c01`)
    label       int64   class index into labels.txt, -1 if unlabeled
    label_name  bytes   class name, b"" if unlabeled
    fps         float   frames per second of the stored frames
    num_frames  int64   N, number of stored frames
    height      int64   H of the stored frames (pixels)
    width       int64   W of the stored frames (pixels)
  feature_lists:
    image/encoded  N   JPEG bytes, RGB frame i
    flow/encoded   N-1 PNG bytes, flow of pair (i -> i+1) quantized by `flow.quantize_flow`,
                       x in channel 0, y in channel 1, 0 in channel 2 (see `codec`);
                       absent (empty) when the dataset was prepared without flow.

Shards are written under a temporary name and renamed when complete (`ShardWriter`), so a
file with the final name is always a whole shard.
"""
from __future__ import annotations

import glob
import os
import re
import struct

import numpy as np
import tensorflow as tf

from d3d_tf.data import codec

IMAGE_KEY = "image/encoded"
FLOW_KEY = "flow/encoded"


class RecordError(ValueError):
    """A TFRecord shard that cannot be read (truncated or corrupt); names the file."""


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _int64(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _float(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def build_sequence_example(*, video_id: str, label: int, label_name: str | None, fps: float,
                           height: int, width: int, jpeg_frames: list[bytes],
                           flow_images: list[bytes] | None = None) -> tf.train.SequenceExample:
    """Builds the SequenceExample from already encoded frames (and flow images).

    `jpeg_frames` has N entries; `flow_images`, if given, has N-1 (one per frame pair).
    """
    n = len(jpeg_frames)
    if n == 0:
        raise ValueError(f"video {video_id!r} has no frames")
    if flow_images is not None and len(flow_images) != n - 1:
        raise ValueError(f"video {video_id!r}: {len(flow_images)} flow images for {n} frames "
                         f"(expected {n - 1}, one per frame pair)")
    context = tf.train.Features(feature={
        "video_id": _bytes([video_id.encode()]),
        "label": _int64([int(label)]),
        "label_name": _bytes([(label_name or "").encode()]),
        "fps": _float([float(fps)]),
        "num_frames": _int64([n]),
        "height": _int64([int(height)]),
        "width": _int64([int(width)]),
    })
    lists = {IMAGE_KEY: tf.train.FeatureList(feature=[_bytes([f]) for f in jpeg_frames])}
    if flow_images is not None:
        lists[FLOW_KEY] = tf.train.FeatureList(feature=[_bytes([f]) for f in flow_images])
    return tf.train.SequenceExample(context=context,
                                    feature_lists=tf.train.FeatureLists(feature_list=lists))


def make_sequence_example(frames: np.ndarray, *, video_id: str, label: int = -1,
                          label_name: str | None = None, fps: float = 25.0,
                          flow_q: np.ndarray | None = None,
                          jpeg_quality: int = 90) -> tf.train.SequenceExample:
    """Encodes numpy frames (+ optional quantized flow) into a SequenceExample.

    Args:
      frames: uint8 RGB [N,H,W,3].
      flow_q: optional uint8 [N-1,H,W,2], the output of `flow.quantize_flow` (x, y).
    """
    frames = np.asarray(frames)
    if flow_q is not None and np.shape(flow_q)[1:3] != frames.shape[1:3]:
        raise ValueError(f"video {video_id!r}: flow size {np.shape(flow_q)[1:3]} differs from "
                         f"frame size {frames.shape[1:3]}")
    return build_sequence_example(
        video_id=video_id, label=label, label_name=label_name, fps=fps,
        height=frames.shape[1], width=frames.shape[2],
        jpeg_frames=codec.encode_jpeg_frames(frames, jpeg_quality),
        flow_images=None if flow_q is None else codec.encode_flow_png(flow_q))


def context_spec() -> dict:
    return {
        "video_id": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        "label_name": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "fps": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
        "num_frames": tf.io.FixedLenFeature([], tf.int64),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
    }


def parse_sequence_example(serialized: tf.Tensor, with_rgb: bool = True,
                           with_flow: bool = False) -> dict[str, tf.Tensor]:
    """Parses one serialized SequenceExample (works in graph mode / tf.data).

    Returns the context fields plus, when asked, `image/encoded` (string [N]) and
    `flow/encoded` (string [N-1], empty if the record has no flow). Frames stay encoded:
    the pipeline decodes only the frames it samples.
    """
    seq_spec = {}
    if with_rgb:
        seq_spec[IMAGE_KEY] = tf.io.FixedLenSequenceFeature([], tf.string)
    if with_flow:
        seq_spec[FLOW_KEY] = tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True)
    context, sequences = tf.io.parse_single_sequence_example(
        serialized, context_features=context_spec(), sequence_features=seq_spec or None)
    out = dict(context)
    out.update(sequences)
    return out


def decode_example(serialized: bytes) -> dict:
    """Eagerly decodes a whole record to numpy, for tests and inspection.

    Returns the context fields (python values) plus `rgb` uint8 [N,H,W,3] and, if present,
    `flow_q` uint8 [N-1,H,W,2] (quantized, as given to `make_sequence_example`).
    """
    parsed = parse_sequence_example(tf.constant(serialized), with_rgb=True, with_flow=True)
    out = {k: parsed[k].numpy() for k in context_spec()}
    out["video_id"] = out["video_id"].decode()
    out["label_name"] = out["label_name"].decode()
    out["rgb"] = np.stack([tf.io.decode_jpeg(f, channels=3).numpy()
                           for f in parsed[IMAGE_KEY]])
    flows = parsed[FLOW_KEY]
    if flows.shape[0]:
        out["flow_q"] = np.stack([tf.io.decode_png(f, channels=3).numpy()[..., :2]
                                  for f in flows])
    return out


class ShardWriter:
    """Writes one TFRecord shard atomically: to `.NAME.partial`, renamed to NAME on close.

    The temporary name starts with a dot and does not end in `.tfrecord`, so globs such as
    `train-*.tfrecord` never match an unfinished shard. Use as a context manager; if the
    block raises, the partial file is removed and the final name is never created.
    """

    def __init__(self, path: str):
        self.path = path
        folder, name = os.path.split(path)
        self.tmp_path = os.path.join(folder, f".{name}.partial")
        self.num_records = 0
        self._writer = tf.io.TFRecordWriter(self.tmp_path)

    def write(self, record: bytes | tf.train.SequenceExample) -> None:
        if not isinstance(record, bytes):
            # Map fields (the context features) serialize in a per-process order otherwise:
            # shards written by other processes or machines would differ in bytes.
            record = record.SerializeToString(deterministic=True)
        self._writer.write(record)
        self.num_records += 1

    def close(self) -> None:
        """Finishes the file and renames it to its final name."""
        self.close_partial()
        self.commit()

    def close_partial(self) -> None:
        """Finishes the temporary file without renaming it (see `commit`)."""
        self._writer.close()

    def commit(self) -> None:
        """Renames the finished temporary file to the final name (atomic on POSIX)."""
        os.replace(self.tmp_path, self.path)

    def abort(self) -> None:
        self._writer.close()
        if os.path.exists(self.tmp_path):
            os.remove(self.tmp_path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def read_records(path: str):
    """Yields the serialized records of one shard; raises RecordError naming the file if the
    shard is truncated or corrupt (TF's own DataLossError does not say which file)."""
    if not tf.io.gfile.exists(path):
        raise RecordError(f"{path}: TFRecord file not found")
    index = 0
    try:
        for record in tf.data.TFRecordDataset(path):
            yield record.numpy()
            index += 1
    except tf.errors.DataLossError as e:
        raise RecordError(f"{path}: truncated or corrupt TFRecord after {index} good records "
                          f"({_tf_message(e)}); delete it and rerun prepare") from e


def _tf_message(error: Exception) -> str:
    """TF error text without its `{{function_node ...}}` prefix and `[Op:...]` suffix."""
    text = str(getattr(error, "message", error)).splitlines()[0]
    text = re.sub(r"^\{\{.*?\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:.*$", "", text)


def verify_shard(path: str, parse: bool = True, decode: bool = False) -> int:
    """Reads a whole shard (checking every CRC) and returns its number of records.

    With `parse`, also checks that every record parses as our SequenceExample schema; with
    `decode`, that every JPEG frame and PNG flow image decodes (what training will do).
    Raises RecordError naming the file and the record index on any problem.
    """
    count = 0
    for record in read_records(path):
        if parse or decode:
            try:
                parsed = parse_sequence_example(tf.constant(record), with_rgb=True,
                                                with_flow=True)
            except (tf.errors.InvalidArgumentError, ValueError) as e:
                raise RecordError(f"{path}: record {count} is not a video SequenceExample: "
                                  f"{_tf_message(e)}") from e
            if decode:
                _decode_all(path, count, parsed)
        count += 1
    _check_framing(path)
    return count


def count_framed(path: str) -> tuple[int, int | None]:
    """(whole records, cut_end) of a shard by its record headers (uint64 length; data and
    CRCs skipped, not checked). cut_end: None, or the byte where the record that the file
    ends inside would end."""
    size = tf.io.gfile.stat(path).length
    offset = count = 0
    with tf.io.gfile.GFile(path, "rb") as f:
        while offset < size:
            f.seek(offset)
            header = f.read(8)
            end = offset + 16 + (struct.unpack("<Q", header)[0] if len(header) == 8 else 0)
            if len(header) < 8 or end > size:
                return count, end
            offset, count = end, count + 1
    return count, None


def _check_framing(path: str) -> None:
    """RecordError if the shard's last record is cut off. TFRecordDataset reads a shard
    truncated inside its last record as if it ended before it: the record is lost silently."""
    count, end = count_framed(path)
    if end is not None:
        raise RecordError(f"{path}: truncated: record {count} is cut off at byte "
                          f"{tf.io.gfile.stat(path).length} (it needs {end}); {count} whole "
                          f"records before it. Delete the shard and rerun prepare")


def _decode_all(path: str, index: int, parsed: dict) -> None:
    video_id = parsed["video_id"].numpy().decode(errors="replace")
    for key, decode in ((IMAGE_KEY, tf.io.decode_jpeg), (FLOW_KEY, tf.io.decode_png)):
        for i, data in enumerate(parsed[key]):
            try:
                decode(data, channels=3)
            except tf.errors.InvalidArgumentError as e:
                raise RecordError(f"{path}: record {index} (video {video_id}): {key} {i} does "
                                  f"not decode ({_tf_message(e)})") from e


def verify_shards(file_pattern: str, parse: bool = False, decode: bool = False) -> int:
    """Verifies every shard matching `file_pattern`; returns the total number of records.

    tf.data reports a damaged shard as a bare `DataLossError` ("truncated record at N")
    without the file name; when training or evaluation stops with one, run this (or
    `python -m d3d_tf.prepare --verify=PATTERN`) to find the file. Raises RecordError.
    """
    files = sorted(glob.glob(file_pattern))
    if not files:
        raise RecordError(f"no TFRecord files match {file_pattern!r}")
    return sum(verify_shard(f, parse=parse, decode=decode) for f in files)
