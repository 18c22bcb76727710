"""Evaluation metrics on hand-made predictions with known answers, and the evaluate CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import train_fixtures
from process_helpers import run_side_by_side

from d3d_tf import models
from d3d_tf.models import saving
from d3d_tf.training import evaluation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _preds(probs, labels, ids):
    return evaluation.Predictions(np.asarray(probs, np.float32), np.asarray(labels),
                                  np.asarray(ids))


# 3 classes; video a: 2 clips, b: 3 clips, c: 1 clip (interleaved).
CLIPS = _preds(
    [[0.6, 0.3, 0.1],   # a
     [0.1, 0.2, 0.7],   # b
     [0.0, 0.4, 0.6],   # a
     [0.5, 0.4, 0.1],   # b
     [0.2, 0.2, 0.6],   # b
     [0.1, 0.8, 0.1]],  # c
    [0, 2, 0, 2, 2, 0], ["a", "b", "a", "b", "b", "c"])


def test_video_level_averages_clip_softmaxes():
    v = evaluation.video_level(CLIPS)
    assert list(v.video_ids) == ["a", "b", "c"] and list(v.labels) == [0, 2, 0]
    np.testing.assert_allclose(v.probs, [[0.3, 0.35, 0.35],
                                         [0.8 / 3, 0.8 / 3, 1.4 / 3],
                                         [0.1, 0.8, 0.1]], rtol=1e-6)


def test_accuracy_top_k_and_mean_class_accuracy():
    clip = evaluation.accuracy_metrics(CLIPS)
    # Clip argmax: 0, 2, 2, 0, 2, 1 vs labels 0, 2, 0, 2, 2, 0 -> 3 of 6 right.
    assert clip["count"] == 6 and clip["top1"] == pytest.approx(0.5)
    # Per class: class 0 clips 1/3 right, class 1 has none, class 2 clips 2/3 right.
    assert clip["per_class"][0] == pytest.approx(1 / 3) and np.isnan(clip["per_class"][1])
    assert clip["per_class"][2] == pytest.approx(2 / 3)
    assert clip["mean_class_accuracy"] == pytest.approx(0.5)
    # Video a: argmax is a tie 0.35/0.35 between classes 1 and 2 -> wrong; b right; c wrong.
    video = evaluation.metrics(CLIPS)["video"]
    assert video["count"] == 3 and video["top1"] == pytest.approx(1 / 3)
    assert video["per_class"][0] == 0.0 and video["per_class"][2] == 1.0
    assert video["mean_class_accuracy"] == pytest.approx(0.5)
    # 3 classes: top-5 covers all of them.
    assert video["top5"] == 1.0
    # With 7 classes the true class of a one-hot-ish prediction ranks 6th: not in the top 5.
    probs = np.array([[0.3, 0.25, 0.2, 0.1, 0.08, 0.05, 0.02]], np.float32)
    assert evaluation.accuracy_metrics(_preds(probs, [5], ["x"]))["top5"] == 0.0
    assert evaluation.accuracy_metrics(_preds(probs, [4], ["x"]))["top5"] == 1.0
    # Unlabeled rows (label -1) are ignored.
    mixed = _preds([[0.9, 0.1], [0.2, 0.8]], [-1, 1], ["u", "l"])
    assert evaluation.accuracy_metrics(mixed) | {"per_class": None} == {
        "count": 1, "top1": 1.0, "top5": 1.0, "mean_class_accuracy": 1.0, "per_class": None}


def test_ensemble_and_confusion_matrix():
    other = _preds(np.roll(CLIPS.probs, 1, axis=1), CLIPS.labels, CLIPS.video_ids)
    both = evaluation.ensemble([CLIPS, other])
    np.testing.assert_allclose(both.probs[0], [0.35, 0.45, 0.2], rtol=1e-6)
    with pytest.raises(ValueError, match="not evaluated on the same clips"):
        evaluation.ensemble([CLIPS, _preds(CLIPS.probs[:5], CLIPS.labels[:5],
                                           CLIPS.video_ids[:5])])
    cm = evaluation.confusion_matrix(CLIPS, 3)
    # Rows true class, columns predicted: class 0 -> 0, 2, 1; class 2 -> 2, 0, 2.
    np.testing.assert_array_equal(cm, [[1, 1, 1], [0, 0, 0], [1, 0, 2]])


def test_report_states_clips_times_crops(tmp_path):
    result = evaluation.metrics(CLIPS)
    result["protocol"] = evaluation.protocol(num_clips=10, num_crops=3, num_frames=64,
                                             crop_size=224, resize_short_side=256)
    evaluation.write_report(str(tmp_path), {"d3d": result}, ["x", "y", "z"])
    saved = json.loads((tmp_path / "results.json").read_text())["d3d"]["protocol"]
    assert saved["num_clips"] == 10 and saved["num_crops"] == 3 and saved["clips_x_crops"] == 30
    report = (tmp_path / "report.md").read_text()
    assert ("Protocol: 10 clip(s) x 3 crop(s) per video (30 scores averaged per video), 64 "
            "frames (stride 1), short side resized to 256 px, 224x224 crops.") in report


def test_average_runs_of_three_splits(tmp_path):
    def result(top1):
        level = {"count": 10, "top1": top1, "top5": 1.0, "mean_class_accuracy": top1 - 0.1,
                 "per_class": []}
        return {"clip": level, "video": level}

    paths = []
    for i, top1 in enumerate([0.5, 0.6, 0.8]):
        path = tmp_path / f"split{i + 1}.json"
        runs = {"d3d": result(top1), f"only_in_{i}": result(0.0)}
        path.write_text(json.dumps(runs))
        paths.append(str(path))
    average = evaluation.write_average(paths, str(tmp_path / "avg"))
    assert list(average) == ["d3d"]  # the names present in every run
    assert average["d3d"]["video_top1"]["mean"] == pytest.approx(1.9 / 3)
    assert average["d3d"]["video_top1"]["runs"] == [0.5, 0.6, 0.8]
    assert average["d3d"]["video_mean_class_accuracy"]["mean"] == pytest.approx(1.6 / 3)
    saved = json.loads((tmp_path / "avg" / "average.json").read_text())
    assert saved["runs"] == paths and saved["models"] == average
    assert "| d3d | 63.33 |" in (tmp_path / "avg" / "average.md").read_text()
    with pytest.raises(FileNotFoundError, match="no results file .*missing.json"):
        evaluation.write_average([str(tmp_path / "missing.json")], str(tmp_path / "x"))


def test_per_video_csv_pairs_models_video_by_video(tmp_path):
    # Two clips per video; model a is right on v0 and v2, b on v1 and v2; v3 is unlabeled.
    ids = np.array(["v0", "v0", "v1", "v1", "v2", "v2", "v3", "v3"])
    labels = np.array([0, 0, 1, 1, 2, 2, -1, -1])
    a = np.eye(3)[[0, 0, 0, 2, 2, 2, 1, 1]].astype(np.float32)
    b = np.eye(3)[[1, 1, 1, 1, 2, 0, 0, 0]].astype(np.float32)
    b[5] = [0.2, 0.2, 0.6]  # the mean of v2's clips favours class 2
    preds = {"a": evaluation.Predictions(a, labels, ids),
             "b": evaluation.Predictions(b, labels, ids)}
    path = str(tmp_path / "per_video.csv")
    evaluation.write_per_video_csv(path, preds)
    videos, correct = evaluation.read_per_video_correct(path)
    assert videos == ["v0", "v1", "v2"]
    assert correct["a"].tolist() == [1, 0, 1] and correct["b"].tolist() == [0, 1, 1]
    other = evaluation.Predictions(b, labels, ids[::-1].copy())
    with pytest.raises(ValueError, match="same videos"):
        evaluation.write_per_video_csv(path, {"a": preds["a"], "c": other})
    (tmp_path / "bad.csv").write_text("class,a\nx,1\n")
    with pytest.raises(ValueError, match="bad.csv"):
        evaluation.read_per_video_correct(str(tmp_path / "bad.csv"))


def _tiny_model_dir(path):
    net = models.build_classifier("s3dg", num_classes=len(train_fixtures.CLASSES),
                                  input_shape=(4, 32, 32, 3), depth_multiplier=0.25)
    spec = saving.spec_for(net, name="s3dg", labels=list(train_fixtures.CLASSES))
    saving.save_model_dir(path, net, spec)
    return net


@pytest.mark.slow
def test_evaluate_cli_writes_metrics_for_clips_times_crops(tmp_path):
    data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=4, frames=8, size=40,
                                        with_flow=False, prefix="test")
    _tiny_model_dir(str(tmp_path / "model"))
    out = tmp_path / "eval"
    out.mkdir()
    (out / "confusion_gone.png").write_bytes(b"a plot of an earlier run's model")
    (out / "distinit_fig6.md").write_text("a table of an earlier run's models")
    env = dict(os.environ, PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "d3d_tf.evaluate", f"--model_dir={tmp_path / 'model'}",
           "--name=tiny", f"--data={data}", "--num_clips=2", "--num_crops=3",
           "--batch_size=5", "--table=d3d_table2", f"--out_dir={out}"]
    # The refused --eval_crops runs beside the evaluation (each process spends its time
    # importing TensorFlow); --num_clips / --num_crops above are its old names, still accepted.
    done, refused = run_side_by_side(
        [cmd, cmd[:-1] + ["--eval_crops=2", f"--out_dir={tmp_path / 'refused'}"]], env=env,
        cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    # Progress with an ETA: after the first batch and at the end.
    assert "evaluated 5/24 clips" in done.stderr, done.stderr[-3000:]
    assert "evaluated 24/24 clips" in done.stderr and "ETA 0:00:00" in done.stderr
    results = json.loads((out / "results.json").read_text())
    # 4 videos x 2 clips x 3 crops, averaged into 4 videos.
    assert results["tiny"]["clip"]["count"] == 24 and results["tiny"]["video"]["count"] == 4
    assert results["tiny"]["protocol"] == {
        "num_clips": 2, "num_crops": 3, "clips_x_crops": 6, "num_frames": 4, "crop_size": 32,
        "frame_stride": 1, "resize_short_side": None}
    assert "Protocol: 2 clip(s) x 3 crop(s) per video" in (out / "report.md").read_text()
    assert 0.0 <= results["tiny"]["video"]["top1"] <= 1.0
    rows = (out / "per_class.csv").read_text().splitlines()
    assert rows[0] == "class,tiny" and [r.split(",")[0] for r in rows[1:]] == list(
        train_fixtures.CLASSES)
    assert (out / "confusion_tiny.png").stat().st_size > 0 and (out / "report.md").exists()
    videos, correct = evaluation.read_per_video_correct(str(out / "per_video.csv"))
    assert len(videos) == 4 and correct["tiny"].mean() == pytest.approx(
        results["tiny"]["video"]["top1"])
    # An earlier run's plots and tables: not beside this one's.
    assert not (out / "confusion_gone.png").exists() and not (out / "distinit_fig6.md").exists()
    # The paper's Table 2 layout, its modality columns from the model directory's model.json.
    assert results["tiny"]["model"]["network"] == "s3dg"
    assert results["tiny"]["model"]["modality"] == "rgb"
    table = (out / "d3d_table2.md").read_text()
    assert "| Method | Training input | Inference input | Kinetics-400 top-1 |" in table
    assert f"| tiny | RGB | RGB | {100 * results['tiny']['video']['top1']:.1f} |" in table

    # A run that fails leaves the previous run's files as they were, nothing of its own.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    done = subprocess.run(cmd[:-1] + ["--num_clips=1", "--compare=tiny,nope", f"--out_dir={out}"],
                          env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "--compare needs two of ['tiny']" in done.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    assert refused.returncode != 0 and "--eval_crops must be 1 or 3" in refused.stderr
    assert not (tmp_path / "refused").exists()

    both = f"{out / 'results.json'},{out / 'results.json'}"
    avg = subprocess.run(
        [sys.executable, "-m", "d3d_tf.evaluate", f"--average={both}",
         f"--out_dir={tmp_path / 'avg'}"],
        env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    assert avg.returncode == 0, avg.stderr[-3000:]
    saved = json.loads((tmp_path / "avg" / "average.json").read_text())
    top1 = results["tiny"]["video"]["top1"]
    assert saved["models"]["tiny"]["video_top1"] == {"mean": top1, "runs": [top1, top1]}

    # Earlier results laid out in a paper's table, nothing evaluated: a column per file.
    tables = subprocess.run(
        [sys.executable, "-m", "d3d_tf.evaluate", "--table=d3d_table4",
         f"--results=UCF-101={out / 'results.json'},HMDB-51={out / 'results.json'}",
         f"--out_dir={tmp_path / 'tables'}"],
        env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    assert tables.returncode == 0, tables.stderr[-3000:]
    assert f"wrote {tmp_path / 'tables' / 'd3d_table4.md'}" in tables.stdout
    table = (tmp_path / "tables" / "d3d_table4.md").read_text()
    assert "| Method | UCF-101 | HMDB-51 |" in table and "*Table 4: " in table
