"""--task=ava end to end on tiny synthetic multi-actor data: train, evaluate, export."""
import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from d3d_tf import methods
from d3d_tf.ava import ava, ava_head, ava_pipeline, ava_saved_model, synthetic_ava
from d3d_tf.ava import frame_map as ava_map
from d3d_tf.ava import task as ava_task
from d3d_tf.data import preprocessing
from d3d_tf.training import trainer

sys.path.insert(0, os.path.dirname(__file__))
import train_fixtures

DATA = synthetic_ava.MultiActorConfig(num_videos=6, num_actors=2, num_classes=4, duration_s=3,
                                      fps=6.0, size=32, val_fraction=0.34, seed=2)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ava")
    paths = train_fixtures.write_ava_records(str(root), DATA)
    config = methods.TrainConfig(
        model_dir=str(root / "run"), train_data=str(root / "rec" / "train-*.tfrecord"),
        task="ava", depth_multiplier=0.1,
        num_frames=4, crop_size=32, ava_roi_size=2, ava_max_boxes=4, batch_size=4,
        eval_batch_size=2, train_steps=25, log_every=1, optimizer="adamw",
        learning_rate=2e-3, random_flip=False, batch_norm_decay=0.9, checkpoint_every=25)
    summary = trainer.train(config)
    return root, paths, config, summary


def test_training_lowers_the_loss_and_saves_a_detector(run):
    root, _, _, summary = run
    bce = [h["bce"] for h in summary["loss_history"]]
    box = [h["box"] for h in summary["loss_history"]]
    assert len(bce) == 25
    assert np.mean(bce[-5:]) < 0.85 * np.mean(bce[:3]), bce
    assert np.mean(box[-5:]) < np.mean(box[:3]), box
    with open(root / "run" / "model" / ava_head.DETECTOR_FILE) as f:
        info = json.load(f)
    assert info["labels"] == list(DATA.class_names) and info["action_ids"] == [1, 2, 3, 4]


def test_pipeline_feeds_jittered_truth_in_training_and_proposals_at_eval(run):
    root, paths, config, _ = run
    train = ava_task.pipeline_config(config, training=True, seed=0)
    dataset = ava_pipeline.make_dataset(train)
    assert dataset.options().autotune.enabled is False  # see test_pipeline's autotuner test
    batch = next(iter(dataset))
    assert batch["rgb"].shape == (4, 4, 32, 32, 3) and batch["boxes"].shape == (4, 4, 4)
    mask = batch["box_mask"].numpy()
    assert (mask.sum(1) == 2).all()  # two actors per keyframe, padded to 4
    # The targets undo the jitter: decoding them from the fed boxes gives the ground truth,
    # which is one of the keyframe's annotated boxes.
    truth = ava_head.decode_boxes(batch["targets"], batch["boxes"]).numpy()
    gt = ava.read_boxes(paths["train_annotations"])
    for b in range(4):
        key = (batch["video_id"][b].numpy().decode(), int(batch["timestamp"][b]))
        want = np.array(gt[key].boxes)
        for n in range(2):
            assert np.abs(want - truth[b, n]).max(1).min() < 2e-3
        assert np.abs(batch["boxes"][b, :2] - truth[b, :2]).max() > 1e-3  # jittered
        assert batch["labels"][b, :2].numpy().sum(1).tolist() == [1.0, 1.0]
    evals = ava_task.pipeline_config(config, training=False, batch=2,
                                     pattern=str(root / "rec" / "val-*.tfrecord"))
    batch = next(iter(ava_pipeline.make_dataset(evals)))
    props = ava.read_boxes(paths["val_proposals"], scores=True)
    key = (batch["video_id"][0].numpy().decode(), int(batch["timestamp"][0]))
    scores = sorted(props[key].scores, reverse=True)
    n = len(scores)  # 2 actors + 1 false proposal, best first
    np.testing.assert_allclose(batch["scores"][0, :n], scores, atol=1e-6)
    assert batch["box_mask"][0].numpy().tolist() == [1.0] * n + [0.0] * (4 - n)


def test_input_pipelines_of_two_hosts_read_disjoint_keyframes(run):
    """One shard, two hosts' pipelines (MultiWorkerMirroredStrategy's InputContext): each reads
    every other keyframe record, so no keyframe is read twice per epoch across them."""
    root, _, config, _ = run
    pattern = str(root / "rec" / "val-*.tfrecord")
    assert len(tf.io.gfile.glob(pattern)) == 1

    def keys(context=None):
        cfg = ava_task.pipeline_config(config, training=False, batch=2, pattern=pattern)
        return [(v.decode(), int(t)) for b in ava_pipeline.make_dataset(cfg, context)
                for v, t in zip(b["video_id"].numpy(), b["timestamp"].numpy())]

    everything = keys()
    shares = [keys(tf.distribute.InputContext(2, pid, 2)) for pid in range(2)]
    assert all(shares) and sorted(shares[0] + shares[1]) == sorted(everything)
    assert shares[0] == everything[0::2] and shares[1] == everything[1::2]


