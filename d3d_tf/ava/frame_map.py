"""AVA frame-mAP: the rules of ActivityNet's `get_ava_performance.py` (which runs the TF
object-detection API's PASCAL VOC evaluator), reimplemented in numpy.

    result = frame_map(groundtruth, detections, label_map, excluded)
    result["mAP"], result["per_class"]            # AP per label-map class (NaN: no ground truth)

Inputs are `{(video_id, timestamp): ava.Boxes}` as `d3d_tf.ava.ava.read_boxes` returns them
(boxes x1, y1, x2, y2 normalized; labels are action ids). The rules:

* Classes are those of the label map; rows of other action ids are dropped (ground truth and
  detections). Keyframes listed as excluded are dropped from both.
* Per keyframe, only the `max_detections` highest-scoring detection rows (all classes together)
  are kept (the official script keeps 50).
* Per keyframe and class, detections are visited by decreasing score; each is a true positive
  if its best-IoU ground-truth box of that class has IoU >= 0.5 and was not matched already,
  else a false positive: a second detection of the same person is a false positive, and so is
  every detection on a keyframe without ground truth.
* Group-of ground truth (`is_group_of`, never set in AVA): a detection that is not a true
  positive and covers >= 0.5 of its own area with a group-of box is ignored; group-of boxes do
  not count as ground truth instances (the evaluator's `group_of_weight` = 0).
* Boxes with x2 <= x1 or y2 <= y1 are dropped from the detections.
* AP per class = area under the precision-recall curve with precision made monotone
  (VOC 2010+ "all points"); recall over the class's ground-truth instances. mAP = mean over
  classes with ground truth.
"""
from __future__ import annotations

import csv
import math

import numpy as np

from d3d_tf.core import atomic

