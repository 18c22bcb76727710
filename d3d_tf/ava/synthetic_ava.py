"""The built-in multi-actor dataset: several moving objects per video, AVA-format annotations.

Each video shows ``num_actors`` textured objects ("actors") over a still background. Time is
cut into one-second segments centred on the keyframes (t = 1, 2, ... s, AVA's 1 fps
keyframes); in every segment each actor performs one motion of
:data:`d3d_tf.data.synthetic.CLASS_NAMES` (the first ``num_classes``), drawn at random among
those that keep it inside the frame. The label of an actor at a keyframe is its motion in that
segment; its box is the exact bounding box of its drawn pixels (alpha >= 0.5) in the keyframe.
Objects do not wrap around the borders (unlike the single-object dataset), so boxes are exact.

:func:`generate_dataset` writes under ``out_dir``:

* ``videos/{video_id}.mp4``
* ``ava_{train,val}_v2.2.csv``: ``video_id,timestamp,x1,y1,x2,y2,action_id,person_id``
  (boxes normalized to [0, 1], action ids from 1), one row per (actor, keyframe, action)
* ``ava_action_list_v2.2.pbtxt``: the label map (``item { name: "..." id: N }``)
* ``ava_{train,val}_excluded_timestamps_v2.2.csv``: ``video_id,timestamp`` of keyframes whose
  ground truth is withheld (AVA's excluded timestamps; their rows are not in the CSVs)
* ``person_boxes_{train,val}.csv``: what a person detector would output, in the same layout
  with an empty action and a score: every actor's box jittered (score 0.7-1) plus
  ``false_proposals`` boxes on the background (score 0.3-0.7) per keyframe, excluded ones too.

Deterministic in the config (per-video seeds), like :mod:`d3d_tf.data.synthetic`.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import multiprocessing
import os

import cv2
import numpy as np
from absl import logging

from d3d_tf.ava import ava
from d3d_tf.data import synthetic, video

LABEL_MAP_FILE = "ava_action_list_v2.2.pbtxt"
SPLITS = ("train", "val")


def annotation_file(split: str) -> str:
    return f"ava_{split}_v2.2.csv"


def excluded_file(split: str) -> str:
    return f"ava_{split}_excluded_timestamps_v2.2.csv"


def proposals_file(split: str) -> str:
    return f"person_boxes_{split}.csv"


@dataclasses.dataclass(frozen=True)
class MultiActorConfig:
    """How to make the multi-actor dataset. Sizes in pixels, speeds in pixels per frame.

    Attributes:
      num_videos: videos in total; the last ``round(num_videos * val_fraction)`` are ``val``.
      num_actors: actors per video.
      num_classes: the first N motion classes of ``synthetic.CLASS_NAMES``.
      duration_s: video length, seconds; keyframes at 1 .. duration_s - 1.
      fps: frame rate.
      size: frame height = width.
      actor_size: (min, max) actor diameter, fraction of ``size``.
      speed: (min, max) translation speed.
      excluded_fraction: fraction of each split's keyframes listed as excluded (rounded up;
        their ground truth is withheld).
      false_proposals: background boxes added to the person-box file per keyframe.
      proposal_jitter: proposal box = true box with centre and size moved by up to this
        fraction of its width / height.
    """

    num_videos: int = 12
    num_actors: int = 2
    num_classes: int = 4
    duration_s: int = 4
    fps: float = 8.0
    size: int = 64
    val_fraction: float = 0.25
    actor_size: tuple[float, float] = (0.22, 0.3)
    speed: tuple[float, float] = (1.0, 1.5)
    excluded_fraction: float = 0.1
    false_proposals: int = 1
    proposal_jitter: float = 0.08
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.num_classes <= len(synthetic.CLASS_NAMES):
            raise ValueError(f"num_classes must be in 1..{len(synthetic.CLASS_NAMES)}, "
                             f"got {self.num_classes}")
        for name, lo in (("num_videos", 1), ("num_actors", 1), ("duration_s", 2),
                         ("size", 16)):
            if getattr(self, name) < lo:
                raise ValueError(f"{name} must be >= {lo}, got {getattr(self, name)}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        for name in ("val_fraction", "excluded_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("actor_size", "speed"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be a (min, max) range with 0 < min <= max, "
                                 f"got {(lo, hi)}")
        if self.actor_size[1] >= 0.5:
            raise ValueError(f"actor_size must stay below 0.5 of the frame, got "
                             f"{self.actor_size}")
        if self.false_proposals < 0:
            raise ValueError(f"false_proposals must be >= 0, got {self.false_proposals}")

    @property
    def class_names(self) -> tuple[str, ...]:
        return synthetic.CLASS_NAMES[: self.num_classes]

    @property
    def num_frames(self) -> int:
        return round(self.duration_s * self.fps)

    @property
    def keyframes(self) -> tuple[int, ...]:
        """Keyframe timestamps, seconds."""
        return tuple(range(1, self.duration_s))

    def split_of(self, index: int) -> str:
        num_val = round(self.num_videos * self.val_fraction)
        return "val" if index >= self.num_videos - num_val else "train"


def video_id(index: int) -> str:
    return f"synth{index:04d}"


@dataclasses.dataclass
class _Actor:
    sprite: np.ndarray     # float32 [S,S,3]
    mask: np.ndarray       # float32 [S,S] in [0, 1]
    diameter: float        # px at scale 1
    center: np.ndarray     # (x, y) px, updated while rendering
    angle: float = 0.0
    radius_scale: float = 1.0


def _segment_of(frame: int, config: MultiActorConfig) -> int:
    """Index of the keyframe segment of `frame` (segment k is centred on keyframe k+1)."""
    return min(max(math.floor(frame / config.fps - 0.5), 0), len(config.keyframes) - 1)


def _allowed(name: str, actor: _Actor, frames: int, speed: float, size: int) -> bool:
    """True if `actor` stays in the frame (and at a sane size) doing `name` for `frames`."""
    r = actor.diameter * actor.radius_scale / 2 + 1
    travel = speed * frames
    x, y = actor.center
    if name == "move_left":
        return x - travel - r >= 0
    if name == "move_right":
        return x + travel + r <= size
    if name == "move_up":
        return y - travel - r >= 0
    if name == "move_down":
        return y + travel + r <= size
    if name == "grow":
        grown = r + travel / 2
        return actor.radius_scale < 1.25 and min(x, y, size - x, size - y) >= grown
    if name == "shrink":
        return actor.radius_scale > 0.8
    return True  # rotations


def render_video(config: MultiActorConfig, index: int):
    """Renders video `index`.

    Returns (frames uint8 [N,size,size,3], labels int [num_actors, num_keyframes] (class
    indices), boxes float [num_actors, num_keyframes, 4] (x1, y1, x2, y2 in [0, 1])).
    """
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1729, index]))
    s, n = config.size, config.num_frames
    bg_color = rng.uniform(40, 215, 3).astype(np.float32)
    bg = synthetic._periodic_texture(rng, s, sigma=rng.uniform(3.0, 6.0), color=bg_color,
                                     contrast=rng.uniform(5.0, 15.0))
    actors = []
    # Start positions on a jittered grid so that actors rarely overlap at first.
    cells = np.arange(4)
    rng.shuffle(cells)
    for a in range(config.num_actors):
        diameter = rng.uniform(*config.actor_size) * s
        sprite_size = math.ceil(diameter * 1.3) | 1  # room to grow
        sprite = synthetic._periodic_texture(
            rng, sprite_size, sigma=rng.uniform(2.0, 3.0) * sprite_size / diameter,
            color=rng.uniform(30, 225, 3).astype(np.float32), contrast=rng.uniform(40, 60))
        mask, _ = synthetic._shape_mask(rng, sprite_size)
        cell = cells[a % 4]
        center = (np.array([cell % 2, cell // 2]) + 0.5) * s / 2 + rng.uniform(-0.1, 0.1, 2) * s
        actors.append(_Actor(sprite, mask, diameter, center, angle=rng.uniform(0, 360)))
    seg_frames = round(config.fps)
    num_seg = len(config.keyframes)
    labels = np.zeros((config.num_actors, num_seg), np.int64)
    speeds = rng.uniform(*config.speed, size=(config.num_actors, num_seg))
    boxes = np.zeros((config.num_actors, num_seg, 4), np.float32)
    keyframe_index = {round(t * config.fps): k for k, t in enumerate(config.keyframes)}
    frames = np.empty((n, s, s, 3), np.uint8)
    segment = -1
    for t in range(n):
        if _segment_of(t, config) != segment:
            segment = _segment_of(t, config)
            remaining = (n - t) if segment == num_seg - 1 else seg_frames
            for a, actor in enumerate(actors):
                options = [c for c, name in enumerate(config.class_names)
                           if _allowed(name, actor, remaining, speeds[a, segment], s)]
                labels[a, segment] = rng.choice(options) if options else 0
        frame = bg.copy()
        for a, actor in enumerate(actors):
            name = config.class_names[labels[a, segment]]
            # One frame of motion (the pose helper takes dt in frames).
            dx, dy, dangle, dradius = synthetic._object_pose(
                name, 1.0, speeds[a, segment], 6.0, speeds[a, segment] / 2)
            if t > 0:
                actor.center = actor.center + [dx, dy]
                actor.angle += dangle
                actor.radius_scale += 2 * dradius / actor.diameter
            size = actor.sprite.shape[0]
            scale = actor.diameter * actor.radius_scale / size
            sc = (size - 1) / 2.0
            m = cv2.getRotationMatrix2D((sc, sc), actor.angle, scale)
            m[:, 2] += (actor.center[0] - sc, actor.center[1] - sc)
            alpha = cv2.warpAffine(actor.mask, m, (s, s), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            color = cv2.warpAffine(actor.sprite, m, (s, s), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
            frame = frame + alpha[..., None] * (color - frame)
            if t in keyframe_index:
                ys, xs = np.nonzero(alpha >= 0.5)
                if len(xs):
                    boxes[a, keyframe_index[t]] = (xs.min() / s, ys.min() / s,
                                                   (xs.max() + 1) / s, (ys.max() + 1) / s)
        frames[t] = np.clip(np.round(frame), 0, 255).astype(np.uint8)
    return frames, labels, boxes


def _write_video(args) -> tuple:
    config, index, out_dir = args
    frames, labels, boxes = render_video(config, index)
    video.write_video(os.path.join(out_dir, "videos", f"{video_id(index)}.mp4"), frames,
                      config.fps)
    return index, labels, boxes


def _jitter(rng, box, amount):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2 + rng.uniform(-amount, amount) * w, \
        (y1 + y2) / 2 + rng.uniform(-amount, amount) * h
    w, h = w * (1 + rng.uniform(-amount, amount)), h * (1 + rng.uniform(-amount, amount))
    return np.clip([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 0.0, 1.0)


def _fmt(box) -> list[str]:
    return [f"{v:.3f}" for v in box]


def generate_dataset(config: MultiActorConfig, out_dir: str, num_workers: int = 1) -> dict:
    """Writes the videos and AVA files (module doc) under `out_dir`; returns {name: path}."""
    os.makedirs(os.path.join(out_dir, "videos"), exist_ok=True)
    jobs = [(config, i, out_dir) for i in range(config.num_videos)]
    logging.info("Writing %d multi-actor videos (%d actors, %d classes, %d frames of %dx%d) "
                 "to %s", config.num_videos, config.num_actors, config.num_classes,
                 config.num_frames, config.size, config.size, out_dir)
    if num_workers > 1:
        with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
            results = sorted(pool.imap_unordered(_write_video, jobs))
    else:
        results = [_write_video(job) for job in jobs]
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 4242]))
    rows = {s: [] for s in SPLITS}
    excluded = {s: [] for s in SPLITS}
    proposals = {s: [] for s in SPLITS}
    for split in SPLITS:
        # ceil(fraction * keyframes) excluded keyframes per split (at least one if > 0).
        keys = [(video_id(i), ts) for i in range(config.num_videos)
                if config.split_of(i) == split for ts in config.keyframes]
        count = math.ceil(config.excluded_fraction * len(keys))
        chosen = sorted(rng.choice(len(keys), size=count, replace=False)) if count else []
        excluded[split] = [[keys[j][0], f"{keys[j][1]:04d}"] for j in chosen]
    for index, labels, boxes in results:
        vid, split = video_id(index), config.split_of(index)
        for k, ts in enumerate(config.keyframes):
            is_excluded = [vid, f"{ts:04d}"] in excluded[split]
            for a in range(config.num_actors):
                if not is_excluded:
                    rows[split].append([vid, f"{ts:04d}", *_fmt(boxes[a, k]),
                                        str(labels[a, k] + 1), str(a)])
                proposals[split].append([vid, f"{ts:04d}",
                                         *_fmt(_jitter(rng, boxes[a, k], config.proposal_jitter)),
                                         "", f"{rng.uniform(0.7, 1.0):.4f}"])
            for _ in range(config.false_proposals):
                w, h = rng.uniform(*config.actor_size, size=2)
                x1, y1 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
                proposals[split].append([vid, f"{ts:04d}", *_fmt([x1, y1, x1 + w, y1 + h]), "",
                                         f"{rng.uniform(0.3, 0.7):.4f}"])
    paths = {"label_map": os.path.join(out_dir, LABEL_MAP_FILE),
             "video_dir": os.path.join(out_dir, "videos")}
    ava.write_label_map(paths["label_map"], range(1, config.num_classes + 1),
                        config.class_names)
    for split in SPLITS:
        for key, name, data in (("annotations", annotation_file(split), rows[split]),
                                ("excluded", excluded_file(split), excluded[split]),
                                ("proposals", proposals_file(split), proposals[split])):
            path = os.path.join(out_dir, name)
            with open(path, "w", newline="", encoding="utf-8") as f:
                csv.writer(f, lineterminator="\n").writerows(data)
            paths[f"{split}_{key}"] = path
    logging.info("Wrote AVA-format annotations to %s", out_dir)
    return paths
