"""Annotation readers: dataset description files -> list of VideoEntry + label list.

Every reader returns `(entries, labels)`: `entries` is a list of `VideoEntry`, `labels` the
class names in label-index order (label id = position; sorted names except UCF-101, whose
official `classInd.txt` order is kept — it is alphabetical too). Paths are absolute or
relative to the working directory; a file that does not exist is still listed (prepare
reports it as skipped: "file not found"), because downloaded datasets always miss a few
videos. Malformed input raises AnnotationError naming the file and line.

Formats:
  kinetics  CSV `label,youtube_id,time_start,time_end,split` (label may be absent for test
            sets); videos named `{youtube_id}_{time_start:06d}_{time_end:06d}.mp4`, the
            ActivityNet downloader's convention, directly in the video dir or in a label
            subfolder (`abseiling/`, or with spaces as underscores `air_drumming/`).
  ucf101    split dir with `classInd.txt`, `trainlist0K.txt` (`Class/v_Class_gXX_cYY.avi N`)
            and `testlist0K.txt` (`Class/v_Class_gXX_cYY.avi`); videos at video_dir/line.
  hmdb51    split dir with `<class>_test_split<K>.txt` (`<video> <0|1|2>`, 1 = train,
            2 = test, 0 = unused); videos at video_dir/<class>/<video>.
  folder    class-per-folder tree root/<class>/<video>.
  list      text file, one video path per line (relative to the list's folder), unlabeled.
  manifest  the synthetic dataset's `manifest.csv` (`path,label_name,split`, paths relative
            to its folder) with `labels.txt` beside it.
"""
from __future__ import annotations

import csv
import dataclasses
import glob
import os

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")
FORMATS = ("kinetics", "ucf101", "hmdb51", "folder", "list", "manifest")


class AnnotationError(ValueError):
    """Malformed annotation input; the message names the file (and line)."""


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    path: str                 # video file
    label_name: str | None    # None = unlabeled (label -1)
    split: str                # e.g. "train", "test", "val"
    video_id: str             # unique within a split


