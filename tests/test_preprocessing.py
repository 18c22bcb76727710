"""One preprocessing for training, evaluation and serving (`d3d_tf.data.preprocessing`)."""
import export_helpers as H
import numpy as np
import pytest
import tensorflow as tf

from d3d_tf.data import pipeline, preprocessing, records, video
from d3d_tf.deploy import predictor as predict
from d3d_tf.models import saving


def test_eval_clip_starts_and_indices_by_hand():
    starts = preprocessing.eval_clip_starts(20, 8, 1)          # span 8: centre start (20-8)//2
    np.testing.assert_array_equal(starts, [6])
    np.testing.assert_array_equal(preprocessing.eval_clip_starts(20, 8, 3), [0, 6, 12])
    np.testing.assert_array_equal(preprocessing.eval_clip_starts(21, 8, 4), [0, 4, 9, 13])
    np.testing.assert_array_equal(preprocessing.eval_clip_starts(5, 8, 2), [0, 0])  # short
    idx = preprocessing.clip_indices([3], 4, 2, 9)
    np.testing.assert_array_equal(idx, [[3, 5, 7, 0]])                       # wraps mod 9


def test_normalize_rgb_ranges():
    x = np.array([0, 127.5, 255], np.float32)
    np.testing.assert_allclose(preprocessing.normalize_rgb(x, "[-1,1]"), [-1, 0, 1])
    np.testing.assert_allclose(preprocessing.normalize_rgb(x.astype(np.uint8), "[0,1]"),
                               [0, 127 / 255, 1])
    with pytest.raises(ValueError, match="rgb_range must be one of"):
        preprocessing.normalize_rgb(x, "[0,255]")


def test_labels_round_trip_and_whitespace(tmp_path):
    path = str(tmp_path / "labels.txt")
    preprocessing.write_labels(path, ["a", "b c"])
    assert preprocessing.read_labels(path) == ["a", "b c"]
    with open(path, "w") as f:
        f.write("  a \r\n\n b\t\n")
    assert preprocessing.read_labels(path) == ["a", "b"]
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        preprocessing.read_labels(str(tmp_path / "missing.txt"))
    open(path, "w").close()
    with pytest.raises(ValueError, match="is empty"):
        preprocessing.read_labels(path)


def test_training_evaluation_and_serving_see_the_same_pixels(tmp_path):
    """One video: the eval pipeline (training's code path in eval mode), `predict`'s decoding
    for the SavedModel and the TFLite model take the same frames, crop and normalization."""
    rng = np.random.default_rng(3)
    n = 20
    # Grey (equal channels): the video codec and JPEG subsample colour, not brightness.
    grey = rng.integers(40, 200, (1, 40, 48, 1), dtype=np.uint8)
    frames = np.repeat(np.repeat(grey, 3, axis=-1), n, axis=0)
    for i in range(n):  # a bright square moving right: a wrong frame index shows at once
        frames[i, 12:24, 2 + i:14 + i] = 250
    path = str(tmp_path / "v.mp4")
    video.write_video(path, frames, fps=10)

    # What prepare stores (the video at the short side the model sees), read by the pipeline.
    stored = video.read_video(path, short_side=H.SIZE)
    shard = str(tmp_path / "test-00000.tfrecord")
    with records.ShardWriter(shard) as w:
        w.write(records.make_sequence_example(stored, video_id="v", label=1, jpeg_quality=100))
    cfg = pipeline.PipelineConfig(file_pattern=shard, num_frames=H.FRAMES, crop_size=H.SIZE,
                                  training=False, batch_size=4, num_clips=2)
    rgb = np.concatenate([b["rgb"].numpy() for b in pipeline.make_dataset(cfg)])

    predictor = predict.Predictor(H.saved_model_version_dir())
    clips = predict.video_clips(path, predictor, predict.PredictConfig(num_clips=2))
    assert clips.shape == rgb.shape == (2, H.FRAMES, H.SIZE, H.SIZE, 3)
    served = preprocessing.normalize_rgb(clips).numpy()
    # Only the JPEG round trip of the stored frames separates them (noise is JPEG's worst case:
    # a few grey levels on average); a clip one frame or a crop one pixel off is far away.
    err = np.abs(served - rgb)
    assert err.mean() < 0.03 and np.percentile(err, 99) < 0.12, (err.mean(), err.max())
    assert np.abs(np.roll(served, 1, axis=1) - rgb).max() > 0.8
    assert np.abs(np.roll(served, 1, axis=3) - rgb).mean() > 0.2

    model, _ = saving.load_model_dir(H.model_dir())
    keras_probs = tf.nn.softmax(model(served, training=False)).numpy()
    np.testing.assert_allclose(predictor.probabilities(clips), keras_probs, atol=1e-5)
    lite = predict.Predictor(H.tflite_file("float32"))
    np.testing.assert_allclose(lite.probabilities(clips), keras_probs, atol=1e-4)


def test_flow_module_imports_no_tensorflow():
    """flow.py (imported by prepare's workers) gets FLOW_BOUND without importing TensorFlow."""
    import subprocess
    import sys

    code = ("import sys; from d3d_tf.data import preprocessing; from d3d_tf.data import flow; "
            "assert flow.FLOW_BOUND == preprocessing.FLOW_BOUND == 20.0; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=H.env(), check=True, timeout=120).stdout.strip()
    assert out == "False"