def test_evaluate_scores_the_official_csv_like_the_records(run, tmp_path):
    root, paths, _, _ = run
    cfg = ava_task.AvaEvalConfig(ava_groundtruth=paths["val_annotations"],
                                 ava_excluded=paths["val_excluded"])
    out = ava_task.evaluate_detector(str(root / "run"), str(root / "rec" / "val-*.tfrecord"),
                                     cfg, str(tmp_path), batch_size=2)
    # Official ground truth (CSV + excluded timestamps) and the records' copy agree.
    assert out["frame_mAP"] == pytest.approx(out["frame_mAP_records_groundtruth"], abs=1e-6)
    assert 0.0 <= out["frame_mAP"] <= 1.0
    # The official-format CSV, read back and scored, gives the same number.
    label_map = ava.read_label_map(paths["label_map"])
    dets = ava.read_boxes(str(tmp_path / "detections.csv"), scores=True)
    gt = ava.read_boxes(paths["val_annotations"], label_map=label_map)
    again = ava_map.frame_map(gt, dets, label_map, ava.read_excluded(paths["val_excluded"]))
    assert again["mAP"] == pytest.approx(out["frame_mAP"], abs=2e-3)  # CSV rounds boxes
    for name in ("per_class.csv", "per_class.png", "results.json"):
        assert (tmp_path / name).is_file()
    assert 0.0 <= out["random_scores_frame_mAP"] <= 1.0


def test_evaluate_refuses_ground_truth_that_matches_no_keyframe(run, tmp_path):
    root, paths, _, _ = run
    data = str(root / "rec" / "val-*.tfrecord")
    # The train split's ground truth against the val records: other videos.
    cfg = ava_task.AvaEvalConfig(ava_groundtruth=paths["train_annotations"])
    with pytest.raises(ValueError, match=rf"^{paths['train_annotations']}: none of its \d+ "
                       r"keyframes \(videos synth0000, .*is among the \d+ keyframes of the "
                       r"records \(videos synth"):
        ava_task.evaluate_detector(str(root / "run"), data, cfg, str(tmp_path / "a"),
                                   batch_size=2)
    assert not (tmp_path / "a").exists()  # nothing written
    # Action ids shifted by one: ids 2..4 still count, 5 is reported; the match is reported.
    with open(paths["val_annotations"]) as f:
        rows = [r.split(",") for r in f.read().splitlines()]
    shifted = tmp_path / "shifted.csv"
    shifted.write_text("".join(",".join(r[:6] + [str(int(r[6]) + 1)] + r[7:]) + "\n"
                               for r in rows))
    out = ava_task.evaluate_detector(str(root / "run"), data, ava_task.AvaEvalConfig(
        ava_groundtruth=str(shifted)), str(tmp_path / "b"), batch_size=2)
    match = out["groundtruth_match"]
    assert match["rows_other_classes"] == sum(r[6] == "4" for r in rows) > 0
    assert match["other_action_ids"] == [5] and match["keyframes_matched"] > 0
    assert "row(s) of action ids outside the label map ignored (action ids 5)" in match["line"]


def test_export_signature_takes_frames_and_boxes(run, tmp_path):
    root, _, _, _ = run
    path = ava_saved_model.export(str(root / "run"), str(tmp_path))
    assert path == str(tmp_path / "ava_s3dg" / "1")
    loaded = tf.saved_model.load(path)
    serve = loaded.signatures["serving_default"]
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (1, 4, 32, 32, 3), dtype=np.uint8)
    boxes = np.array([[[0.1, 0.1, 0.5, 0.5], [0.4, 0.2, 0.9, 0.8], [0.0, 0.5, 0.3, 1.0]]],
                     np.float32)
    out = serve(frames=tf.constant(frames), boxes=tf.constant(boxes))
    assert out["scores"].shape == (1, 3, 4) and out["boxes"].shape == (1, 3, 4)
    detector, _ = ava_head.load_detector_dir(str(root / "run"), dropout_keep_prob=1.0)
    want = detector({"rgb": preprocessing.normalize_rgb(frames, "[-1,1]"),
                     "boxes": tf.constant(boxes)},
                    training=False)
    np.testing.assert_allclose(out["scores"], tf.sigmoid(want["logits"]), atol=1e-5)
    np.testing.assert_allclose(out["boxes"], ava_head.decode_boxes(want["box_deltas"], boxes),
                               atol=1e-5)
    with open(os.path.join(path, "assets.extra", "labels.txt")) as f:
        assert f.read().split() == list(DATA.class_names)
    with pytest.raises(Exception, match="(?i)shape"):
        serve(frames=tf.constant(frames[:, :2]), boxes=tf.constant(boxes))


def test_pretraining_is_what_the_backbone_run_recorded(tmp_path):
    assert ava_task.pretraining(None) == {}  # no --init_from: a backbone from scratch
    backbone = tmp_path / "k400"
    (backbone / "model").mkdir(parents=True)
    with open(backbone / "model" / "model.json", "w") as f:
        json.dump({"name": "s3dg", "num_classes": 400, "input_shape": [8, 32, 32, 3],
                   "config": {}, "source": "d3d_tf.train task=distill step=9"}, f)
    with open(backbone / "train_summary.json", "w") as f:
        json.dump({"config": {"train_data": "data/kinetics400/train-*.tfrecord"}}, f)
    assert ava_task.pretraining(str(backbone)) == {
        "init_from": str(backbone), "classes": 400, "source": "d3d_tf.train task=distill step=9",
        "train_data": "data/kinetics400/train-*.tfrecord"}
