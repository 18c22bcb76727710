"""Precomputes DistInit's teacher logits for every stored frame and writes them into a copy of
the shards (`d3d_tf.distinit.teacher_logits`), so that a training step costs only the student.

    precompute(TargetsConfig(records="data/u/train-*.tfrecord", out_dir="data/u_t",
                             teachers=("ResNet50",)))

Each frame goes to the teachers whole (resized to the teacher's input size), while on-the-fly
targets see the clip's crop (and flip): on uncropped, unflipped clips both give the same logits.

Beside each written shard, `out_dir/.distinit_targets/<shard>.json` records what made it
(`d3d_tf.core.fingerprint`: the teachers' sources and file contents, their weights, the RGB range,
the input shard's size and time). A rerun reuses a shard only when that record is what it would
write now; one whose input shard changed is recomputed; one made by other teachers or settings
is refused before anything is written (its targets would mix with the new ones).
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from d3d_tf.core import atomic, config_flags, fingerprint
from d3d_tf.core import progress as progress_lib
from d3d_tf.data import records
from d3d_tf.distinit import config, teacher_logits
from d3d_tf.distinit import task as distinit

TargetsConfig = config.TargetsConfig  # the flags of python -m d3d_tf.distinit_targets


def frame_logits(teachers, frames_uint8: np.ndarray, rgb_range: str, batch: int) -> np.ndarray:
    """Concatenated teacher logits float32 `[N,D]` of uint8 frames `[N,H,W,3]`."""
    x = frames_uint8.astype(np.float32)
    x = x / 127.5 - 1.0 if rgb_range == "[-1,1]" else x / 255.0
    rows = []
    for i in range(0, len(x), batch):
        chunk = tf.constant(x[i:i + batch])
        rows.append(np.concatenate([t.frame_logits(chunk).numpy() for t in teachers], -1))
    return np.concatenate(rows)


def made_from(config: TargetsConfig, source_shard: str) -> dict:
    """What makes the labelled copy of `source_shard` (`d3d_tf.core.fingerprint`)."""
    return {"teachers": distinit.teachers_made_from(config.teachers, config.teacher_weights),
            "rgb_range": config.rgb_range,
            "input": {"name": os.path.basename(source_shard),
                      **fingerprint.file_identity(source_shard)}}


def _to_write(config: TargetsConfig, files: list[str], log) -> list[bool]:
    """Per input shard: whether its copy must be (re)written. Refuses, before anything is
    written, a copy that other teachers or settings made."""
    todo = []
    for path in files:
        out = os.path.join(config.out_dir, os.path.basename(path))
        if not os.path.exists(out):
            todo.append(True)
            continue
        stored = fingerprint.read(fingerprint.sidecar_path(out, teacher_logits.STATE_DIR))
        changed = fingerprint.differs(stored, made_from(config, path))
        if stored is None:
            raise ValueError(f"{out} exists without a record of the teachers that made it "
                             f"({teacher_logits.STATE_DIR}/ is missing it): use another "
                             f"--out_dir, or delete {out} to compute it again")
        if set(changed) - {"input"}:
            old = stored.get("made_from", {})
            raise ValueError(
                f"{out} holds targets of other "
                f"{' and '.join(c for c in changed if c != 'input')} (teachers "
                f"{[t.get('source') for t in old.get('teachers', [])]}, rgb range "
                f"{old.get('rgb_range')}) than --teachers={list(config.teachers)} "
                f"--teacher_weights={list(config.teacher_weights)} --rgb_range="
                f"{config.rgb_range}: use another --out_dir (the targets would mix), or delete "
                f"it to compute it again")
        if changed:
            log(f"{out}: {path} changed since its targets were computed; computing them again")
        todo.append(bool(changed))
    return todo


def precompute(config: TargetsConfig, *, log=print, progress_every_s: float = 30.0
               ) -> list[str]:
    """Writes `out_dir/<shard name>` with teacher logits for every frame; returns the paths.
    A shard already in `out_dir` is reused when its fingerprint matches (reruns resume).
    Logs videos done, rate and ETA (`d3d_tf.core.progress`) after the first video, then every
    `progress_every_s` seconds, and at the end."""
    config_flags.check(config)
    files = sorted(tf.io.gfile.glob(config.records)) if config.records else []
    if not files:
        raise FileNotFoundError(f"--records: no TFRecord files match {config.records!r}")
    if len({os.path.basename(f) for f in files}) < len(files):
        raise ValueError(f"--records={config.records!r} matches shards of one name in several "
                         "folders; their copies in --out_dir would overwrite each other")
    todo = _to_write(config, files, log)
    teachers = distinit.load_teachers(config.teachers, config.teacher_weights,
                                      rgb_range=config.rgb_range)
    names = list(config.teachers)
    classes = [t.num_classes for t in teachers]
    os.makedirs(config.out_dir, exist_ok=True)
    labels = os.path.join(os.path.dirname(files[0]), "labels.txt")
    if os.path.isfile(labels):
        with open(labels, "rb") as f:
            atomic.write_bytes(os.path.join(config.out_dir, "labels.txt"), f.read())
    written = []
    progress = progress_lib.Progress(sum(records.count_framed(f)[0] for f, needed in
                                         zip(files, todo) if needed))
    for path, needed in zip(files, todo):
        out = os.path.join(config.out_dir, os.path.basename(path))
        written.append(out)
        if not needed:
            continue
        sidecar = fingerprint.sidecar_path(out, teacher_logits.STATE_DIR)
        # The stale copy goes first: its new record is written before the rename.
        fingerprint.discard(out, sidecar)
        writer = records.ShardWriter(out)
        count = 0
        try:
            for serialized in records.read_records(path):
                frames = records.decode_example(serialized)["rgb"]
                example = tf.train.SequenceExample.FromString(serialized)
                logits = frame_logits(teachers, frames, config.rgb_range, config.batch_frames)
                writer.write(teacher_logits.add_to_example(example, logits, names, classes))
                count += 1
                progress.update()
                if progress.due(progress_every_s):
                    log(f"[distinit_targets] {progress.line('videos')}")
            writer.close_partial()
        except BaseException:
            writer.abort()
            raise
        fingerprint.write(sidecar, made_from(config, path), records=count, classes=classes)
        writer.commit()
        log(f"{out}: {count} videos, teacher logits {classes} per frame")
    return written
