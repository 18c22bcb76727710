"""AVA frame-mAP on hand-made detections whose AP is known."""
import math

import numpy as np
import pytest

from d3d_tf.ava import frame_map as ava_map
from d3d_tf.ava.ava import Boxes, LabelMap

LABELS = LabelMap((1, 5), ("walk", "sit"))
A, B, C = [0.1, 0.1, 0.4, 0.9], [0.5, 0.1, 0.9, 0.9], [0.0, 0.0, 0.3, 0.3]


def _boxes(rows):
    e = Boxes()
    for box, label, score in rows:
        e.boxes.append(box)
        e.labels.append(label)
        e.scores.append(score)
    return e


def _gt():
    # Two keyframes; "walk" has 3 instances, "sit" 1.
    return {("v", 1): _boxes([(A, 1, 1.0), (B, 1, 1.0), (B, 5, 1.0)]),
            ("v", 2): _boxes([(A, 1, 1.0)])}


def test_perfect_detections_give_one():
    dets = {("v", 1): _boxes([(A, 1, 0.9), (B, 1, 0.8), (B, 5, 0.7)]),
            ("v", 2): _boxes([(A, 1, 0.6)])}
    r = ava_map.frame_map(_gt(), dets, LABELS)
    assert r["mAP"] == 1.0 and r["per_class"] == [1.0, 1.0] and r["num_gt"] == [3, 1]


def test_false_positive_ranked_first():
    # walk: one FP (box C) scored above the 3 TPs: precisions 0, 1/2, 2/3, 3/4 at recalls
    # 0, 1/3, 2/3, 1; made monotone (max over higher recall) every step gets 3/4 -> AP 0.75.
    dets = {("v", 1): _boxes([(C, 1, 0.95), (A, 1, 0.9), (B, 1, 0.8), (B, 5, 0.7)]),
            ("v", 2): _boxes([(A, 1, 0.6)])}
    r = ava_map.frame_map(_gt(), dets, LABELS)
    assert r["per_class"][0] == pytest.approx(0.75)
    assert r["mAP"] == pytest.approx((r["per_class"][0] + 1.0) / 2)
    # The FP ranked last instead: AP 1 (it comes after full recall).
    dets[("v", 1)].scores[0] = 0.1
    assert ava_map.frame_map(_gt(), dets, LABELS)["per_class"][0] == 1.0


def test_missed_box_and_duplicates():
    # One walk instance never detected: recall stops at 2/3 with precision 1 -> AP 2/3.
    dets = {("v", 1): _boxes([(A, 1, 0.9), (B, 5, 0.7)]), ("v", 2): _boxes([(A, 1, 0.6)])}
    assert ava_map.frame_map(_gt(), dets, LABELS)["per_class"][0] == pytest.approx(2 / 3)
    # A second detection of the same person is a false positive, even with the better IoU:
    # near_b (IoU 0.95 with B) is visited first and takes B.
    near_b = [0.52, 0.1, 0.9, 0.9]
    dets = {("v", 1): _boxes([(A, 1, 0.9), (B, 1, 0.8), (near_b, 1, 0.85), (B, 5, 0.7)]),
            ("v", 2): _boxes([(A, 1, 0.6)])}
    # walk order: A(TP) near_b(TP, takes B) B(FP, B taken) A2(TP): precisions 1,1,2/3,3/4
    # at recalls 1/3, 2/3, 2/3, 1 -> AP = 1/3 + 1/3 + 1/3 * 3/4.
    r = ava_map.frame_map(_gt(), dets, LABELS)
    assert r["per_class"][0] == pytest.approx(1 / 3 + 1 / 3 + 0.75 / 3)


def test_excluded_keyframes_and_keyframes_without_ground_truth():
    dets = {("v", 1): _boxes([(A, 1, 0.9), (B, 1, 0.8), (B, 5, 0.7)]),
            ("v", 2): _boxes([(A, 1, 0.6)]),
            ("v", 3): _boxes([(A, 1, 0.99)])}  # no ground truth at t=3: a false positive
    r = ava_map.frame_map(_gt(), dets, LABELS)
    assert r["per_class"][0] == pytest.approx(0.75)
    # Excluded, the keyframe counts for nothing; excluding t=2 also drops its instance.
    assert ava_map.frame_map(_gt(), dets, LABELS, excluded={("v", 3)})["mAP"] == 1.0
    r = ava_map.frame_map(_gt(), dets, LABELS, excluded={("v", 3), ("v", 2)})
    assert r["num_gt"] == [2, 1] and r["mAP"] == 1.0


def test_classes_outside_label_map_invalid_boxes_and_empty_classes():
    gt = {("v", 1): _boxes([(A, 1, 1.0), (B, 80, 1.0)])}
    dets = {("v", 1): _boxes([(A, 1, 0.9), (B, 80, 0.95), ([0.5, 0.5, 0.4, 0.9], 1, 0.99)])}
    r = ava_map.frame_map(gt, dets, LABELS)
    assert r["per_class"][0] == 1.0 and math.isnan(r["per_class"][1]) and r["mAP"] == 1.0
    # Only the 50 best detections of a keyframe count: 60 better-scored FPs push the TP out.
    many = _boxes([(C, 1, 0.99)] * 60 + [(A, 1, 0.5)])
    assert ava_map.frame_map(gt, {("v", 1): many}, LABELS)["per_class"][0] == 0.0


