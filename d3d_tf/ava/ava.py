"""AVA (v2.1 / v2.2) annotations and keyframe records.

Files (all CSVs without a header):

* annotations  ``video_id,timestamp,x1,y1,x2,y2,action_id,person_id``: one row per (person,
  keyframe, action); timestamp in seconds (AVA: 902..1798, 1 fps keyframes); boxes normalized
  to [0, 1] of the frame; action ids from 1 (80 in v2.1/v2.2).
* label map (pbtxt) ``item { name: "..." id: N }`` or v2.2's ``label { name: "..." label_id: N
  label_type: ... }``: the classes evaluated (``ava_action_list_v2.1_for_activitynet_2018.pbtxt``
  lists the 60-class subset); rows with other action ids are dropped.
* excluded timestamps ``video_id,timestamp``: keyframes not annotated; ignored by training and
  evaluation.
* person boxes ``video_id,timestamp,x1,y1,x2,y2,<action or empty>,score``: what a person
  detector writes (the proposals used at evaluation).

A bad row raises AnnotationError with ``file:line`` and what is wrong.

Keyframe records: one ``tf.train.SequenceExample`` per keyframe, the schema of
:mod:`d3d_tf.data.records` (its T frames are the clip centred on the keyframe) plus context:

    timestamp        int64     seconds
    keyframe_index   int64     index of the keyframe in the clip (T // 2)
    box              float     [4n] ground-truth person boxes x1, y1, x2, y2 (normalized)
    box/labels       float     [n*K] multi-hot labels (K = label-map classes, label-map order)
    box/person_id    int64     [n]
    proposal         float     [4m] person-detector boxes (normalized)
    proposal/score   float     [m]
    num_classes      int64     K

Frame j of the clip is the video frame nearest to ``timestamp - time_offset + (j - T//2) /
fps`` (clamped to the video), at the requested fps and short side.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import os
import re

import numpy as np

from d3d_tf.core.config_flags import field
from d3d_tf.data import prepare_lib
from d3d_tf.data.datasets import VIDEO_EXTENSIONS, AnnotationError, VideoEntry

Key = tuple  # (video_id, timestamp seconds int)
LABEL_MAP_FILE = "label_map.pbtxt"  # written next to the keyframe records


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """Evaluated classes: ids (AVA action ids) and names, in file order."""
    ids: tuple[int, ...]
    names: tuple[str, ...]

    def index(self) -> dict[int, int]:
        """action id -> class index (0-based, label-map order)."""
        return {a: i for i, a in enumerate(self.ids)}


@dataclasses.dataclass
class Boxes:
    """Boxes of one keyframe: float32 [n,4] (x1, y1, x2, y2), labels (action ids) and scores."""
    boxes: list = dataclasses.field(default_factory=list)
    labels: list = dataclasses.field(default_factory=list)
    scores: list = dataclasses.field(default_factory=list)
    person_ids: list = dataclasses.field(default_factory=list)


def _rows(path: str):
    if not os.path.isfile(path):
        raise AnnotationError(f"{path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            for line, row in enumerate(csv.reader(f), 1):
                if row and any(v.strip() for v in row):
                    yield line, [v.strip() for v in row]
    except UnicodeDecodeError as e:
        raise AnnotationError(_not_utf8(path, e)) from None


def _not_utf8(path: str, e: UnicodeDecodeError) -> str:
    return (f"{path}: not UTF-8 text (byte {e.object[e.start:e.start + 1]!r}: {e.reason}); "
            f"save it as UTF-8")


def _timestamp(value: str, where: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        raise AnnotationError(f"{where}: timestamp {value!r} is not a number") from None


def _box(values, where: str) -> list[float]:
    try:
        x1, y1, x2, y2 = (float(v) for v in values)
    except ValueError:
        raise AnnotationError(f"{where}: box {values} is not 4 numbers") from None
    if not (0.0 <= x1 <= x2 <= 1.0 and 0.0 <= y1 <= y2 <= 1.0):
        raise AnnotationError(f"{where}: box {values} is not a normalized x1<=x2, y1<=y2 box "
                              f"in [0, 1]")
    return [x1, y1, x2, y2]


def read_label_map(path: str) -> LabelMap:
    """Reads a label-map pbtxt (`item {name id}` or `label {name label_id}` blocks)."""
    if not os.path.isfile(path):
        raise AnnotationError(f"{path}: label map not found")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise AnnotationError(_not_utf8(path, e)) from None
    ids, names = [], []
    for m in re.finditer(r"(item|label)\s*\{(.*?)\}", text, re.DOTALL):
        line = text.count("\n", 0, m.start()) + 1
        body = m.group(2)
        name = re.search(r'name:\s*"([^"]*)"', body)
        ident = re.search(r"\b(?:id|label_id):\s*(-?\d+)", body)
        if not name or not ident:
            raise AnnotationError(f"{path}:{line}: {m.group(1)} block without name and id")
        if int(ident.group(1)) in ids:
            raise AnnotationError(f"{path}:{line}: id {ident.group(1)} appears twice")
        ids.append(int(ident.group(1)))
        names.append(name.group(1))
    if not ids:
        raise AnnotationError(f"{path}: no `item {{ name: ... id: ... }}` entries")
    return LabelMap(tuple(ids), tuple(names))


def label_map_text(ids, names) -> str:
    """A label map in the `item { name: "..." id: N }` form."""
    return "".join(f'item {{\n  name: "{name}"\n  id: {int(i)}\n}}\n'
                   for i, name in zip(ids, names))


def write_label_map(path: str, ids, names) -> None:
    """Writes `label_map_text(ids, names)` to `path`."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(label_map_text(ids, names))


