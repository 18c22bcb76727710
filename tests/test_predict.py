import json
import os
import sys

import export_helpers as H
import numpy as np
import pytest
from process_helpers import run_side_by_side

from d3d_tf.data import video
from d3d_tf.deploy import predictor as predict


def _video(path, n=20, h=40, w=48, seed=0):
    rng = np.random.default_rng(seed)
    frames = np.repeat(rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8), n, axis=0)
    for i in range(n):  # a moving bright square
        frames[i, 10:20, 2 + i:12 + i] = 255
    video.write_video(str(path), frames, fps=10)
    return str(path)


def test_clip_indices_follow_the_eval_rule():
    np.testing.assert_array_equal(predict.clip_indices(20, 8, 1), [np.arange(6, 14)])
    idx = predict.clip_indices(20, 8, 3)
    np.testing.assert_array_equal(idx[:, 0], [0, 6, 12])
    np.testing.assert_array_equal(predict.clip_indices(5, 8, 1)[0], [0, 1, 2, 3, 4, 0, 1, 2])
    np.testing.assert_array_equal(predict.clip_indices(20, 4, 1, stride=2)[0], [6, 8, 10, 12])
    with pytest.raises(predict.VideoTooShortError, match="has 5 frames, a clip needs 8"):
        predict.clip_indices(5, 8, 1, short_videos="error")


def test_predict_saved_model_matches_keras_on_the_same_clips(tmp_path):
    path = _video(tmp_path / "a.mp4")
    predictor = predict.Predictor(os.path.dirname(H.saved_model_version_dir()))  # base path
    assert (predictor.kind, predictor.frames, predictor.height) == ("saved_model", 8, 32)
    assert predictor.labels == H.LABELS
    config = predict.PredictConfig(num_clips=2, top_k=3)
    result = predict.predict_video(path, predictor, config)
    # Reference: decode, resize short side to 32 (40x48 -> 32x38), centre crop, 2 clips.
    frames = video.read_video(path, short_side=32)
    assert frames.shape[1:3] == (32, 38)
    clips = frames[:, :, 3:35][predict.clip_indices(len(frames), 8, 2)]
    ref = H.keras_probabilities(clips).mean(axis=0)
    top = np.argsort(-ref)[:3]
    assert [r["label"] for r in result["top_k"]] == [H.LABELS[i] for i in top]
    np.testing.assert_allclose([r["score"] for r in result["top_k"]], ref[top], atol=1e-4)


@pytest.mark.slow
def test_predict_tflite_agrees_with_saved_model(tmp_path):
    path = _video(tmp_path / "b.webm", n=6)  # shorter than a clip: looped
    config = predict.PredictConfig(num_clips=1)
    sm = predict.predict_video(path, predict.Predictor(H.saved_model_version_dir()), config)
    lite = predict.predict_video(path, predict.Predictor(H.tflite_file("float32")), config)
    assert [r["label"] for r in lite["top_k"]] == [r["label"] for r in sm["top_k"]]
    np.testing.assert_allclose([r["score"] for r in lite["top_k"]],
                               [r["score"] for r in sm["top_k"]], atol=1e-4)
    with pytest.raises(predict.VideoTooShortError, match="b.webm: has 6 frames"):
        predict.predict_video(path, predict.Predictor(H.tflite_file("float32")),
                              predict.PredictConfig(short_videos="error"))


def test_predictor_rejects_bad_model_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        predict.Predictor(str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="no saved_model.pb"):
        predict.Predictor(str(tmp_path))
    (tmp_path / "model.txt").write_text("hello")
    with pytest.raises(ValueError, match="SavedModel directory or a .tflite"):
        predict.Predictor(str(tmp_path / "model.txt"))
    (tmp_path / "bad.tflite").write_bytes(b"not a flatbuffer" * 10)
    with pytest.raises(ValueError, match="not a loadable TFLite model"):
        predict.Predictor(str(tmp_path / "bad.tflite"))


@pytest.mark.slow
def test_cli_json_and_errors(tmp_path):
    good = _video(tmp_path / "good.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00garbage" * 50)
    proc, missing = run_side_by_side(
        [[sys.executable, "-m", "d3d_tf.predict", good, str(bad),
          f"--export_path={H.tflite_file('float32')}", "--json", "--num_clips=2"],
         [sys.executable, "-m", "d3d_tf.predict", good, f"--export_path={tmp_path / 'missing'}"]],
        cwd=H.REPO, env=H.env())
    assert proc.returncode == 1  # one video failed
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1 and lines[0]["video"] == good and len(lines[0]["top_k"]) == 4
    assert sorted(r["label"] for r in lines[0]["top_k"]) == sorted(H.LABELS)
    assert f"error: {bad}" in proc.stderr
    assert missing.returncode == 2 and "no such file" in missing.stderr