IOU_THRESHOLD = 0.5
MAX_DETECTIONS = 50


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a [N,4] and b [M,4] (x1, y1, x2, y2) -> [N,M]."""
    inter = _intersection(a, b)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _intersection(a, b):
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.maximum(w, 0) * np.maximum(h, 0)


def average_precision(scores, is_tp, num_gt: int) -> float:
    """VOC AP of detections (scores [N], is_tp [N] in {0,1}) against `num_gt` instances."""
    if num_gt == 0:
        return float("nan")
    scores, is_tp = np.asarray(scores, float), np.asarray(is_tp, float)
    if scores.size == 0:
        return 0.0
    order = np.argsort(scores)[::-1]
    tp = np.cumsum(is_tp[order])
    fp = np.cumsum(1.0 - is_tp[order])
    precision = tp / (tp + fp)
    recall = tp / num_gt
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    steps = np.where(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def match_keyframe(det_boxes, det_scores, gt_boxes, gt_group_of=None):
    """TP/FP of one class's detections on one keyframe.

    Returns (scores, is_tp) of the detections that count (ignored ones removed), in
    decreasing score order.
    """
    det_boxes = np.asarray(det_boxes, float).reshape(-1, 4)
    det_scores = np.asarray(det_scores, float)
    gt_boxes = np.asarray(gt_boxes, float).reshape(-1, 4)
    group_of = np.zeros(len(gt_boxes), bool) if gt_group_of is None else \
        np.asarray(gt_group_of, bool)
    order = np.argsort(-det_scores, kind="stable")
    det_boxes, det_scores = det_boxes[order], det_scores[order]
    is_tp = np.zeros(len(det_boxes), bool)
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return det_scores, is_tp
    ignored = np.zeros(len(det_boxes), bool)
    single = gt_boxes[~group_of]
    if len(single):
        overlaps = iou(det_boxes, single)
        best = overlaps.argmax(1)
        taken = np.zeros(len(single), bool)
        for i in range(len(det_boxes)):
            g = best[i]
            if overlaps[i, g] >= IOU_THRESHOLD and not taken[g]:
                is_tp[i] = taken[g] = True
    groups = gt_boxes[group_of]
    if len(groups):
        area = (det_boxes[:, 2] - det_boxes[:, 0]) * (det_boxes[:, 3] - det_boxes[:, 1])
        ioa = _intersection(det_boxes, groups) / area[:, None]
        ignored = ~is_tp & (ioa.max(1) >= IOU_THRESHOLD)
    return det_scores[~ignored], is_tp[~ignored]


def _valid(boxes):
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def _top_rows(entry, wanted, capacity):
    boxes = np.asarray(entry.boxes, float).reshape(-1, 4)
    labels = np.asarray(entry.labels)
    scores = np.asarray(entry.scores, float)
    keep = np.isin(labels, list(wanted))
    boxes, labels, scores = boxes[keep], labels[keep], scores[keep]
    if capacity and len(scores) > capacity:
        top = np.argsort(-scores, kind="stable")[:capacity]
        boxes, labels, scores = boxes[top], labels[top], scores[top]
    return boxes, labels, scores


def keyframe_matches(groundtruth: dict, detections: dict, label_map, excluded=frozenset(), *,
                     max_detections: int = MAX_DETECTIONS, group_of: dict | None = None
                     ) -> tuple[dict, dict]:
    """The matching `frame_map` scores, keyframe by keyframe (module doc; arguments as
    `frame_map`'s). A detection's true/false positive status depends on its keyframe alone.

    Returns (matched, instances): matched = {action id: [(key, scores float [m], is_tp bool
    [m]), ...]} (one entry per keyframe with detections of that class, in `detections`'
    order; ignored rows removed), instances = {action id: {key: ground-truth instances}}.
    """
    wanted = set(label_map.ids)
    matched = {a: [] for a in label_map.ids}
    instances = {a: {} for a in label_map.ids}
    gt = {}
    for key, entry in groundtruth.items():
        if key in excluded:
            continue
        boxes = np.asarray(entry.boxes, float).reshape(-1, 4)
        labels = np.asarray(entry.labels)
        flags = np.zeros(len(boxes), bool) if not group_of or key not in group_of else \
            np.asarray(group_of[key], bool)
        keep = np.isin(labels, list(wanted))
        gt[key] = (boxes[keep], labels[keep], flags[keep])
        for a, g in zip(labels[keep], flags[keep]):
            instances[int(a)][key] = instances[int(a)].get(key, 0) + (0 if g else 1)
    for key, entry in detections.items():
        if key in excluded:
            continue
        boxes, labels, det_scores = _top_rows(entry, wanted, max_detections)
        valid = _valid(boxes)
        boxes, labels, det_scores = boxes[valid], labels[valid], det_scores[valid]
        g_boxes, g_labels, g_flags = gt.get(key, (np.zeros((0, 4)), np.zeros(0, int),
                                                  np.zeros(0, bool)))
        for a in np.unique(labels):
            s, t = match_keyframe(boxes[labels == a], det_scores[labels == a],
                                  g_boxes[g_labels == a], g_flags[g_labels == a])
            matched[int(a)].append((key, s, t))
    return matched, instances


def frame_map(groundtruth: dict, detections: dict, label_map, excluded=frozenset(), *,
              max_detections: int = MAX_DETECTIONS, group_of: dict | None = None) -> dict:
    """Frame-mAP at IoU 0.5 (module doc).

    Args:
      groundtruth, detections: {(video_id, timestamp): Boxes}; detection Boxes carry scores.
      label_map: `ava.LabelMap` (the evaluated classes).
      excluded: keyframes to ignore.
      group_of: optional {key: bool [n]} flags for the ground-truth rows of a keyframe.
    Returns:
      {"mAP": float, "per_class": [AP per label-map class], "num_gt": [instances per class],
       "names": label-map names, "ids": label-map ids}.
    """
    matched, instances = keyframe_matches(groundtruth, detections, label_map, excluded,
                                          max_detections=max_detections, group_of=group_of)
    num_gt = {a: sum(instances[a].values()) for a in label_map.ids}
    per_class = []
    for a in label_map.ids:
        s = np.concatenate([m[1] for m in matched[a]]) if matched[a] else np.zeros(0)
        t = np.concatenate([m[2] for m in matched[a]]) if matched[a] else np.zeros(0)
        per_class.append(average_precision(s, t, num_gt[a]))
    valid_aps = [ap for ap in per_class if not math.isnan(ap)]
    return {"mAP": float(np.mean(valid_aps)) if valid_aps else float("nan"),
            "per_class": per_class, "num_gt": [num_gt[a] for a in label_map.ids],
            "names": list(label_map.names), "ids": list(label_map.ids)}


def scored_videos(groundtruth: dict, *detections: dict, excluded=frozenset()) -> list[str]:
    """The video ids frame-mAP is computed over: those of the ground truth's and the
    detections' keyframes outside `excluded`, sorted."""
    return sorted({k[0] for d in (groundtruth, *detections) for k in d if k not in excluded})


class VideoResampledMap:
    """Frame-mAP (`frame_map`, IoU 0.5) of one detector's detections with the test videos
    weighted: a video of weight k counts k times (its detections and its ground truth), as
    in a bootstrap resample of the videos that draws it k times; weight 0 leaves it out.
    Every detection's true/false positive status is decided within its keyframe, so it is
    matched once here and each call only re-weights it.

        stat = VideoResampledMap(gt, dets, label_map, excluded, videos=scored_videos(gt, dets))
        stat(np.ones((1, len(videos))))    # [frame_map(gt, dets, ...)["mAP"]]
        stat(weights)                      # weights float [n, V] -> frame-mAP float [n]

    A detection whose score ties another's is ordered as `frame_map` orders it. Raises
    ValueError when a keyframe's video is not in `videos`.
    """

    def __init__(self, groundtruth: dict, detections: dict, label_map, excluded=frozenset(),
                 *, videos, max_detections: int = MAX_DETECTIONS):
        index = {v: i for i, v in enumerate(videos)}
        self.videos = len(index)

        def video(key):
            if key[0] not in index:
                raise ValueError(f"video {key[0]!r} of keyframe {key} is not one of the "
                                 f"{len(index)} videos resampled")
            return index[key[0]]

        matched, instances = keyframe_matches(groundtruth, detections, label_map, excluded,
                                              max_detections=max_detections)
        self._classes = []  # (video of each detection [D], is_tp [D], gt per video [V])
        for a in label_map.ids:
            gt = np.zeros(self.videos)
            for key, n in instances[a].items():
                gt[video(key)] += n
            if not gt.any():
                continue  # no ground truth: AP NaN in every resample, left out of the mean
            rows = matched[a]
            scores = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0)
            tp = np.concatenate([r[2] for r in rows]) if rows else np.zeros(0, bool)
            vids = np.concatenate([np.full(len(r[1]), video(r[0])) for r in rows]) if rows \
                else np.zeros(0, int)
            order = np.argsort(scores)[::-1]  # as average_precision sorts
            self._classes.append((vids[order], tp[order].astype(np.float64), gt))

    def __call__(self, weights) -> np.ndarray:
        """weights float [n, V] (or [V]) -> frame-mAP of each row, float [n] (NaN for a row
        with no ground truth left)."""
        weights = np.atleast_2d(np.asarray(weights, np.float64))
        if weights.shape[1] != self.videos:
            raise ValueError(f"weights for {weights.shape[1]} videos, expected {self.videos}")
        aps = []
        for vids, tp, gt in self._classes:
            num_gt = weights @ gt  # [n]
            w = weights[:, vids]  # [n, D]
            hits = np.cumsum(w * tp, axis=1)
            total = np.cumsum(w, axis=1)
            precision = np.divide(hits, total, out=np.zeros_like(hits), where=total > 0)
            # The monotone envelope: the best precision at this or any later row. A row of
            # weight k stands for k copies in a row: precision rises along the copies of a
            # true positive, so each copy's envelope is the last copy's, and copies of a false
            # positive add no recall and lower the precision after them.
            envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
            area = (w * tp * envelope).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                aps.append(np.where(num_gt > 0, area / np.maximum(num_gt, 1e-300), np.nan))
        if not aps:
            return np.full(len(weights), np.nan)
        aps = np.stack(aps)  # [classes, n]
        counted = (~np.isnan(aps)).sum(axis=0)
        with np.errstate(invalid="ignore"):
            return np.where(counted > 0, np.nansum(aps, axis=0) / np.maximum(counted, 1), np.nan)


