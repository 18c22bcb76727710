"""SavedModel export for TF Serving.

Layout written by `export_saved_model` (the TF Serving model base path is `<out>/<model_name>`):

    <out>/<model_name>/<version>/saved_model.pb, variables/, assets.extra/labels.txt
    <out>/<model_name>/labels.txt, model_card.json, model_card.md

Signature `serving_default`:
    input   frames                uint8   [batch, T, H, W, 3]   RGB, 0..255
    outputs logits                float32 [batch, K]
            probabilities         float32 [batch, K]            softmax of logits
            top_k_indices         int32   [batch, k]            k = min(5, K), best first
            top_k_scores          float32 [batch, k]
            top_k_labels          string  [batch, k]            class names baked in

Signature `serving_jpeg` (the same outputs; smaller requests, e.g. TF Serving's REST JSON, where
a raw uint8 clip costs ~4 bytes of text a pixel and a JPEG frame, base64-encoded, ~0.1-0.3):
    input   jpeg_frames           string  [batch, T] or [T]     one JPEG file's bytes a frame,
                                                                each frame H x W RGB
Each frame is decoded in the graph (`tf.io.decode_jpeg`, 3 channels, INTEGER_ACCURATE DCT), the
clip goes through the same graph as `serving_default`; a [T] input is one clip (batch 1).
A frame of another size, another number of frames or a rank other than 1 or 2 is rejected.

T, H and W are fixed in the signature: a clip of another size is REJECTED by the signature
(TF reports the expected and the given shape), as is any dtype but uint8 and any rank but 5.
Resizing belongs to the client, which also has to pick the frames (short-side resize + centre
crop, as `d3d_tf.deploy.predictor` does); resizing inside the graph would hide a mismatch between
training and serving preprocessing. Normalization (`x/127.5 - 1` or `x/255`, the model's
`rgb_range`) is inside the graph, so clients send raw pixels.

The graph is built with training=False (batch norm uses moving statistics, dropout is off);
it holds only the RGB classifier (no teacher, no flow, no optimizer).
"""
from __future__ import annotations

import os
import shutil

import keras
import tensorflow as tf

from d3d_tf.data import preprocessing
from d3d_tf.deploy import common
from d3d_tf.models import saving

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "frames"
OUTPUT_NAMES = ("logits", "probabilities", "top_k_indices", "top_k_scores", "top_k_labels")
JPEG_SIGNATURE_KEY = "serving_jpeg"
JPEG_INPUT_NAME = "jpeg_frames"





def serving_function(model: keras.Model, spec, *, top_k: int = 5):
    """The `serving_default` function (see module doc) and its input signature."""
    t, h, w, _ = spec.input_shape
    labels = tf.constant(common.labels_of(spec))
    k = min(top_k, spec.num_classes)
    rgb_range = spec.rgb_range

    def serve(frames):
        # A loaded signature does not check shapes by itself (a rank-4 or 40x40 clip would
        # run); EnsureShape fails at run time with "Shape of tensor frames [..] is not
        # compatible with expected shape [?,T,H,W,3]".
        frames = tf.ensure_shape(frames, [None, t, h, w, 3])
        logits = model(preprocessing.normalize_rgb(frames, rgb_range), training=False)
        probabilities = tf.nn.softmax(logits, axis=-1)
        scores, indices = tf.math.top_k(probabilities, k=k)
        return {
            "logits": logits,
            "probabilities": probabilities,
            "top_k_indices": indices,
            "top_k_scores": scores,
            "top_k_labels": tf.gather(labels, indices),
        }

    signature = [tf.TensorSpec([None, t, h, w, 3], tf.uint8, name=INPUT_NAME)]
    return serve, signature


def jpeg_serving_function(serve, spec):
    """The `serving_jpeg` function (see module doc), calling `serve` (the `serving_default`
    function) on the decoded clips, and its input signature."""
    t, h, w, _ = spec.input_shape

    def decode(jpeg):
        frame = tf.io.decode_jpeg(jpeg, channels=3, dct_method="INTEGER_ACCURATE")
        # "Shape of tensor .. [40,40,3] is not compatible with expected shape [32,32,3]".
        return tf.ensure_shape(frame, [h, w, 3])

    def serve_jpeg(jpeg_frames):
        tf.debugging.assert_rank_in(jpeg_frames, [1, 2], message=(
            f"{JPEG_INPUT_NAME} must be [T] or [batch, T] JPEG strings, T = {t}"))
        clips = tf.reshape(jpeg_frames, [-1, tf.shape(jpeg_frames)[-1]])
        clips = tf.ensure_shape(clips, [None, t])
        frames = tf.map_fn(decode, tf.reshape(clips, [-1]),
                           fn_output_signature=tf.TensorSpec([h, w, 3], tf.uint8))
        return serve(tf.reshape(frames, [-1, t, h, w, 3]))

    # Unknown rank: [T] (one clip, e.g. a columnar REST request) or [batch, T].
    return serve_jpeg, [tf.TensorSpec(None, tf.string, name=JPEG_INPUT_NAME)]


