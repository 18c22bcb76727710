"""Videos + labels -> sharded TFRecords (the library behind `python -m d3d_tf.prepare`).

Work is split per video: worker processes decode, compute flow (the expensive part: `python -m
d3d_tf.benchmark --parts=flow` measures TV-L1 pairs/s) and JPEG/PNG-encode one video each; the
parent receives the encoded frames in order and writes the shards. Workers import no TensorFlow
(`codec` uses OpenCV), so they start fast.

Resumable: shard k of split S is written to `.S-0000k-of-0000n.tfrecord.partial` and renamed
to `S-0000k-of-0000n.tfrecord` only when complete, after its sidecar
`.prepare/S-0000k-of-0000n.json` (video ids, skipped videos, counts, settings) is written. A
rerun skips shards that have both, so an interrupted run (even SIGKILL) never leaves a
truncated shard that looks finished, and the rerun writes each video exactly once. Which
videos go to which shard is a deterministic function of the inputs and settings. The sidecar
also holds the shard's fingerprint (`d3d_tf.core.fingerprint`): per video its label and what else
goes into its records (AVA: the keyframes' boxes), and for a skipped video its file's size and
time. A rerun rewrites a finished shard whose fingerprint differs (a label changed, a skipped
video was fixed) instead of reusing it.

A video that cannot be read (missing, corrupt, too short for flow) is skipped and reported;
it never aborts the run. Outputs beside the shards: `labels.txt` (one class a line, line
index = label id) and `S_info.json` (settings, per-class counts, totals, skipped videos).
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import io
import json
import math
import multiprocessing
import os
import random
import sys
import time

from d3d_tf.core import atomic, fingerprint, run_lock
from d3d_tf.core import progress as progress_lib
from d3d_tf.data import preprocessing
from d3d_tf.data.datasets import VideoEntry
from d3d_tf.data.prepare_hosts import HostConfig

FLOW_CHOICES = ("tvl1", "farneback", "dis", "none")
STATE_DIR = ".prepare"


class PrepareError(ValueError):
    """Bad settings or an output folder that does not match them."""


@dataclasses.dataclass
class PrepareConfig:
    """How to turn videos into TFRecords. Sizes in pixels, rates in frames per second."""
    out_dir: str
    split: str = "train"             # which entries (VideoEntry.split) to write
    flow: str = "tvl1"               # tvl1 | farneback | dis | none
    fps: float | None = None         # resample to this rate (None: keep the video's rate)
    short_side: int | None = None    # resize so the short side is this (None: keep)
    max_frames: int | None = None    # keep at most this many frames (after resampling)
    num_shards: int = 8
    workers: int = 0                 # processes; 0 = os.cpu_count(); 1 = in this process
    jpeg_quality: int = 90
    shuffle_seed: int = 0            # order of videos across shards (mixes classes)
    progress_interval_s: float = 10.0  # seconds between progress lines when not a TTY
    extra_settings: dict = dataclasses.field(default_factory=dict)  # of other record layouts
    # Which shards this machine writes; not a setting: every host writes the same bytes.
    hosts: HostConfig = dataclasses.field(default_factory=HostConfig)

    def settings(self) -> dict:
        """What must match between a run and its resumption."""
        extra = {"extra": self.extra_settings} if self.extra_settings else {}
        return {"flow": self.flow, "fps": self.fps, "short_side": self.short_side,
                "max_frames": self.max_frames, "num_shards": self.num_shards,
                "jpeg_quality": self.jpeg_quality, "shuffle_seed": self.shuffle_seed, **extra}

    def validate(self) -> None:
        if (not self.split or self.split.startswith(".") or "/" in self.split
                or os.sep in self.split):
            raise PrepareError(f"--split={self.split!r} must be a plain name (train, val, ...): "
                               f"it names the shard files inside --out_dir")
        if self.flow not in FLOW_CHOICES:
            raise PrepareError(f"flow must be one of {FLOW_CHOICES}, got {self.flow!r}")
        if self.num_shards < 1:
            raise PrepareError(f"num_shards must be >= 1, got {self.num_shards}")
        if self.workers < 0:
            raise PrepareError(f"workers must be >= 0, got {self.workers}")
        if not 1 <= self.jpeg_quality <= 100:
            raise PrepareError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        for name in ("fps", "short_side", "max_frames"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise PrepareError(f"{name} must be positive, got {value}")
        try:
            self.hosts.validate(self.num_shards)
        except ValueError as e:
            raise PrepareError(str(e)) from None


@dataclasses.dataclass(frozen=True)
class Skipped:
    """Returned by a `to_examples` in place of a record it cannot write (e.g. an AVA keyframe
    past the video's end): reported in the summary's `skipped` with the video's id and path."""
    reason: str


@dataclasses.dataclass
class PrepareSummary:
    split: str
    videos_written: int = 0
    skipped: list = dataclasses.field(default_factory=list)  # [{video_id, path, reason}]
    frames: int = 0
    flow_pairs: int = 0
    bytes: int = 0
    seconds: float = 0.0
    shards_written: int = 0
    shards_reused: int = 0
    decode_s: float = 0.0   # summed over videos written in this run (worker time)
    flow_s: float = 0.0
    encode_s: float = 0.0
    write_s: float = 0.0    # parent: building protos and writing
    videos_this_run: int = 0
    label_counts: dict = dataclasses.field(default_factory=dict)
    # [{shard, changed: video ids}]: finished shards rewritten because their videos' labels,
    # annotations or (skipped videos) files changed since they were written
    rewritten: list = dataclasses.field(default_factory=list)

    def format(self) -> str:
        shards = self.shards_written + self.shards_reused
        lines = [(f"prepare {self.split}: {self.videos_written} videos written, "
                  f"{len(self.skipped)} skipped, {self.frames} frames, {self.flow_pairs} flow "
                  f"pairs, {self.bytes / 1e6:.1f} MB in {shards} shards ({self.shards_reused} "
                  f"reused from an earlier run), {self.seconds:.1f} s")]
        n = self.videos_this_run
        if n:
            lines.append(f"  per video (worker time): decode {self.decode_s / n:.3f} s, flow "
                         f"{self.flow_s / n:.3f} s, encode {self.encode_s / n:.3f} s; "
                         f"write {self.write_s / n:.3f} s")
        for s in self.skipped:
            lines.append(f"  skipped {s['video_id']} ({s['path']}): {s['reason']}")
        for r in self.rewritten:
            lines.append(f"  rewrote {r['shard']}: {len(r['changed'])} of its videos changed "
                         f"since it was written (label, annotations, or a skipped video's "
                         f"file), e.g. {r['changed'][:3]}")
        return "\n".join(lines)


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def assign_shards(entries: list[VideoEntry], num_shards: int, seed: int = 0
                  ) -> list[list[VideoEntry]]:
    """Deterministic video -> shard assignment: a seeded shuffle (so each shard mixes
    classes), then round robin. Depends only on the entries, num_shards and seed."""
    order = sorted(entries, key=lambda e: e.video_id)
    random.Random(seed).shuffle(order)
    return [order[k::num_shards] for k in range(num_shards)]


# ---- worker side (no TensorFlow) ----------------------------------------------------------

def _process_video(task: tuple) -> dict:
    """Decodes, computes flow and encodes one video. Never raises: failures are reported."""
    entry, cfg = task
    from d3d_tf.data import codec, flow, video  # here: keeps worker start light
    out = {"video_id": entry.video_id, "path": entry.path}
    try:
        t0 = time.perf_counter()
        if not os.path.exists(entry.path):
            raise video.VideoError(f"{entry.path}: file not found")
        frames = video.read_video(entry.path, fps=cfg.fps, short_side=cfg.short_side,
                                  max_frames=cfg.max_frames)
        fps = cfg.fps or video.probe_video(entry.path).fps
        t1 = time.perf_counter()
        flow_images = None
        if cfg.flow != "none":
            if len(frames) < 2:
                raise video.VideoError(f"{entry.path}: only {len(frames)} frame; flow needs 2")
            flow_q = flow.quantize_flow(flow.compute_flow(frames, method=cfg.flow))
        t2 = time.perf_counter()
        if cfg.flow != "none":
            flow_images = codec.encode_flow_png(flow_q)
        jpegs = codec.encode_jpeg_frames(frames, cfg.jpeg_quality)
        t3 = time.perf_counter()
    except Exception as e:  # noqa: BLE001  (a bad video must never abort the run)
        reason = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        out["error"] = reason.replace("\n", " ")
        return out
    out.update(jpegs=jpegs, flow_images=flow_images, fps=float(fps), height=frames.shape[1],
               width=frames.shape[2], decode_s=t1 - t0, flow_s=t2 - t1, encode_s=t3 - t2)
    return out


# ---- parent side ----------------------------------------------------------------------------

class _Progress:
    """Progress line with rate and ETA (`d3d_tf.core.progress`) on stderr; redraws in place on a
    TTY, else prints a line every `interval` seconds (so logs of non-interactive runs stay
    short)."""

    def __init__(self, label: str, total: int, interval: float, stream=None):
        self.label, self.total, self.interval = label, total, interval
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.progress = progress_lib.Progress(total)
        self.last = time.monotonic()
        self.done = self.skipped = self.printed = 0

    def update(self, ok: bool, force: bool = False) -> None:
        self.done += 1
        self.skipped += 0 if ok else 1
        self.progress.update()
        now = time.monotonic()
        if force or now - self.last >= (0.5 if self.tty else self.interval):
            self.last = now
            self._print(now)
            self.printed = self.done

    def _print(self, now: float, end: str = "") -> None:
        p = self.progress
        rate = "?" if p.rate() is None else f"{p.rate():.2f}"
        text = (f"[prepare {self.label}] {self.done}/{self.total} videos, {self.skipped} "
                f"skipped, {rate} videos/s, elapsed {progress_lib.hms(p.elapsed())}, ETA "
                f"{progress_lib.hms(p.eta())}")
        if self.tty:
            self.stream.write("\r" + text + end)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty or self.printed != self.done:
            self._print(time.monotonic(), end="\n")


def _write_json(path: str, data: dict) -> None:
    atomic.write_json(path, data, indent=1, sort_keys=True)


def _check_labels_file(out_dir: str, labels: list[str]) -> None:
    path = os.path.join(out_dir, "labels.txt")
    if os.path.exists(path):
        existing = preprocessing.read_labels(path) if os.path.getsize(path) else []
        if existing != labels:
            raise PrepareError(f"{path} exists with a different label list ({len(existing)} vs "
                               f"{len(labels)} classes); label ids would not match between "
                               f"splits. Use a new --out_dir.")


def _check_side_files(out_dir: str, side_files: dict) -> None:
    for name, text in side_files.items():
        path = os.path.join(out_dir, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                if f.read() != text:
                    raise PrepareError(f"{path} exists with other content than this run "
                                       f"writes (the records of that folder were prepared "
                                       f"from another one); use a new --out_dir")


def _write_out_dir_files(out_dir: str, labels: list[str], side_files: dict) -> None:
    """labels.txt and the side files, once every check has passed."""
    path = os.path.join(out_dir, "labels.txt")
    if labels and not os.path.exists(path):
        preprocessing.write_labels(path, labels)
    for name, text in side_files.items():
        path = os.path.join(out_dir, name)
        if not os.path.exists(path):
            atomic.write_text(path, text)


def prepare(entries: list[VideoEntry], labels: list[str], config: PrepareConfig,
            progress_stream=None, to_examples=None, video_key=None,
            side_files: dict | None = None) -> PrepareSummary:
    """Writes the `config.split` entries as `out_dir/{split}-KKKKK-of-NNNNN.tfrecord`.

    Args:
      entries: videos from a `datasets.read_*` reader; only those with split == config.split
        are written. Labels not in `labels` raise; label_name None means unlabeled (-1).
      labels: class names, index = label id.
      to_examples: `(entry, worker result, label ids) -> [SequenceExample | Skipped]` for
        other record layouts (e.g. `ava`: one record per keyframe); a `Skipped` item is counted
        and reported as a skipped item of that video. Default: one record per video.
      video_key: `entry -> JSON-able`: what `to_examples` puts into a video's records besides
        the video and its label (e.g. its keyframes' boxes); part of the shard's fingerprint.
      side_files: {file name: text} written into out_dir beside labels.txt (e.g. the AVA label
        map); an existing one with other content is refused before anything is written.
    Returns:
      The summary (also saved as `out_dir/{split}_info.json`).
    """
    start = time.monotonic()
    chosen, label_ids = select(entries, labels, config)
    # TensorFlow (for writing) is imported here, before the workers start, not when the first
    # video is done: otherwise the import delays the first shard and finished videos pile up.
    from d3d_tf.data import records  # noqa: F401
    with hold_split(config):
        return _prepare(chosen, labels, label_ids, config, start, progress_stream, to_examples,
                        video_key, side_files or {})


def select(entries: list[VideoEntry], labels: list[str], config: PrepareConfig
           ) -> tuple[list[VideoEntry], dict]:
    """Validates `config` and the labels: (the entries of `config.split`, {label: id})."""
    config.validate()
    chosen = [e for e in entries if e.split == config.split]
    if not chosen:
        splits = sorted({e.split for e in entries})
        raise PrepareError(f"no videos with split {config.split!r}; the input has {splits}")
    label_ids = {name: i for i, name in enumerate(labels)}
    for e in chosen:
        if e.label_name is not None and e.label_name not in label_ids:
            raise PrepareError(f"video {e.video_id} ({e.path}) has label {e.label_name!r} "
                               f"which is not in the label list")
    return chosen, label_ids


@contextlib.contextmanager
def hold_split(config: PrepareConfig):
    """The split's lock in `out_dir/.prepare/`: two runs on one split would write the same
    temporary shard files."""
    state_dir = os.path.join(config.out_dir, STATE_DIR)
    os.makedirs(state_dir, exist_ok=True)
    with run_lock.hold(state_dir, config.hosts.lock_name(config.split),
                       what=f"prepare of split {config.split!r}"):
        try:
            config.hosts.check_other_runs(state_dir, config.split)
        except ValueError as e:
            raise PrepareError(str(e)) from None
        yield


def check_out_dir(config: PrepareConfig, labels: list[str], side_files: dict | None = None
                  ) -> None:
    """Refuses an out_dir whose labels.txt, side files or shard count differ (writes nothing:
    `_prepare` writes labels.txt and the side files once the shards' plan is checked too)."""
    _check_labels_file(config.out_dir, labels)
    _check_side_files(config.out_dir, side_files or {})
    _check_no_other_shard_set(config)


def plan(config: PrepareConfig, shards: list[list[VideoEntry]], chosen: list[VideoEntry],
         label_ids: dict, video_key=None, rewritten: list | None = None
         ) -> tuple[list[int], list[dict]]:
    """(this host's shards still to write, the sidecars of its finished shards). A finished
    shard whose fingerprint differs from what would be written now is to write again (appended
    to `rewritten` as {shard, changed video ids}); one written for another video list or other
    settings is refused."""
    pending, reused = [], []
    all_ids = {e.video_id for e in chosen}
    for k, shard_entries in enumerate(shards):
        if not config.hosts.owns(k):
            continue
        info = _finished_shard_info(config, k)
        if info is None:
            pending.append(k)
            continue
        _check_same_videos(config, k, info, shard_entries, all_ids)
        changed = _changed_videos(config, info, shard_entries, label_ids, video_key)
        if changed:
            pending.append(k)
            if rewritten is not None:
                rewritten.append({"shard": shard_name(config.split, k, config.num_shards),
                                  "changed": changed})
        else:
            reused.append(info)
    return pending, reused


def write_one_shard(config: PrepareConfig, k: int, shard_entries: list[VideoEntry],
                    label_ids: dict) -> dict:
    """Shard k from its videos, all in this process (one unit of work of a distributed
    engine, `prepare_beam`); returns its sidecar. A finished shard of the same fingerprint is
    kept as it is."""
    info = _finished_shard_info(config, k)
    if info is not None and not _changed_videos(config, info, shard_entries, label_ids, None):
        return info  # written by an earlier attempt of this unit
    results = map(_process_video, [(e, config) for e in shard_entries])
    progress = _Progress(config.split, len(shard_entries), math.inf, io.StringIO())
    return _write_shard(config, k, shard_entries, results, label_ids, progress,
                        PrepareSummary(split=config.split))


def _prepare(chosen, labels, label_ids, config, start, progress_stream,
             to_examples, video_key, side_files) -> PrepareSummary:
    check_out_dir(config, labels, side_files)
    shards = assign_shards(chosen, config.num_shards, config.shuffle_seed)
    summary = PrepareSummary(split=config.split)
    pending, reused = plan(config, shards, chosen, label_ids, video_key, summary.rewritten)
    _write_out_dir_files(config.out_dir, labels, side_files)
    for info in reused:
        summary.shards_reused += 1
        _add_shard_info(summary, info)
    total = sum(len(shards[k]) for k in pending)
    progress = _Progress(config.split, total, config.progress_interval_s, progress_stream)
    tasks = [(e, config) for k in pending for e in shards[k]]
    results = iter(())
    pool = None
    if tasks:
        workers = min(config.workers or os.cpu_count() or 1, len(tasks))
        if workers > 1:
            # spawn, not fork: the parent has TensorFlow's threads running.
            pool = multiprocessing.get_context("spawn").Pool(workers)
            results = pool.imap(_process_video, tasks, chunksize=1)
        else:
            results = map(_process_video, tasks)
    try:
        for k in pending:
            info = _write_shard(config, k, shards[k], results, label_ids, progress, summary,
                                to_examples, video_key)
            summary.shards_written += 1
            _add_shard_info(summary, info)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    if total:
        progress.finish()
    summary.seconds = time.monotonic() - start
    if config.hosts.shared:
        return summary  # the finishing one-host run writes what needs every shard
    _write_json(os.path.join(config.out_dir, f"{config.split}_info.json"), {
        "split": config.split, "labels": labels, "settings": config.settings(),
        "file_pattern": f"{config.split}-*-of-{config.num_shards:05d}.tfrecord",
        **{k: v for k, v in dataclasses.asdict(summary).items() if k != "split"}})
    if not summary.videos_written:
        reasons = "; ".join(f"{s['video_id']}: {s['reason']}" for s in summary.skipped[:3])
        raise PrepareError(f"every video of split {config.split!r} was skipped "
                           f"({len(summary.skipped)} videos, e.g. {reasons}): the shards in "
                           f"{config.out_dir} hold no records")
    return summary


def _check_no_other_shard_set(config: PrepareConfig) -> None:
    """Refuses an out_dir that holds shards of this split with another shard count: both sets
    would match `split-*.tfrecord` and every video would be read twice."""
    pattern = os.path.join(glob.escape(config.out_dir), f"{config.split}-*-of-*.tfrecord")
    own = f"-of-{config.num_shards:05d}.tfrecord"
    other = sorted(f for f in glob.glob(pattern) if not f.endswith(own))
    if other:
        count = other[0].rsplit("-of-", 1)[1].split(".")[0].lstrip("0") or "0"
        raise PrepareError(f"{config.out_dir} already holds {config.split!r} shards of another "
                           f"--num_shards ({os.path.basename(other[0])}: {count} shards); "
                           f"rerun with --num_shards={count}, or use a new --out_dir (both "
                           f"sets would match {config.split}-*.tfrecord and every video "
                           f"would be read twice)")


def _check_same_videos(config: PrepareConfig, k: int, info: dict, entries: list,
                       all_ids: set) -> None:
    """Refuses to reuse a finished shard whose videos differ from what the current video list
    assigns to it (the list changed: reuse would duplicate some videos and drop others)."""
    stored = set(info.get("video_ids", [])) | {s["video_id"] for s in info.get("skipped", [])}
    wanted = {e.video_id for e in entries}
    if stored != wanted:
        gone = sorted(stored - all_ids)
        shard = os.path.join(config.out_dir, shard_name(config.split, k, config.num_shards))
        raise PrepareError(f"{shard} was written for another video list ({len(stored)} videos, "
                           f"{len(gone)} no longer listed, e.g. {gone[:3]}; the list now "
                           f"assigns it {len(wanted)} videos, {len(wanted - stored)} others): "
                           f"use a new --out_dir, or delete the {config.split} shards and "
                           f"{STATE_DIR}/ to rewrite them")


def _video_made_from(entry: VideoEntry, label_ids: dict, video_key, skipped: bool) -> str:
    """The fingerprint of what goes into a video's records besides the video itself: its
    label, `video_key(entry)`, and for a skipped video its file's identity (so a fixed file is
    tried again)."""
    made_from = {"label_name": entry.label_name,
                 "label": -1 if entry.label_name is None else label_ids[entry.label_name]}
    if video_key is not None:
        made_from["records"] = video_key(entry)
    if skipped:
        made_from["file"] = fingerprint.file_identity(entry.path)
    return fingerprint.key(made_from)


def _shard_made_from(config: PrepareConfig, videos: dict) -> dict:
    return {"settings": config.settings(), "videos": videos}


def _changed_videos(config: PrepareConfig, info: dict, entries: list, label_ids: dict,
                    video_key) -> list[str]:
    """Ids of the shard's videos whose fingerprint differs from the stored one ([] when the
    shard can be reused; every id for a sidecar without fingerprint)."""
    skipped = {s["video_id"] for s in info.get("skipped", [])}
    videos = {e.video_id: _video_made_from(e, label_ids, video_key, e.video_id in skipped)
              for e in entries}
    if fingerprint.matches(info, _shard_made_from(config, videos)):
        return []
    stored = (info.get("made_from") or {}).get("videos") or {}
    return sorted(v for v, k in videos.items() if stored.get(v) != k) or sorted(videos)


def _state_path(config: PrepareConfig, k: int) -> str:
    name = shard_name(config.split, k, config.num_shards)
    return os.path.join(config.out_dir, STATE_DIR, name.replace(".tfrecord", ".json"))


def _finished_shard_info(config: PrepareConfig, k: int) -> dict | None:
    """The sidecar of shard k if the shard is complete, else None (shard must be written)."""
    shard = os.path.join(config.out_dir, shard_name(config.split, k, config.num_shards))
    state = _state_path(config, k)
    if not (os.path.exists(shard) and os.path.exists(state)):
        return None
    with open(state, encoding="utf-8") as f:
        info = json.load(f)
    if info.get("settings") != config.settings():
        raise PrepareError(f"{shard} was written with other settings {info.get('settings')} "
                           f"than now {config.settings()}; use a new --out_dir or delete the "
                           f"old shards")
    return info


def _add_shard_info(summary: PrepareSummary, info: dict) -> None:
    summary.videos_written += info["videos"]
    summary.skipped.extend(info["skipped"])
    summary.frames += info["frames"]
    summary.flow_pairs += info["flow_pairs"]
    summary.bytes += info["bytes"]
    for name, count in info["label_counts"].items():
        summary.label_counts[name] = summary.label_counts.get(name, 0) + count


def _write_shard(config, k, shard_entries, results, label_ids, progress, summary,
                 to_examples=None, video_key=None) -> dict:
    from d3d_tf.data import records  # here: TF only in the parent
    path = os.path.join(config.out_dir, shard_name(config.split, k, config.num_shards))
    # An earlier shard under this name (stale, or whose sidecar was deleted) goes first: the new
    # sidecar is written before the rename, and must never sit beside the old records.
    fingerprint.discard(path, _state_path(config, k))
    videos = {}
    info = {"shard": os.path.basename(path), "settings": config.settings(), "videos": 0,
            "video_ids": [], "skipped": [], "frames": 0, "flow_pairs": 0, "label_counts": {}}
    writer = records.ShardWriter(path)
    try:
        for entry in shard_entries:
            r = next(results)
            assert r["video_id"] == entry.video_id, "results out of order"
            if "error" in r:
                info["skipped"].append({"video_id": entry.video_id, "path": entry.path,
                                        "reason": r["error"]})
                videos[entry.video_id] = _video_made_from(entry, label_ids, video_key, True)
                progress.update(ok=False)
                continue
            videos[entry.video_id] = _video_made_from(entry, label_ids, video_key, False)
            t0 = time.perf_counter()
            label = -1 if entry.label_name is None else label_ids[entry.label_name]
            if to_examples is None:
                examples = [records.build_sequence_example(
                    video_id=entry.video_id, label=label, label_name=entry.label_name,
                    fps=r["fps"], height=r["height"], width=r["width"], jpeg_frames=r["jpegs"],
                    flow_images=r["flow_images"])]
            else:
                examples = to_examples(entry, r, label_ids)
            written = 0
            for example in examples:
                if isinstance(example, Skipped):
                    info["skipped"].append({"video_id": entry.video_id, "path": entry.path,
                                            "reason": example.reason})
                    continue
                writer.write(example)
                written += 1
            if examples and not written:  # every item of the video was skipped
                progress.update(ok=False)
                continue
            summary.write_s += time.perf_counter() - t0
            summary.decode_s += r["decode_s"]
            summary.flow_s += r["flow_s"]
            summary.encode_s += r["encode_s"]
            summary.videos_this_run += 1
            info["videos"] += 1
            info["video_ids"].append(entry.video_id)
            info["frames"] += len(r["jpegs"])
            info["flow_pairs"] += len(r["flow_images"] or ())
            name = entry.label_name or ""
            info["label_counts"][name] = info["label_counts"].get(name, 0) + 1
            progress.update(ok=True)
        writer.close_partial()
    except BaseException:
        writer.abort()
        raise
    info["bytes"] = os.path.getsize(writer.tmp_path)
    # Sidecar first, then the rename: a final-named shard always has its sidecar.
    fingerprint.write(_state_path(config, k), _shard_made_from(config, videos), **info)
    writer.commit()
    return info