def groundtruth_match(groundtruth: dict, detections: dict, label_map, excluded=frozenset()
                      ) -> dict:
    """How far the ground truth meets the scored keyframes (those of `detections`, one per
    record), as `frame_map` counts them.

    Returns {"keyframes": ground-truth keyframes with a row of a label-map class,
    "keyframes_matched": of those, the ones among the scored keyframes, "keyframes_scored",
    "classes_matched": label-map classes with ground truth on a matched keyframe, "classes",
    "rows_other_classes": ground-truth rows of action ids outside the label map,
    "other_action_ids" / "class_ids": the first 11 of those ids / of the label map's,
    "videos" / "videos_scored": the first 5 video ids of each side} (excluded keyframes left
    out of every count).
    """
    wanted = set(label_map.ids)
    gt_keys, classes, other, rows_other = set(), set(), set(), 0
    scored = {k for k in detections if k not in excluded}
    for key, entry in groundtruth.items():
        if key in excluded:
            continue
        labels = [int(a) for a in entry.labels]
        rows_other += sum(a not in wanted for a in labels)
        other.update(a for a in labels if a not in wanted)
        if any(a in wanted for a in labels):
            gt_keys.add(key)
            if key in scored:
                classes.update(a for a in labels if a in wanted)
    return {"keyframes": len(gt_keys), "keyframes_matched": len(gt_keys & scored),
            "keyframes_scored": len(scored), "classes_matched": len(classes),
            "classes": len(wanted), "rows_other_classes": rows_other,
            "other_action_ids": sorted(other)[:11], "class_ids": sorted(wanted)[:11],
            "videos": sorted({k[0] for k in gt_keys})[:5],
            "videos_scored": sorted({k[0] for k in scored})[:5]}


