"""AVA data: the multi-actor generator, the CSV / pbtxt readers, keyframe records, prepare."""
import glob
import os

import numpy as np
import pytest

from d3d_tf.ava import ava, synthetic_ava
from d3d_tf.data import prepare_lib, records, video
from d3d_tf.data.datasets import AnnotationError

TINY = synthetic_ava.MultiActorConfig(num_videos=3, num_actors=2, num_classes=4, duration_s=3,
                                      fps=6.0, size=32, val_fraction=0.34,
                                      excluded_fraction=0.3, seed=1)


def test_multi_actor_boxes_are_exact_and_labels_match_motion():
    config = synthetic_ava.MultiActorConfig(num_videos=1, num_actors=3, duration_s=4, fps=8,
                                            size=64, seed=5)
    frames, labels, boxes = synthetic_ava.render_video(config, 0)
    assert frames.shape == (32, 64, 64, 3) and labels.shape == (3, 3)
    np.testing.assert_array_equal(frames, synthetic_ava.render_video(config, 0)[0])
    assert (boxes[..., 2] > boxes[..., 0]).all() and (boxes[..., 3] > boxes[..., 1]).all()
    bg = np.median(frames[8].reshape(-1, 3), axis=0)
    for a in range(3):
        # Inside each box the frame differs from the background; the box is tight: some
        # pixel on its first and last row differs too.
        x1, y1, x2, y2 = np.round(boxes[a, 0] * 64).astype(int)
        diff = np.abs(frames[8, y1:y2, x1:x2].astype(int) - bg).sum(-1) > 30
        assert diff.mean() > 0.3 and diff[0].any() and diff[-1].any()
    # A translating actor's box moves its way between two keyframes when the segment between
    # them keeps the same motion (segments are centred on keyframes, so check k -> k+1 halves).
    shift = {"move_left": (0, -1), "move_right": (0, 1), "move_up": (1, -1), "move_down": (1, 1)}
    checked = 0
    for a in range(3):
        for k in range(2):
            name = config.class_names[labels[a, k]]
            if name in shift and labels[a, k + 1] == labels[a, k]:
                axis, sign = shift[name]
                centre = (boxes[a, :, axis] + boxes[a, :, axis + 2]) / 2
                assert sign * (centre[k + 1] - centre[k]) > 0.05, (a, k, name)
                checked += 1
    assert checked >= 1


def test_generate_writes_ava_files(tmp_path):
    paths = synthetic_ava.generate_dataset(TINY, str(tmp_path), num_workers=1)
    label_map = ava.read_label_map(paths["label_map"])
    assert label_map.names == TINY.class_names and label_map.ids == (1, 2, 3, 4)
    gt = ava.read_boxes(paths["train_annotations"], label_map=label_map)
    excluded = ava.read_excluded(paths["train_excluded"])
    props = ava.read_boxes(paths["train_proposals"], scores=True)
    # Videos 0, 1 are train (2 keyframes each); excluded keyframes have no ground truth but
    # still have proposals (the person detector ran there).
    all_keys = {(synthetic_ava.video_id(i), t) for i in (0, 1) for t in (1, 2)}
    assert set(gt) == all_keys - excluded and excluded and set(props) == all_keys
    for key, entry in gt.items():
        assert len(entry.boxes) == 2 and sorted(entry.person_ids) == ["0", "1"]
        assert len(props[key].boxes) == 2 + TINY.false_proposals
    frames = video.read_video(os.path.join(paths["video_dir"], "synth0002.mp4"))
    assert frames.shape == (18, 32, 32, 3)


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_label_map_formats_and_errors(tmp_path):
    v21 = _write(tmp_path / "a.pbtxt", 'item {\n  name: "bend/bow (at the waist)"\n  id: 1\n}\n'
                 'item {\n  name: "stand"\n  id: 12\n}\n')
    assert ava.read_label_map(v21) == ava.LabelMap((1, 12), ("bend/bow (at the waist)", "stand"))
    v22 = _write(tmp_path / "b.pbtxt", 'label {\n  name: "walk"\n  label_id: 14\n'
                 '  label_type: PERSON_MOVEMENT\n}\n')
    assert ava.read_label_map(v22).ids == (14,)
    bad = _write(tmp_path / "c.pbtxt", 'item {\n  name: "a"\n  id: 1\n}\nitem {\n  name: "b"\n}\n')
    with pytest.raises(AnnotationError, match=r"c.pbtxt:5: item block without name and id"):
        ava.read_label_map(bad)