class _ServingModule(tf.Module):
    """Tracks the model's variables once. (keras.export.ExportArchive stores every variable
    twice, under `variables` and `_all_variables`: twice the size on disk.)"""

    def __init__(self, model: keras.Model, fn, input_signature, extra=None):
        super().__init__()
        self.model = model
        self.serve = tf.function(fn, input_signature=input_signature)
        self.extra = {key: tf.function(f, input_signature=sig)
                      for key, (f, sig) in (extra or {}).items()}


def write_module(model: keras.Model, fn, input_signature, path: str, *,
                 extra: dict | None = None) -> None:
    """Writes a SavedModel whose `serving_default` signature is `fn(frames)`; `extra` adds
    signatures, {key: (fn, input_signature)}."""
    module = _ServingModule(model, fn, input_signature, extra)
    tf.saved_model.save(module, path, signatures={SIGNATURE_KEY: module.serve, **module.extra})


def write_saved_model(model: keras.Model, spec, path: str, *, top_k: int = 5) -> None:
    """Writes the SavedModel (signatures in the module doc) of `model` to `path`."""
    serve, signature = serving_function(model, spec, top_k=top_k)
    write_module(model, serve, signature, path,
                 extra={JPEG_SIGNATURE_KEY: jpeg_serving_function(serve, spec)})


def write_version(base: str, version: int, write, *, overwrite: bool = False) -> str:
    """Writes the version directory `<base>/<version>` by `write(path)` and returns it.

    `write` fills a hidden folder beside it (`.tmp-<version>`), which is then swapped in
    (`common.swap_in_dir`): TF Serving watches `base` and must never load a half-written
    version, nor lose the served one before the new one is whole. A failure (or a kill)
    leaves the served version as it was; the leftover hidden folder is removed by the next
    export of that version. FileExistsError if the version exists and not `overwrite`.
    """
    final = os.path.join(base, str(version))
    if os.path.exists(final) and not overwrite:
        raise FileExistsError(f"{final} exists; pick another --version or pass --overwrite")
    os.makedirs(base, exist_ok=True)
    tmp = os.path.join(base, f".tmp-{version}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        common.swap_in_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def export_saved_model(config: common.ExportConfig) -> str:
    """Exports a model directory as a TF Serving SavedModel; returns the version directory."""
    if config.version < 1:
        raise ValueError(f"--version must be a positive integer, got {config.version}")
    if config.top_k < 1:
        raise ValueError(f"--top_k must be >= 1, got {config.top_k}")
    common.check_model_name(config.model_name)
    model, spec, model_dir = common.load_for_export(
        config.model_dir, frames=config.num_frames, size=config.crop_size)
    name = common.check_model_name(config.model_name or spec.name,
                                   source="--model_name" if config.model_name else
                                   f'{model_dir}/{saving.SPEC_FILE} "name"')
    base = os.path.join(config.out_dir, name)
    labels = common.labels_of(spec)

    def write(path):
        write_saved_model(model, spec, path, top_k=config.top_k)
        os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
        preprocessing.write_labels(os.path.join(path, "assets.extra", common.LABELS_FILE), labels)

    final = write_version(base, config.version, write, overwrite=config.overwrite)
    preprocessing.write_labels(os.path.join(base, common.LABELS_FILE), labels)
    t, h, w, _ = spec.input_shape
    common.write_model_card(base, spec, model_dir=model_dir, fmt="TF SavedModel", extra={
        "signature": f"{SIGNATURE_KEY}: frames uint8 [batch, {t}, {h}, {w}, 3] -> "
                     + ", ".join(OUTPUT_NAMES),
        "jpeg_signature": f"{JPEG_SIGNATURE_KEY}: jpeg_frames string [batch, {t}] or [{t}], "
                          f"JPEG frames of {h}x{w} -> the same outputs",
        "version": config.version,
    })
    return final


def find_saved_model(path: str) -> str:
    """`path` if it holds saved_model.pb, else its highest numeric version subdirectory."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if os.path.isdir(path):
        versions = [d for d in os.listdir(path) if d.isdigit()
                    and os.path.isfile(os.path.join(path, d, "saved_model.pb"))]
        if versions:
            return os.path.join(path, max(versions, key=int))
    raise FileNotFoundError(f"{path}: no saved_model.pb here nor in a numeric version "
                            f"subdirectory")


def saved_model_labels(path: str) -> list[str] | None:
    """Class names stored with a SavedModel version directory (None if there are none)."""
    for candidate in (os.path.join(path, "assets.extra", common.LABELS_FILE),
                      os.path.join(os.path.dirname(os.path.abspath(path)), common.LABELS_FILE)):
        if os.path.isfile(candidate):
            return preprocessing.read_labels(candidate)
    return None