def read_excluded(path: str | None) -> set:
    """Excluded keyframes {(video_id, timestamp)}; an empty set for None."""
    if not path:
        return set()
    out = set()
    for line, row in _rows(path):
        where = f"{path}:{line}"
        if len(row) != 2:
            raise AnnotationError(f"{where}: expected video_id,timestamp, got {len(row)} "
                                  f"columns")
        out.add((row[0], _timestamp(row[1], where)))
    return out


def read_boxes(path: str, *, label_map: LabelMap | None = None, scores: bool = False
               ) -> dict[Key, Boxes]:
    """Reads an annotation CSV (`scores=False`) or a person-box / detection CSV (`scores`).

    Annotations: 7 or 8 columns (AVA also writes an 8th, a score); rows whose action is not in
    `label_map` are dropped. Person boxes: 8 columns, the action column may be empty (then the
    row is a class-agnostic box) and the 8th is the score. Returns {(video, ts): Boxes}.
    """
    wanted = None if label_map is None else set(label_map.ids)
    out: dict[Key, Boxes] = collections.defaultdict(Boxes)
    for line, row in _rows(path):
        where = f"{path}:{line}"
        if len(row) not in ((8,) if scores else (7, 8)):
            raise AnnotationError(
                f"{where}: expected {'8' if scores else '7 or 8'} columns (video_id,timestamp,"
                f"x1,y1,x2,y2,action_id,{'score' if scores else 'person_id'}), got {len(row)}")
        key = (row[0], _timestamp(row[1], where))
        box = _box(row[2:6], where)
        action = -1
        if row[6] or not scores:
            try:
                action = int(row[6])
            except ValueError:
                raise AnnotationError(f"{where}: action id {row[6]!r} is not an integer") \
                    from None
        if wanted is not None and action != -1 and action not in wanted:
            continue
        entry = out[key]
        entry.boxes.append(box)
        entry.labels.append(action)
        if scores:
            try:
                entry.scores.append(float(row[7]))
            except ValueError:
                raise AnnotationError(f"{where}: score {row[7]!r} is not a number") from None
        else:
            entry.scores.append(1.0)
            entry.person_ids.append(row[6 + 1] if len(row) > 7 else "")
    return dict(out)


def group_people(entry: Boxes, label_map: LabelMap):
    """One box per person of a keyframe with its multi-hot labels.

    Rows of the same box (AVA writes a row per action) are merged. Returns (boxes float32
    [n,4], multi-hot float32 [n,K], person ids int64 [n]; -1 where the id is not a number).
    """
    index = label_map.index()
    people: dict = {}
    for box, action, pid in zip(entry.boxes, entry.labels, entry.person_ids or
                                [""] * len(entry.boxes)):
        key = (tuple(round(v, 4) for v in box), pid)
        hot = people.setdefault(key, np.zeros(len(label_map.ids), np.float32))
        if action in index:
            hot[index[action]] = 1.0
    boxes = np.array([k[0] for k in people], np.float32).reshape(-1, 4)
    labels = np.stack(list(people.values())) if people else \
        np.zeros((0, len(label_map.ids)), np.float32)
    pids = np.array([int(k[1]) if k[1].lstrip("-").isdigit() else -1 for k in people],
                    np.int64)
    return boxes, labels, pids


