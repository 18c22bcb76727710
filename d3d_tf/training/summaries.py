"""TensorBoard scalar and image summaries without the `tensorboard` package.

`tf.summary.scalar` / `tf.summary.image` live in the tensorboard pip package (TF raises
TBNotInstalledError without it). TF core's `tf.summary.write` writes the same event records if
given the plugin metadata TensorBoard's scalar and image plugins look for, so we write those
directly and training does not depend on tensorboard (install it only to *view* the logs).
"""
from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _metadata(plugin: str) -> summary_pb2.SummaryMetadata:
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin))


def scalar(tag: str, value, step: int) -> None:
    """One float32 scalar under the TensorBoard `scalars` plugin."""
    tf.summary.write(tag, tf.cast(value, tf.float32), step=step, metadata=_metadata("scalars"))


def images(tag: str, frames, step: int, max_outputs: int = 4) -> None:
    """float [N,H,W,C] in [0,1] (C = 1 or 3) as PNGs under the `images` plugin (whose tensor
    format is [width, height, png_0, png_1, ...] strings)."""
    frames = tf.convert_to_tensor(frames)[:max_outputs]
    u8 = tf.image.convert_image_dtype(tf.clip_by_value(frames, 0.0, 1.0), tf.uint8,
                                      saturate=True)
    pngs = tf.map_fn(tf.io.encode_png, u8, fn_output_signature=tf.string)
    h, w = tf.shape(u8)[1], tf.shape(u8)[2]
    tensor = tf.concat([tf.stack([tf.strings.as_string(w), tf.strings.as_string(h)]), pngs], 0)
    tf.summary.write(tag, tensor, step=step, metadata=_metadata("images"))
