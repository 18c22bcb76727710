"""Tiny model directory and its exports, built once per pytest session and shared by
test_export.py, test_predict.py and test_serving_clients.py (exports take tens of seconds),
and a tiny AVA detector directory."""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile

import numpy as np
from model_fixtures import informative_weights

from d3d_tf import models
from d3d_tf.deploy.tflite import synthetic_clips
from d3d_tf.models import saving

FRAMES, SIZE = 8, 32
LABELS = ["archery", "bowling", "cycling", "diving"]
ROOT = tempfile.mkdtemp(prefix="d3d_export_test_")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def detector_dir(folder, name="s3dg") -> str:
    """A tiny untrained AVA detector directory `folder/det` (2 frames, 32 px, 2 classes)."""
    from d3d_tf.ava import ava_head
    from d3d_tf.models import s3dg

    det = ava_head.build_detector(s3dg.S3DGConfig(depth_multiplier=0.1),
                                  ava_head.DetectorConfig(num_classes=2, roi_size=2),
                                  input_shape=(2, 32, 32, 3))
    path = str(folder / "det")
    ava_head.save_detector_dir(path, det, name=name, labels=["a", "b"], ids=[1, 2],
                               rgb_range="[-1,1]")
    return path


@functools.cache
def saved_model_version_dir() -> str:
    from d3d_tf.deploy import common, saved_model

    return saved_model.export_saved_model(common.ExportConfig(
        model_dir=os.path.dirname(model_dir()),  # the run dir: resolved to run/model
        out_dir=os.path.join(ROOT, "serving"), model_name="tiny", version=3))


@functools.cache
def tflite_file(quantize: str = "float32") -> str:
    """Converted through the CLI (a subprocess), so the CLI is tested too."""
    out = os.path.join(ROOT, "tflite")
    proc = subprocess.run(
        [sys.executable, "-m", "d3d_tf.export", f"--model_dir={model_dir()}",
         "--format=tflite", f"--out_dir={out}", f"--quantize={quantize}", "--calibration_clips=8",
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