# ---- keyframe records -------------------------------------------------------------------------

def clip_indices(timestamp: float, num_frames: int, fps: float, total: int,
                 time_offset: float = 0.0) -> np.ndarray:
    """Frame indices int [T] of the clip centred on `timestamp` (clamped to [0, total-1])."""
    center = round((timestamp - time_offset) * fps)
    return np.clip(center + np.arange(num_frames) - num_frames // 2, 0, total - 1)


def keyframe_outside(timestamp: float, fps: float, total: int, time_offset: float = 0.0
                     ) -> str | None:
    """Why the keyframe at `timestamp` (s, annotation time) is not in a video file of `total`
    frames at `fps` whose first frame is at `time_offset` (s), or None when it is. Its clip
    would be one frozen frame (the first or last) under boxes that are not in it."""
    center = round((timestamp - time_offset) * fps)
    if 0 <= center < total:
        return None
    where = "past the video's end" if center >= total else "before the video's start"
    return (f"keyframe {timestamp:g} s is {where} ({time_offset:g} s to "
            f"{time_offset + total / fps:g} s: {total} frames at {fps:g} fps; check "
            f"--time_offset and the video file)")


def keyframe_example(*, video_id: str, timestamp: int, jpeg_frames, fps: float, height: int,
                     width: int, boxes, labels, person_ids=None, proposals=None,
                     proposal_scores=None):
    """The SequenceExample of one keyframe (module doc); `labels` float [n,K] multi-hot."""
    import tensorflow as tf

    from d3d_tf.data import records  # TensorFlow only where records are built
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = np.asarray(labels, np.float32)
    if labels.ndim != 2:  # flat n*K values (K cannot be inferred from 0 boxes: pass [0,K])
        labels = labels.reshape(len(boxes), -1)
    if len(labels) != len(boxes):
        raise ValueError(f"{video_id},{timestamp}: {len(labels)} label rows for {len(boxes)} "
                         f"boxes")
    proposals = np.zeros((0, 4), np.float32) if proposals is None else \
        np.asarray(proposals, np.float32).reshape(-1, 4)
    scores = np.ones(len(proposals), np.float32) if proposal_scores is None else \
        np.asarray(proposal_scores, np.float32)
    if len(scores) != len(proposals):
        raise ValueError(f"{video_id},{timestamp}: {len(scores)} scores for {len(proposals)} "
                         f"proposals")
    pids = np.full(len(boxes), -1, np.int64) if person_ids is None else np.asarray(person_ids)
    ex = records.build_sequence_example(video_id=video_id, label=-1, label_name=None, fps=fps,
                                        height=height, width=width,
                                        jpeg_frames=list(jpeg_frames))
    feats = ex.context.feature

    def floats(key, values):
        feats[key].CopyFrom(tf.train.Feature(float_list=tf.train.FloatList(
            value=np.asarray(values, np.float32).ravel().tolist())))

    def ints(key, values):
        feats[key].CopyFrom(tf.train.Feature(int64_list=tf.train.Int64List(
            value=[int(v) for v in np.ravel(values)])))

    ints("timestamp", [timestamp])
    ints("keyframe_index", [len(jpeg_frames) // 2])
    ints("num_classes", [labels.shape[1]])
    floats("box", boxes)
    floats("box/labels", labels)
    ints("box/person_id", pids)
    floats("proposal", proposals)
    floats("proposal/score", scores)
    return ex


def keyframe_context_spec() -> dict:
    import tensorflow as tf
    var = tf.io.VarLenFeature
    return {"timestamp": tf.io.FixedLenFeature([], tf.int64),
            "keyframe_index": tf.io.FixedLenFeature([], tf.int64),
            "num_classes": tf.io.FixedLenFeature([], tf.int64),
            "box": var(tf.float32), "box/labels": var(tf.float32),
            "box/person_id": var(tf.int64), "proposal": var(tf.float32),
            "proposal/score": var(tf.float32)}


def parse_keyframe(serialized):
    """Parses a keyframe record (graph mode): the video fields of `records` (frames still
    JPEG) plus `timestamp`, `keyframe_index`, `box` [n,4], `box/labels` [n,K],
    `box/person_id` [n], `proposal` [m,4], `proposal/score` [m]."""
    import tensorflow as tf

    from d3d_tf.data import records
    spec = {**records.context_spec(), **keyframe_context_spec()}
    context, seq = tf.io.parse_single_sequence_example(
        serialized, context_features=spec,
        sequence_features={records.IMAGE_KEY: tf.io.FixedLenSequenceFeature([], tf.string)})
    out = {k: (tf.sparse.to_dense(v) if isinstance(v, tf.sparse.SparseTensor) else v)
           for k, v in context.items()}
    k = tf.cast(out["num_classes"], tf.int32)
    out["box"] = tf.reshape(out["box"], [-1, 4])
    out["box/labels"] = tf.reshape(out["box/labels"], [-1, k])
    out["proposal"] = tf.reshape(out["proposal"], [-1, 4])
    out[records.IMAGE_KEY] = seq[records.IMAGE_KEY]
    return out


def decode_keyframe(serialized: bytes) -> dict:
    """Eagerly decodes a keyframe record to numpy (tests, inspection); adds `rgb` [T,H,W,3]."""
    import tensorflow as tf

    from d3d_tf.data import records
    parsed = parse_keyframe(tf.constant(serialized))
    out = {k: v.numpy() for k, v in parsed.items() if k != records.IMAGE_KEY}
    out["video_id"] = out["video_id"].decode()
    out["rgb"] = np.stack([tf.io.decode_jpeg(f, channels=3).numpy()
                           for f in parsed[records.IMAGE_KEY]])
    return out


# ---- prepare --format=ava ---------------------------------------------------------------------

@dataclasses.dataclass
class AvaPrepareConfig:
    """What `prepare --format=ava` reads besides the annotation CSV and the video folder.

    Each field is also a flag of `python -m d3d_tf.prepare`. Times in seconds.
    """
    label_map: str | None = field(None, "--format=ava: label-map pbtxt of the evaluated classes "
                                  "(e.g. the 60-class ava_action_list_v2.1_for_activitynet_2018"
                                  ".pbtxt); other action ids are dropped.")
    excluded: str | None = field(None, "--format=ava: excluded-timestamps CSV (video_id,"
                                 "timestamp); those keyframes are not written.")
    person_boxes: str | None = field(None, "--format=ava: person-detector boxes CSV (video_id,"
                                     "timestamp,x1,y1,x2,y2,,score), stored as each keyframe's "
                                     "proposals (needed for evaluation records).")
    clip_frames: int = field(32, "--format=ava: frames per keyframe clip (T), centred on the "
                             "keyframe, at --fps.", min=1)
    time_offset: float = field(0.0, "--format=ava: annotation time (s) of a video file's first "
                               "frame: 0 for whole movies, 900 for AVA's 15-minute cuts.")
    min_box_score: float = field(0.0, "--format=ava: drop person boxes scoring below this.")


@dataclasses.dataclass
class AvaEvalConfig:
    """How a saved detector is scored: the AVA flags of `python -m d3d_tf.evaluate --task=ava`
    (`ava_task.evaluate_detector`)."""
    ava_groundtruth: str | None = field(None, "--task=ava: ground-truth CSV to score against, "
                                        "as the official script does (default: the ground "
                                        "truth stored in the records).")
    ava_label_map: str | None = field(None, "--task=ava: label map of the evaluated classes "
                                      "(default: the detector's classes).")
    ava_excluded: str | None = field(None, "--task=ava: excluded-timestamps CSV.")
    ava_max_boxes: int = field(32, "--task=ava: proposals scored per keyframe (best first).",
                               min=1)


def find_video(video_dir: str, video_id: str) -> str:
    """`video_dir/video_id.EXT` for the first existing extension (else the .mp4 path)."""
    for ext in VIDEO_EXTENSIONS:
        path = os.path.join(video_dir, video_id + ext)
        if os.path.exists(path):
            return path
    return os.path.join(video_dir, video_id + ".mp4")


def keyframes(annotations: str, ava: AvaPrepareConfig):
    """(label map, {key: (boxes, labels, person ids)}, {key: (proposals, scores)}) of the keyframes
    to write: those with ground truth or proposals, minus the excluded ones."""
    label_map = read_label_map(ava.label_map)
    excluded = read_excluded(ava.excluded)
    gt = {k: group_people(v, label_map) for k, v in
          read_boxes(annotations, label_map=label_map).items() if k not in excluded}
    props = {}
    if ava.person_boxes:
        for k, v in read_boxes(ava.person_boxes, scores=True).items():
            keep = np.asarray(v.scores) >= ava.min_box_score
            if k not in excluded and keep.any():
                props[k] = (np.asarray(v.boxes, np.float32)[keep],
                            np.asarray(v.scores, np.float32)[keep])
    return label_map, gt, props


def prepare(annotations: str, video_dir: str, ava: AvaPrepareConfig,
            config: prepare_lib.PrepareConfig, progress_stream=None) -> prepare_lib.PrepareSummary:
    """Writes one keyframe record per keyframe of `annotations` (+ person boxes) as shards.

    Resumable and parallel like `prepare_lib.prepare` (one video per worker; a video's
    keyframes go to its shard; a finished shard whose keyframes' boxes or labels changed is
    rewritten). `labels.txt` holds the label-map names, `label_map.pbtxt` the label map.
    """
    if ava.clip_frames < 1:
        raise prepare_lib.PrepareError(f"clip_frames must be >= 1, got {ava.clip_frames}")
    if not ava.label_map:
        raise prepare_lib.PrepareError("--format=ava needs --label_map=<label map .pbtxt>")
    label_map, gt, props = keyframes(annotations, ava)
    keys = sorted(set(gt) | set(props))
    if not keys:
        raise AnnotationError(f"{annotations}: no keyframes left (after the label map and "
                              f"excluded timestamps)")
    by_video = collections.defaultdict(list)
    for key in keys:
        by_video[key[0]].append(key[1])
    entries = [VideoEntry(path=find_video(video_dir, vid), label_name=None, split=config.split,
                          video_id=vid) for vid in sorted(by_video)]
    empty = (np.zeros((0, 4), np.float32), np.zeros((0, len(label_map.ids)), np.float32),
             np.zeros(0, np.int64))

    def to_examples(entry, result, label_ids):
        del label_ids
        jpegs = result["jpegs"]
        out = []
        for ts in by_video[entry.video_id]:
            boxes, labels, pids = gt.get((entry.video_id, ts), empty)
            proposals, scores = props.get((entry.video_id, ts), (None, None))
            reason = keyframe_outside(ts, result["fps"], len(jpegs), ava.time_offset)
            if reason:
                out.append(prepare_lib.Skipped(reason))
                continue
            idx = clip_indices(ts, ava.clip_frames, result["fps"], len(jpegs), ava.time_offset)
            out.append(keyframe_example(
                video_id=entry.video_id, timestamp=ts, jpeg_frames=[jpegs[i] for i in idx],
                fps=result["fps"], height=result["height"], width=result["width"],
                boxes=boxes, labels=labels, person_ids=pids, proposals=proposals,
                proposal_scores=scores))
        return out

    def video_key(entry):
        """What `to_examples` writes of the annotations: every keyframe's boxes and labels."""
        out = []
        for ts in by_video[entry.video_id]:
            gt_arrays = gt.get((entry.video_id, ts), empty)
            prop_arrays = props.get((entry.video_id, ts), ())
            out.append([ts, *(np.asarray(a).tolist() for a in (*gt_arrays, *prop_arrays))])
        return out

    config = dataclasses.replace(config, flow="none", extra_settings={
        "ava": {k: v for k, v in dataclasses.asdict(ava).items()
                if k in ("clip_frames", "time_offset", "min_box_score")}})
    # The label map goes with the records (training and evaluation need its action ids); it
    # is written only once the output folder is checked (another label map there is refused).
    return prepare_lib.prepare(
        entries, list(label_map.names), config, progress_stream=progress_stream,
        to_examples=to_examples, video_key=video_key,
        side_files={LABEL_MAP_FILE: label_map_text(label_map.ids, label_map.names)})