def test_group_of_detections_are_ignored():
    group = [0.0, 0.0, 1.0, 0.5]
    gt = {("v", 1): _boxes([(A, 1, 1.0), (group, 1, 1.0)])}
    inside = [0.6, 0.05, 0.8, 0.4]  # IoU with A = 0, fully inside the group-of box
    dets = {("v", 1): _boxes([(inside, 1, 0.95), (A, 1, 0.9)])}
    flags = {("v", 1): [False, True]}
    r = ava_map.frame_map(gt, dets, LABELS, group_of=flags)
    assert r["num_gt"][0] == 1 and r["per_class"][0] == 1.0
    # Without the flag the box is a plain instance and the inside detection a false positive.
    r = ava_map.frame_map(gt, dets, LABELS)
    assert r["num_gt"][0] == 2 and r["per_class"][0] == pytest.approx(0.5 * 0.5)


def test_average_precision_matches_a_brute_force_definition():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 12))
        scores, tp = rng.random(n), rng.random(n) < 0.5
        num_gt = int(tp.sum() + rng.integers(0, 3)) or 1
        order = np.argsort(-scores)
        hits = np.cumsum(tp[order])
        prec, rec = hits / np.arange(1, n + 1), hits / num_gt
        # Sum over each true positive of the best precision at that recall or beyond.
        expected = sum(prec[i:].max() for i in range(n) if tp[order][i]) / num_gt
        assert ava_map.average_precision(scores, tp, num_gt) == pytest.approx(expected)
        assert rec[-1] <= 1.0


def test_official_csv_and_per_class_outputs(tmp_path):
    path = tmp_path / "dets.csv"
    ava_map.write_detections_csv(str(path), [("v", 902, (0.1, 0.2, 0.3, 0.4), 12, 0.5)])
    assert path.read_text() == "v,0902,0.100,0.200,0.300,0.400,12,0.5\n"
    # Scores closer than 1e-6 stay apart (six decimals would tie them and change the ranking).
    close = [float(np.float32(0.1234561)), float(np.float32(0.1234564))]
    ava_map.write_detections_csv(str(tmp_path / "close.csv"),
                                 [("v", 902, (0.1, 0.2, 0.3, 0.4), 12, s) for s in close])
    written = [float(line.split(",")[-1]) for line in
               (tmp_path / "close.csv").read_text().splitlines()]
    assert written[0] != written[1]
    assert [np.float32(w) for w in written] == [np.float32(c) for c in close]  # exact
    from d3d_tf.ava import ava
    back = ava.read_boxes(str(path), scores=True)
    assert back[("v", 902)].labels == [12] and back[("v", 902)].scores == [0.5]
    r = ava_map.frame_map(_gt(), {}, LABELS)
    assert r["per_class"] == [0.0, 0.0]
    ava_map.write_per_class_csv(str(tmp_path / "ap.csv"), r)
    assert (tmp_path / "ap.csv").read_text().splitlines()[1] == "1,walk,0.000000,3"
    ava_map.plot_per_class(str(tmp_path / "ap.png"), r)
    assert (tmp_path / "ap.png").stat().st_size > 1000


def test_shuffled_class_scores():
    # Every person box is scored for both classes. Right order: AP 1. Scores swapped so that
    # the wrong class of person A ranks first: sit sees FP, FP, TP -> AP 1/3; walk is unhurt.
    def dets(swap):
        a_walk, a_sit = (0.9, 0.95) if swap else (0.95, 0.1)
        return {("v", 1): _boxes([(A, 1, a_walk), (A, 5, a_sit), (B, 1, 0.3), (B, 5, 0.2)]),
                ("v", 2): _boxes([(A, 1, 0.6), (A, 5, 0.7 if swap else 0.05)])}
    assert ava_map.frame_map(_gt(), dets(False), LABELS)["mAP"] == 1.0
    r = ava_map.frame_map(_gt(), dets(True), LABELS)
    assert r["per_class"] == pytest.approx([1.0, 1 / 3]) and r["mAP"] == pytest.approx(2 / 3)


def test_ground_truth_that_matches_no_scored_keyframe_is_refused():
    dets = {("v1", 902): _boxes([(A, 1, 0.9)]), ("v1", 903): _boxes([(B, 5, 0.8)])}
    # Another split (other videos), other timestamps, other action ids, no rows: refused.
    for gt, match in [
            ({("v9", 902): _boxes([(A, 1, 1.0)])},
             (r"^gt.csv: none of its 1 keyframes \(videos v9, ...\) is among the 2 keyframes of "
             r"the records \(videos v1, ...\): nothing to score; is it for another split")),
            ({("v1", 2): _boxes([(A, 1, 1.0)])}, r"none of its 1 keyframes"),
            ({("v1", 902): _boxes([(A, 2, 1.0), (B, 6, 1.0)])},
             (r"^gt.csv: no ground truth to score: none of its action ids \(2, 6\) is one of "
             r"the label map's \(1, 5\); is it for another label map\?")),
            ({}, r"gt.csv: no ground truth to score: it has no rows")]:
        with pytest.raises(ValueError, match=match):
            ava_map.check_groundtruth_match(ava_map.groundtruth_match(gt, dets, LABELS), "gt.csv")
    # A partial match is reported: keyframes, classes, rows of other action ids.
    gt = {("v1", 902): _boxes([(A, 1, 1.0), (B, 6, 1.0)]), ("v2", 902): _boxes([(A, 5, 1.0)])}
    assert ava_map.check_groundtruth_match(ava_map.groundtruth_match(gt, dets, LABELS),
                                           "gt.csv") == (
        "ground truth gt.csv: 1 of its 2 keyframes are in the records (2 keyframes scored); "
        "1 of 2 classes have ground truth there; 1 row(s) of action ids outside the label map "
        "ignored (action ids 6)")
    # Excluded keyframes count on neither side.
    with pytest.raises(ValueError, match="none of its 1 keyframes"):
        ava_map.check_groundtruth_match(ava_map.groundtruth_match(
            gt, dets, LABELS, excluded={("v1", 902)}), "gt.csv")