def test_csv_readers_filter_classes_and_report_bad_rows(tmp_path):
    label_map = ava.LabelMap((1, 12), ("bend", "stand"))
    gt = _write(tmp_path / "gt.csv", "vid,0902,0.1,0.2,0.5,0.9,12,0\nvid,0902,0.1,0.2,0.5,0.9,1,0\n"
                "vid,0902,0.6,0.2,0.9,0.9,80,1\nvid,0903,0.6,0.2,0.9,0.9,12,1\n")
    boxes = ava.read_boxes(gt, label_map=label_map)
    assert set(boxes) == {("vid", 902), ("vid", 903)}
    assert boxes[("vid", 902)].labels == [12, 1]  # action 80 is not in the label map
    people, hot, pids = ava.group_people(boxes[("vid", 902)], label_map)
    np.testing.assert_allclose(people, [[0.1, 0.2, 0.5, 0.9]])
    np.testing.assert_array_equal(hot, [[1, 1]])
    assert pids.tolist() == [0]
    for text, message in (("vid,0902,0.1,0.2,0.5\n", "gt_bad.csv:1: expected 7 or 8 columns"),
                          ("vid,0902,0.1,0.2,0.5,0.9,1,0\nvid,x,0.1,0.2,0.5,0.9,1,0\n",
                           "gt_bad.csv:2: timestamp 'x'"),
                          ("vid,0902,0.5,0.2,0.1,0.9,1,0\n", "gt_bad.csv:1: box"),
                          ("vid,0902,0.1,0.2,0.5,1.3,1,0\n", "gt_bad.csv:1: box"),
                          ("vid,0902,0.1,0.2,0.5,0.9,walk,0\n", "gt_bad.csv:1: action id 'walk'")):
        with pytest.raises(AnnotationError, match=message):
            ava.read_boxes(_write(tmp_path / "gt_bad.csv", text), label_map=label_map)
    props = _write(tmp_path / "p.csv", "vid,0902,0.1,0.2,0.5,0.9,,0.93\nvid,0902,0,0,1,1,,0.1\n")
    entry = ava.read_boxes(props, scores=True)[("vid", 902)]
    assert entry.scores == [0.93, 0.1] and entry.labels == [-1, -1]
    with pytest.raises(AnnotationError, match=r"p_bad.csv:1: score 'high'"):
        ava.read_boxes(_write(tmp_path / "p_bad.csv", "vid,0902,0,0,1,1,,high\n"), scores=True)
    excl = _write(tmp_path / "ex.csv", "vid,0902\nother,1000\n")
    assert ava.read_excluded(excl) == {("vid", 902), ("other", 1000)}
    with pytest.raises(AnnotationError, match=r"ex_bad.csv:1: expected video_id,timestamp"):
        ava.read_excluded(_write(tmp_path / "ex_bad.csv", "vid,0902,3\n"))


def test_clip_indices_centre_and_clamp():
    np.testing.assert_array_equal(ava.clip_indices(2, 4, 5.0, 20), [8, 9, 10, 11])
    np.testing.assert_array_equal(ava.clip_indices(0, 4, 5.0, 20), [0, 0, 0, 1])
    np.testing.assert_array_equal(ava.clip_indices(903, 3, 2.0, 6, time_offset=900), [5, 5, 5])


def test_keyframe_record_round_trip():
    # Smooth frames (JPEG keeps them), different per frame.
    yy, xx = np.mgrid[0:16, 0:24]
    frames = np.stack([np.stack([xx * 10, yy * 15, np.full_like(xx, 40 * t)], -1)
                       for t in range(5)]).astype(np.uint8)
    from d3d_tf.data import codec
    boxes = np.array([[0.1, 0.2, 0.4, 0.9], [0.5, 0.0, 1.0, 0.5]], np.float32)
    labels = np.array([[1, 0, 1], [0, 1, 0]], np.float32)
    ex = ava.keyframe_example(video_id="vid", timestamp=903, jpeg_frames=codec.encode_jpeg_frames(
        frames, 95), fps=5.0, height=16, width=24, boxes=boxes, labels=labels,
        person_ids=[3, 7], proposals=boxes[:1], proposal_scores=[0.8])
    out = ava.decode_keyframe(ex.SerializeToString())
    assert out["video_id"] == "vid" and out["timestamp"] == 903 and out["keyframe_index"] == 2
    np.testing.assert_allclose(out["box"], boxes)
    np.testing.assert_array_equal(out["box/labels"], labels)
    np.testing.assert_array_equal(out["box/person_id"], [3, 7])
    np.testing.assert_allclose(out["proposal"], boxes[:1])
    np.testing.assert_allclose(out["proposal/score"], [0.8])
    assert out["rgb"].shape == (5, 16, 24, 3)
    assert np.abs(out["rgb"].astype(int) - frames).mean() < 4
    # Still a valid video record for the shared tools.
    parsed = records.parse_sequence_example(ex.SerializeToString())
    assert int(parsed["num_frames"]) == 5


