"""Tiny model directory and its exports, built once per pytest session and shared by
test_export.py, test_predict.py and test_serving_clients.py (exports take tens of seconds)."""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile

import numpy as np

from d3d_tf import models
from d3d_tf.export.tflite import synthetic_clips
from d3d_tf.models import saving

FRAMES, SIZE = 8, 32
LABELS = ["archery", "bowling", "cycling", "diving"]
ROOT = tempfile.mkdtemp(prefix="d3d_export_test_")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def informative_weights(model, seed=0):
    """Weights under which the class scores depend on the clip.

    The default init (truncated normal 0.01) shrinks activations to ~0 over the depth, so
    every clip would get the same scores and parity / top-1 checks would pass trivially.
    Here: He-normal kernels, BN variance ~0.5 (a gain that makes up for self-gating's ~0.5),
    small offsets, then the logits kernel rescaled so that the logits spread ~2 over clips and
    centred.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if "moving_variance" in w.path:
            value = rng.uniform(0.4, 0.6, shape)
        elif "moving_mean" in w.path or w.path.endswith("bias") or "beta" in w.path:
            value = rng.normal(0.0, 0.02, shape)
        else:
            fan_in = max(int(np.prod(shape[:-1])), 1)
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        w.assign(value.astype("float32"))
    x = np.concatenate(list(synthetic_clips(8, model.inputs[0].shape[1:], seed=seed)))
    logits = model(tf.constant(x, tf.float32) / 127.5 - 1.0, training=False).numpy()
    spread = float((logits - logits.mean(axis=0)).std()) or 1.0
    kernel = next(w for w in model.weights if w.path == "Logits.Conv2d_0c_1x1/kernel")
    kernel.assign(kernel.numpy() * (2.0 / spread))
    # Centre the classes so that the top-1 class differs between clips.
    bias = next(w for w in model.weights if w.path == "Logits.Conv2d_0c_1x1/bias")
    bias.assign(bias.numpy() - logits.mean(axis=0) * (2.0 / spread))


@functools.cache
def model_dir() -> str:
    """A model directory: s3dg, depth 0.25, 8 frames, 32 px, 4 classes, with a metric."""
    model = models.build_classifier("s3dg", num_classes=len(LABELS),
                                    input_shape=(FRAMES, SIZE, SIZE, 3), depth_multiplier=0.25)
    informative_weights(model)
    spec = saving.spec_for(model, name="s3dg", labels=LABELS, source="tests",
                           metrics={"top1": 0.25})
    path = os.path.join(ROOT, "run", "model")  # a run directory's layout
    saving.save_model_dir(path, model, spec)
    return path


@functools.cache
def saved_model_version_dir() -> str:
    from d3d_tf.export import saved_model

    return saved_model.export_saved_model(saved_model.SavedModelConfig(
        checkpoint=os.path.dirname(model_dir()),  # the run dir: resolved to run/model
        out_dir=os.path.join(ROOT, "serving"), model_name="tiny", version=3))


@functools.cache
def tflite_file(quantize: str = "float32") -> str:
    """Converted through the CLI (a subprocess), so the CLI is tested too."""
    out = os.path.join(ROOT, "tflite")
    proc = subprocess.run(
        [sys.executable, "-m", "d3d_tf.export", f"--checkpoint={model_dir()}",
         "--format=tflite", f"--out={out}", f"--quantize={quantize}", "--calibration_clips=8",
         "--model_name=tiny"],
        cwd=REPO, env=env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return os.path.join(out, f"tiny_{quantize}.tflite")


def env() -> dict:
    return {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}


def clips(n: int, seed: int = 1) -> np.ndarray:
    """uint8 [n, T, H, W, 3] clips: moving blobs on noise (pure noise scores every clip the
    same after global pooling)."""
    return np.concatenate(list(synthetic_clips(n, (FRAMES, SIZE, SIZE, 3), seed=seed + 100)))


def keras_probabilities(x: np.ndarray) -> np.ndarray:
    """Reference: the Keras model from the model directory, [-1,1] input, softmax."""
    import tensorflow as tf

    model, _ = saving.load_model_dir(model_dir())
    logits = model(x.astype(np.float32) / 127.5 - 1.0, training=False)
    return tf.nn.softmax(logits).numpy()