def _read_lines(path: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-empty lines of a text file."""
    if not os.path.isfile(path):
        raise AnnotationError(f"{path}: annotation file not found")
    with open(path, encoding="utf-8-sig") as f:
        return [(i, line.strip()) for i, line in enumerate(f, 1) if line.strip()]


def _check_unique(entries: list[VideoEntry], source: str) -> None:
    seen = {}
    for e in entries:
        key = (e.split, e.video_id)
        if key in seen:
            raise AnnotationError(f"{source}: video id {e.video_id!r} appears twice in split "
                                  f"{e.split!r} ({seen[key]} and {e.path})")
        seen[key] = e.path


def _video_id(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def read_kinetics_csv(csv_path: str, video_dir: str) -> tuple[list[VideoEntry], list[str]]:
    """Kinetics-400/600/700 CSV (`label,youtube_id,time_start,time_end,split`)."""
    if not os.path.isfile(csv_path):
        raise AnnotationError(f"{csv_path}: annotation file not found")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        missing = {"youtube_id", "time_start", "time_end"} - set(fields)
        if missing:
            raise AnnotationError(f"{csv_path}:1: header {fields} lacks {sorted(missing)}; "
                                  f"expected label,youtube_id,time_start,time_end,split")
        entries = []
        for row in reader:
            line = reader.line_num
            try:
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
            except (TypeError, ValueError):
                raise AnnotationError(f"{csv_path}:{line}: time_start/time_end must be "
                                      f"numbers, got {row['time_start']!r}, "
                                      f"{row['time_end']!r}") from None
            yid = (row["youtube_id"] or "").strip()
            if not yid:
                raise AnnotationError(f"{csv_path}:{line}: empty youtube_id")
            label = (row.get("label") or "").strip() or None
            split = (row.get("split") or "").strip() or "test"
            vid = f"{yid}_{start:06d}_{end:06d}"
            entries.append(VideoEntry(_find_kinetics_file(video_dir, vid, label),
                                      label, split, vid))
    _check_unique(entries, csv_path)
    return entries, sorted({e.label_name for e in entries if e.label_name})


def _find_kinetics_file(video_dir: str, vid: str, label: str | None) -> str:
    folders = [video_dir]
    if label:
        folders = [os.path.join(video_dir, label), os.path.join(video_dir, label.replace(" ", "_")),
                   video_dir]
    for folder in folders:
        for ext in (".mp4", ".mkv", ".webm"):
            path = os.path.join(folder, vid + ext)
            if os.path.exists(path):
                return path
    return os.path.join(folders[0], vid + ".mp4")  # reported as missing by prepare


def read_ucf101(split_dir: str, video_dir: str, fold: int = 1
                ) -> tuple[list[VideoEntry], list[str]]:
    """UCF-101 official split files (fold 1..3): train and test entries."""
    class_file = os.path.join(split_dir, "classInd.txt")
    labels = []
    for line_no, text in _read_lines(class_file):
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(labels) + 1:
            raise AnnotationError(f"{class_file}:{line_no}: expected '<index> <ClassName>' "
                                  f"with index {len(labels) + 1}, got {text!r}")
        labels.append(parts[1])
    entries = []
    for split, name in (("train", f"trainlist0{fold}.txt"), ("test", f"testlist0{fold}.txt")):
        path = os.path.join(split_dir, name)
        for line_no, text in _read_lines(path):
            parts = text.split()
            rel = parts[0].replace("\\", "/")
            folder = rel.split("/")[0] if "/" in rel else None
            if len(parts) > 2 or folder not in labels:
                raise AnnotationError(f"{path}:{line_no}: expected '<Class>/<video>.avi"
                                      f"{' <index>' if split == 'train' else ''}' with a class "
                                      f"from classInd.txt, got {text!r}")
            if len(parts) == 2:
                if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(labels):
                    raise AnnotationError(f"{path}:{line_no}: class index {parts[1]!r} not in "
                                          f"1..{len(labels)}")
                if labels[int(parts[1]) - 1] != folder:
                    raise AnnotationError(f"{path}:{line_no}: class index {parts[1]} is "
                                          f"{labels[int(parts[1]) - 1]!r} but the folder is "
                                          f"{folder!r}")
            entries.append(VideoEntry(os.path.join(video_dir, rel), folder, split,
                                      _video_id(rel)))
    _check_unique(entries, split_dir)
    return entries, labels


def read_hmdb51(split_dir: str, video_dir: str, fold: int = 1
                ) -> tuple[list[VideoEntry], list[str]]:
    """HMDB-51 split files `<class>_test_split<fold>.txt` (1 = train, 2 = test, 0 = unused)."""
    suffix = f"_test_split{fold}.txt"
    files = sorted(glob.glob(os.path.join(split_dir, f"*{suffix}")))
    if not files:
        raise AnnotationError(f"{split_dir}: no '*{suffix}' split files found")
    entries, labels = [], []
    for path in files:
        label = os.path.basename(path)[:-len(suffix)]
        labels.append(label)
        for line_no, text in _read_lines(path):
            parts = text.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise AnnotationError(f"{path}:{line_no}: expected '<video> <0|1|2>', "
                                      f"got {text!r}")
            if parts[1] == "0":
                continue
            split = "train" if parts[1] == "1" else "test"
            entries.append(VideoEntry(os.path.join(video_dir, label, parts[0]), label, split,
                                      _video_id(parts[0])))
    _check_unique(entries, split_dir)
    return entries, sorted(labels)


def read_folder_tree(root: str, split: str = "train") -> tuple[list[VideoEntry], list[str]]:
    """Class-per-folder tree root/<class>/<video>; every video gets `split`."""
    if not os.path.isdir(root):
        raise AnnotationError(f"{root}: video folder not found")
    labels = sorted(d for d in os.listdir(root)
                    if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not labels:
        raise AnnotationError(f"{root}: no class subfolders found")
    entries = []
    for label in labels:
        names = [n for n in sorted(os.listdir(os.path.join(root, label)))
                 if n.lower().endswith(VIDEO_EXTENSIONS)]
        stems = [_video_id(n) for n in names]
        for name, stem in zip(names, stems):
            # x.mp4 beside x.mkv: both keep their extension, so the ids differ.
            vid = name if stems.count(stem) > 1 else stem
            entries.append(VideoEntry(os.path.join(root, label, name), label, split,
                                      f"{label}/{vid}"))
    if not entries:
        raise AnnotationError(f"{root}: no video files ({', '.join(VIDEO_EXTENSIONS)}) found "
                              f"in its class folders")
    _check_unique(entries, root)
    return entries, labels


def read_file_list(list_path: str, split: str = "train") -> tuple[list[VideoEntry], list[str]]:
    """Plain list of video paths (one a line, '#' comments), unlabeled (label -1; DistInit)."""
    base = os.path.dirname(os.path.abspath(list_path))
    entries = []
    for _, text in _read_lines(list_path):
        if text.startswith("#"):
            continue
        path = text if os.path.isabs(text) else os.path.join(base, text)
        rel = os.path.relpath(path, base)
        vid = os.path.splitext(rel)[0] if not rel.startswith("..") else _video_id(path)
        entries.append(VideoEntry(path, None, split, vid))
    if not entries:
        raise AnnotationError(f"{list_path}: the list has no video paths")
    _check_unique(entries, list_path)
    return entries, []


def read_manifest(manifest_path: str) -> tuple[list[VideoEntry], list[str]]:
    """The synthetic dataset's manifest.csv (`path,label_name,split`) and labels.txt."""
    if not os.path.isfile(manifest_path):
        raise AnnotationError(f"{manifest_path}: manifest not found")
    base = os.path.dirname(os.path.abspath(manifest_path))
    entries = []
    with open(manifest_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not {"path", "label_name", "split"} <= set(reader.fieldnames or []):
            raise AnnotationError(f"{manifest_path}:1: header must be path,label_name,split, "
                                  f"got {reader.fieldnames}")
        for row in reader:
            if not row["path"] or not row["split"]:
                raise AnnotationError(f"{manifest_path}:{reader.line_num}: empty path or split")
            rel = row["path"]
            entries.append(VideoEntry(os.path.join(base, rel), row["label_name"] or None,
                                      row["split"], os.path.splitext(rel)[0]))
    labels_path = os.path.join(base, "labels.txt")
    if os.path.isfile(labels_path):
        labels = [text for _, text in _read_lines(labels_path)]
    else:
        labels = sorted({e.label_name for e in entries if e.label_name})
    for e in entries:
        if e.label_name is not None and e.label_name not in labels:
            raise AnnotationError(f"{manifest_path}: label {e.label_name!r} of {e.path} is not "
                                  f"in {labels_path}")
    _check_unique(entries, manifest_path)
    return entries, labels


def read_dataset(fmt: str, *, annotations: str = "", video_dir: str = "", split: str = "train",
                 fold: int = 1) -> tuple[list[VideoEntry], list[str]]:
    """Dispatches on `fmt` (one of FORMATS). `annotations` is the CSV / split dir / list /
    manifest; `video_dir` the video root (kinetics, ucf101, hmdb51, folder). For `folder` and
    `list` every video gets `split`; the other formats carry their own splits."""
    if fmt == "kinetics":
        return read_kinetics_csv(annotations, video_dir)
    if fmt == "ucf101":
        return read_ucf101(annotations, video_dir, fold)
    if fmt == "hmdb51":
        return read_hmdb51(annotations, video_dir, fold)
    if fmt == "folder":
        return read_folder_tree(video_dir or annotations, split)
    if fmt == "list":
        return read_file_list(annotations, split)
    if fmt == "manifest":
        return read_manifest(annotations)
    raise ValueError(f"unknown dataset format {fmt!r}; choose one of {FORMATS}")