def test_prepare_ava_writes_keyframes_and_resumes(tmp_path):
    paths = synthetic_ava.generate_dataset(TINY, str(tmp_path / "data"), num_workers=1)
    cfg = ava.AvaPrepareConfig(label_map=paths["label_map"], excluded=paths["train_excluded"],
                               person_boxes=paths["train_proposals"], clip_frames=4)
    prep = prepare_lib.PrepareConfig(out_dir=str(tmp_path / "rec"), split="train", num_shards=2,
                                     workers=1)
    summary = ava.prepare(paths["train_annotations"], paths["video_dir"], cfg, prep)
    assert summary.videos_written == 2 and summary.shards_written == 2
    files = sorted(glob.glob(str(tmp_path / "rec" / "train-*.tfrecord")))
    decoded = [ava.decode_keyframe(r) for f in files for r in records.read_records(f)]
    excluded = ava.read_excluded(paths["train_excluded"])
    keys = {(d["video_id"], int(d["timestamp"])) for d in decoded}
    # Excluded keyframes are not written; the others are, once each.
    assert len(keys) == len(decoded) == 4 - len(excluded) and not keys & excluded
    gt = ava.read_boxes(paths["train_annotations"], label_map=ava.read_label_map(
        paths["label_map"]))
    frames = video.read_video(os.path.join(paths["video_dir"], "synth0000.mp4"))
    for d in decoded:
        entry = gt[(d["video_id"], int(d["timestamp"]))]
        np.testing.assert_allclose(np.sort(d["box"], 0), np.sort(np.unique(
            np.array(entry.boxes, np.float32), axis=0), 0), atol=1e-6)
        assert d["box/labels"].sum(1).tolist() == [1.0, 1.0]  # one action per actor
        assert d["rgb"].shape == (4, 32, 32, 3) and len(d["proposal"]) == 3
        if d["video_id"] == "synth0000":  # the keyframe is clip frame 2 (T // 2)
            kf = int(d["timestamp"] * TINY.fps)
            assert np.abs(d["rgb"][2].astype(int) - frames[kf]).mean() < 6
    with open(tmp_path / "rec" / "labels.txt") as f:
        assert f.read().split() == list(TINY.class_names)
    # A rerun reuses both shards; other clip settings are refused.
    again = ava.prepare(paths["train_annotations"], paths["video_dir"], cfg, prep)
    assert again.shards_reused == 2 and again.shards_written == 0
    with pytest.raises(prepare_lib.PrepareError, match="other settings"):
        ava.prepare(paths["train_annotations"], paths["video_dir"],
                    ava.AvaPrepareConfig(label_map=paths["label_map"], clip_frames=6), prep)