def _ids(ids) -> str:
    return ", ".join(map(str, ids[:10])) + (", ..." if len(ids) > 10 else "")


def check_groundtruth_match(match: dict, source: str) -> str:
    """Raises ValueError (one line naming `source`, the ground truth) when it matches no scored
    keyframe, which would score frame-mAP 0 or NaN; else returns a line saying how far it
    matched (`groundtruth_match`'s dict)."""
    if not match["keyframes"] and match["other_action_ids"]:
        raise ValueError(
            f"{source}: no ground truth to score: none of its action ids "
            f"({_ids(match['other_action_ids'])}) is one of the label map's "
            f"({_ids(match['class_ids'])}); is it for another label map?")
    if not match["keyframes"]:
        raise ValueError(f"{source}: no ground truth to score: it has no rows (outside the "
                         f"excluded timestamps)")
    if not match["keyframes_matched"]:
        raise ValueError(
            f"{source}: none of its {match['keyframes']} keyframes (videos "
            f"{', '.join(match['videos'])}, ...) is among the {match['keyframes_scored']} "
            f"keyframes of the records (videos {', '.join(match['videos_scored'])}, ...): "
            f"nothing to score; is it for another split, other videos or other timestamps?")
    line = (f"ground truth {source}: {match['keyframes_matched']} of its {match['keyframes']} "
            f"keyframes are in the records ({match['keyframes_scored']} keyframes scored); "
            f"{match['classes_matched']} of {match['classes']} classes have ground truth there")
    if match["rows_other_classes"]:
        line += (f"; {match['rows_other_classes']} row(s) of action ids outside the label map "
                 f"ignored (action ids {_ids(match['other_action_ids'])})")
    return line


def write_detections_csv(path: str, rows) -> None:
    """Detections in the official CSV format: `video_id,timestamp,x1,y1,x2,y2,action_id,score`.

    rows: iterable of (video_id, timestamp, box (x1, y1, x2, y2), action_id, score). Scores
    keep 9 significant digits (a float32 exactly): rounding them to fewer ties scores that the
    ranking told apart, and frame-mAP read back from the file would differ from the one computed.
    """
    with atomic.open_for_write(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        for vid, ts, box, action, score in rows:
            writer.writerow([vid, f"{int(ts):04d}", *(f"{v:.3f}" for v in box), int(action),
                             f"{score:.9g}"])


def write_per_class_csv(path: str, result: dict) -> None:
    """`action_id,name,ap,num_gt` per class (AP empty where the class has no ground truth)."""
    with atomic.open_for_write(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["action_id", "name", "ap", "num_gt"])
        for a, name, ap, n in zip(result["ids"], result["names"], result["per_class"],
                                  result["num_gt"]):
            writer.writerow([a, name, "" if math.isnan(ap) else f"{ap:.6f}", n])


def plot_per_class(path: str, result: dict, title: str = "") -> None:
    """Horizontal bar chart of the AP of every class (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    aps = [0.0 if math.isnan(a) else a for a in result["per_class"]]
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(aps) + 1.2))
    ax.barh(range(len(aps)), aps)
    ax.set_yticks(range(len(aps)), result["names"], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("AP (IoU 0.5)")
    ax.set_title(title or f"frame-mAP {result['mAP']:.3f}")
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=100)
    plt.close(fig)