def test_demo_data_flagfiles(tmp_path):
    """configs/demo/ava_synthetic.flags and ava_prepare.flags drive their CLIs (`make demo-ava`)."""
    import subprocess
    import sys
    configs = os.path.join(os.path.dirname(__file__), "..", "configs", "demo")
    data, rec = tmp_path / "videos", tmp_path / "records"
    subprocess.run([sys.executable, "-m", "d3d_tf.synthetic",
                    f"--flagfile={configs}/ava_synthetic.flags", f"--out_dir={data}",
                    "--videos=2", "--duration=2", "--size=32", "--workers=1"],
                   check=True, capture_output=True)
    assert ava.read_label_map(str(data / synthetic_ava.LABEL_MAP_FILE)).ids == (1, 2, 3, 4)
    proc = subprocess.run([sys.executable, "-m", "d3d_tf.prepare",
                           f"--flagfile={configs}/ava_prepare.flags", "--split=train",
                           f"--annotations={data}/ava_train_v2.2.csv",
                           f"--label_map={data}/{synthetic_ava.LABEL_MAP_FILE}",
                           f"--video_dir={data}/videos", f"--out_dir={rec}", "--workers=1"],
                          check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first = min(glob.glob(str(rec / "train-*.tfrecord")))
    assert ava.decode_keyframe(next(records.read_records(first)))["rgb"].shape[0] == 8
    bad = subprocess.run([sys.executable, "-m", "d3d_tf.prepare", "--format=ava",
                          f"--annotations={data}/ava_train_v2.2.csv", f"--out_dir={rec}2",
                          f"--video_dir={data}/videos"], check=False, capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "needs --label_map" in bad.stderr


def test_prepare_ava_skips_keyframes_outside_the_video(tmp_path):
    paths = synthetic_ava.generate_dataset(TINY, str(tmp_path / "data"), num_workers=1)
    with open(paths["train_annotations"]) as f:
        rows = f.read().splitlines()
    first = rows[0].split(",")  # a real row of synth0000, moved to 10 s (the video has 3 s)
    assert first[0] == "synth0000"
    late = ",".join(["synth0000", "10"] + first[2:])
    annotations = _write(tmp_path / "train.csv", "\n".join(rows + [late]) + "\n")
    cfg = ava.AvaPrepareConfig(label_map=paths["label_map"], clip_frames=4)
    prep = prepare_lib.PrepareConfig(out_dir=str(tmp_path / "rec"), split="train", num_shards=1,
                                     workers=1)
    summary = ava.prepare(annotations, paths["video_dir"], cfg, prep)
    decoded = [ava.decode_keyframe(r) for r in records.read_records(
        str(tmp_path / "rec" / "train-00000-of-00001.tfrecord"))]
    assert 10 not in {int(d["timestamp"]) for d in decoded} and decoded
    assert summary.videos_written == 2 and len(summary.skipped) == 1
    assert summary.skipped[0]["video_id"] == "synth0000"
    line = ("skipped synth0000 (" + os.path.join(paths["video_dir"], "synth0000.mp4") +
            "): keyframe 10 s is past the video's end (0 s to 3 s: 18 frames at 6 fps; check "
            "--time_offset and the video file)")
    assert line in summary.format()
    assert ava.keyframe_outside(903, 2.0, 6, time_offset=905).startswith(
        "keyframe 903 s is before the video's start (905 s to 908 s")
    assert ava.keyframe_outside(2, 6.0, 18) is None
    # Every keyframe outside (a wrong --time_offset): refused, saying why.
    with pytest.raises(prepare_lib.PrepareError, match=r"every video of split 'train' was "
                       r"skipped .*synth0000: keyframe 1 s is before the video's start \(900 s "
                       r"to 903 s: 18 frames at 6 fps; check --time_offset"):
        ava.prepare(annotations, paths["video_dir"], ava.AvaPrepareConfig(
            label_map=paths["label_map"], clip_frames=4, time_offset=900),
            prepare_lib.PrepareConfig(out_dir=str(tmp_path / "rec2"), split="train",
                                      num_shards=1, workers=1))


def test_annotation_files_that_are_not_utf8_are_named(tmp_path):
    csv_path = tmp_path / "gt.csv"
    csv_path.write_bytes(b"vid,0902,0.1,0.2,0.5,0.9,12,0\nvid\xe9,0903,0.1,0.2,0.5,0.9,12,0\n")
    for read in (ava.read_boxes, ava.read_excluded):
        with pytest.raises(AnnotationError, match=rf"^{csv_path}: not UTF-8 text \(byte "
                           r"b'\\xe9': invalid continuation byte\); save it as UTF-8"):
            read(str(csv_path))
    pbtxt = tmp_path / "m.pbtxt"
    pbtxt.write_bytes(b'item {\n  name: "caf\xe9"\n  id: 1\n}\n')
    with pytest.raises(AnnotationError, match=rf"^{pbtxt}: not UTF-8 text"):
        ava.read_label_map(str(pbtxt))


def test_prepare_ava_writes_a_keyframe_with_person_boxes_and_no_ground_truth(tmp_path):
    # Without the excluded list, the excluded keyframes keep their person boxes (proposals)
    # but have no annotation rows.
    paths = synthetic_ava.generate_dataset(TINY, str(tmp_path / "data"), num_workers=1)
    cfg = ava.AvaPrepareConfig(label_map=paths["label_map"],
                               person_boxes=paths["train_proposals"], clip_frames=4)
    prep = prepare_lib.PrepareConfig(out_dir=str(tmp_path / "rec"), split="train", num_shards=1,
                                     workers=1)
    ava.prepare(paths["train_annotations"], paths["video_dir"], cfg, prep)
    decoded = {(d["video_id"], int(d["timestamp"])): d for r in records.read_records(
        str(tmp_path / "rec" / "train-00000-of-00001.tfrecord")) for d in [ava.decode_keyframe(r)]}
    excluded = ava.read_excluded(paths["train_excluded"])
    assert excluded and excluded <= set(decoded)
    for key in excluded:
        assert decoded[key]["box"].shape == (0, 4) and len(decoded[key]["proposal"]) == 3
        assert decoded[key]["box/labels"].shape == (0, TINY.num_classes)
