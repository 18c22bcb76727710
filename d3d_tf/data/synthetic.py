"""The built-in synthetic motion dataset: the class is defined by motion alone (or, with
``shape_classes``, by the object's shape and its motion).

Each video shows one textured object over a textured (or, with `background_contrast=(0, 0)`,
plain) background that is either still or drifting slowly in a random direction. The class
is the object's motion (see :data:`CLASS_NAMES`): translation left / right / up / down,
rotation clockwise / counter-clockwise, growing (approach) or shrinking (recede). Everything
else is random and shared by all classes: background and object textures and colours, the object's
shape, size, orientation, position, the speed of its motion, the background drift.

Why a single frame does not tell the class:

* The frame is a torus: the object (and background) wrap around the borders, and the
  object's position is uniform over the frame, so its position is uniformly distributed
  in *every* frame, whatever the class.
* Orientation is uniform at every frame for both rotation directions.
* Trajectories are centered in time: the object has its random "reference" pose (size,
  position, angle) at the middle frame, so the distribution over all frames of any
  appearance statistic is the same for a class and its time-reversed twin (left/right,
  up/down, cw/ccw, grow/shrink). Only the object's size, seen at a known frame index
  near the start or end, leans towards grow vs shrink (small early means growing);
  a clip taken at a random temporal offset does not know its frame index.

Frames are rendered with numpy + OpenCV from per-video seeds derived from
``(seed, class index, video index)``, so generation is deterministic (the same seed gives
byte-identical frames) and can run in parallel. :func:`generate_dataset` writes mp4 files,
``manifest.csv`` (``path,label_name,split,shape``; paths relative to the manifest's folder;
``shape`` is the object's shape, an appearance label a single frame shows) and
``labels.txt`` (class names in class-index order).
"""
from __future__ import annotations

import csv
import dataclasses
import math
import multiprocessing
import os
import time

import cv2
import numpy as np
from absl import logging

from d3d_tf.data import video

CLASS_NAMES = (
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "rotate_clockwise",
    "rotate_counterclockwise",
    "grow",
    "shrink",
)

# The object shapes, in the order `_shape_mask` draws them; with `shape_classes` > 0 the shape is
# part of the label (an appearance attribute a single frame shows).
SHAPE_NAMES = ("ellipse", "rectangle", "triangle", "star")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """How to make the synthetic dataset.

    The defaults: 8 classes x 24 videos of 24 frames at 80x80 px on textured backgrounds.
    The demo (``configs/demo/synthetic.flags``) uses easier settings for RGB networks trained
    from scratch: 4 translation classes on a plain still background
    (``background_contrast=(0, 0)``, ``background_drift=0``) with coarse textures
    (``texture_scale=2``) and ``direction_jitter=30``: there a depth-0.25 RGB S3D-G trained
    with AdamW can learn the classes within 2400 steps, where with the defaults it stays at
    chance.

    Attributes:
      num_classes: use the first ``num_classes`` entries of :data:`CLASS_NAMES`.
      videos_per_class: videos per class (classes are balanced).
      num_frames: frames per video.
      size: frame height = width, pixels.
      fps: frame rate written into the files.
      test_fraction: fraction of each class's videos in the ``test`` split (the last
        indices of each class; the split is therefore deterministic and balanced).
      seed: base random seed.
      speed: (min, max) translation speed, pixels per frame.
      direction_jitter: translations move along the class's axis rotated by a per-video angle
        drawn uniformly from [-direction_jitter, direction_jitter] degrees (0 = exactly
        left / right / up / down). With jitter, some videos of a class lean towards a
        neighbouring class, as real actions do, and a teacher's logits say by how much.
      angular_speed: (min, max) rotation speed, degrees per frame.
      growth_speed: (min, max) speed at which the object's radius grows / shrinks, pixels
        per frame (the speed of its outline). Capped per video so that the radius stays
        >= 1/4 of its middle-frame value over the whole video.
      object_size: (min, max) object diameter at the middle frame, fraction of ``size``.
      wrap: True = the frame is a torus (the object's position is uniform in every frame and it
        wraps around the borders, often showing in pieces); False = the object lies wholly
        inside the frame at the middle frame and leaves it (no wrapping) when it moves past a
        border, so a frame shows the whole shape more often. Needs ``object_size`` max x
        ``size`` <= ``size`` - 2 pixels.
      background_color: None = a random RGB colour per video (so a frame's colours say
        nothing about its class); an (R, G, B) tuple in [0, 255] = that colour in every
        video. Networks trained for minutes from scratch did not learn the object's shape
        when both its colour and the background's are random (docs/distinit.md): one fixed
        background colour lets them.
      background_drift: max background speed, pixels per frame (half of the videos have
        a still background).
      background_contrast: (min, max) contrast of the background texture, grey levels
        (standard deviation of the texture's luminance); (0, 0) = a plain background.
      texture_scale: multiplies the grain size of every texture (background and object):
        larger = smoother textures, whose motion is easier to see for small 3D convs.
      shape_classes: 0 = the label is the motion alone and the object's shape is random; N > 0 =
        each class is one of the first N :data:`SHAPE_NAMES` doing one of the motions
        (``{shape}_{motion}``, shape-major: N * num_classes classes), so a single frame tells
        part of the label (the shape) and only the motion tells the rest, as "open a door" vs
        "close a door" do.
    """

    num_classes: int = 8
    videos_per_class: int = 24
    num_frames: int = 24
    size: int = 80
    fps: float = 25.0
    test_fraction: float = 0.25
    seed: int = 0
    speed: tuple[float, float] = (1.5, 3.0)
    direction_jitter: float = 0.0
    angular_speed: tuple[float, float] = (5.0, 9.0)
    growth_speed: tuple[float, float] = (0.7, 1.1)
    object_size: tuple[float, float] = (0.4, 0.55)
    wrap: bool = True
    background_color: tuple[float, float, float] | None = None
    background_drift: float = 0.75
    background_contrast: tuple[float, float] = (25.0, 45.0)
    texture_scale: float = 1.0
    shape_classes: int = 0

    def __post_init__(self):
        if not 1 <= self.num_classes <= len(CLASS_NAMES):
            raise ValueError(f"num_classes must be in 1..{len(CLASS_NAMES)}, "
                             f"got {self.num_classes}")
        if self.videos_per_class < 1:
            raise ValueError(f"videos_per_class must be >= 1, got {self.videos_per_class}")
        if self.num_frames < 2:
            raise ValueError(f"num_frames must be >= 2, got {self.num_frames}")
        if self.size < 16:
            raise ValueError(f"size must be >= 16 pixels, got {self.size}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        for name in ("speed", "angular_speed", "growth_speed", "object_size",
                     "background_contrast"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be a (min, max) range with 0 <= min <= max, "
                                 f"got {(lo, hi)}")
        if self.background_color is not None and (
                len(self.background_color) != 3 or
                not all(0 <= v <= 255 for v in self.background_color)):
            raise ValueError(f"background_color must be 3 values (R, G, B) in [0, 255], got "
                             f"{self.background_color}")
        if not self.wrap and self.object_size[1] * self.size > self.size - 2:
            raise ValueError(f"without wrap the object must fit in the frame: object_size max "
                             f"{self.object_size[1]} x size {self.size} > {self.size - 2} px")
        if not 0 <= self.direction_jitter < 45:
            raise ValueError(f"direction_jitter must be in [0, 45) degrees (45 would make "
                             f"neighbouring classes overlap), got {self.direction_jitter}")
        if self.background_drift < 0:
            raise ValueError(f"background_drift must be >= 0, got {self.background_drift}")
        if not self.texture_scale > 0:
            raise ValueError(f"texture_scale must be positive, got {self.texture_scale}")
        if not 0 <= self.shape_classes <= len(SHAPE_NAMES):
            raise ValueError(f"shape_classes must be in 0..{len(SHAPE_NAMES)}, "
                             f"got {self.shape_classes}")

    @property
    def motion_names(self) -> tuple[str, ...]:
        return CLASS_NAMES[: self.num_classes]

    @property
    def class_names(self) -> tuple[str, ...]:
        if not self.shape_classes:
            return self.motion_names
        return tuple(f"{shape}_{motion}" for shape in SHAPE_NAMES[: self.shape_classes]
                     for motion in self.motion_names)

    def class_attributes(self, class_index: int) -> tuple[str, int | None]:
        """(motion name, shape index or None for a random shape) of class ``class_index``."""
        if not 0 <= class_index < len(self.class_names):
            raise ValueError(f"class_index must be in [0, {len(self.class_names)}), "
                             f"got {class_index}")
        if not self.shape_classes:
            return CLASS_NAMES[class_index], None
        shape, motion = divmod(class_index, self.num_classes)
        return CLASS_NAMES[motion], shape


def _periodic_texture(rng: np.random.Generator, size: int, sigma: float,
                      color: np.ndarray, contrast: float) -> np.ndarray:
    """Smoothed random colour noise that tiles seamlessly, float32 [size,size,3] in [0,255].

    Filtering white noise with a Gaussian in the Fourier domain makes the texture periodic,
    so it can wrap around the frame borders without a seam.
    """
    noise = rng.standard_normal((size, size, 3)).astype(np.float32)
    freq = np.fft.fftfreq(size)
    gauss = np.exp(-2.0 * (np.pi * sigma) ** 2 * (freq[:, None] ** 2 + freq[None, :] ** 2))
    tex = np.real(np.fft.ifft2(np.fft.fft2(noise, axes=(0, 1)) * gauss[..., None], axes=(0, 1)))
    tex = tex / (tex.std() + 1e-6)
    # A coloured base plus mostly-luminance texture (shared across channels) with some
    # colour variation: enough gray-level structure for TV-L1 to track.
    lum = tex.mean(axis=-1, keepdims=True)
    tex = color + contrast * (0.8 * lum + 0.4 * (tex - lum))
    return np.clip(tex, 0, 255).astype(np.float32)


def _shape_mask(rng: np.random.Generator, size: int,
                kind: int | None = None) -> tuple[np.ndarray, int]:
    """An anti-aliased shape (:data:`SHAPE_NAMES`; ``kind`` None = a random one), float32
    [size,size] in [0,1], drawn centered in the square and touching its inscribed circle at
    most; and its kind."""
    mask = np.zeros((size, size), np.uint8)
    c, r = (size - 1) / 2.0, size / 2.0 - 1
    drawn = rng.integers(4)  # drawn even when given, so the draws after it do not move
    kind = int(drawn if kind is None else kind)
    shift = 4  # fixed-point bits for sub-pixel, anti-aliased drawing
    if kind == 0:  # ellipse
        axes = (round(r * (1 << shift)), round(r * rng.uniform(0.55, 1.0) * (1 << shift)))
        cv2.ellipse(mask, (round(c * (1 << shift)), round(c * (1 << shift))), axes, 0, 0, 360,
                    255, -1, cv2.LINE_AA, shift)
    else:
        if kind == 1:  # rectangle (a 4-gon with corners on the circle)
            a = rng.uniform(0.5, 1.1)
            angles = np.array([a, np.pi - a, np.pi + a, -a])
            radii = np.full(4, r)
        elif kind == 2:  # triangle
            angles = np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.3, 0.3, 3)
            radii = np.full(3, r)
        else:  # star
            n = int(rng.integers(4, 7))
            angles = np.arange(2 * n) * np.pi / n
            radii = np.where(np.arange(2 * n) % 2 == 0, r, r * rng.uniform(0.45, 0.65))
        pts = np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], axis=-1)
        cv2.fillPoly(mask, [np.round(pts * (1 << shift)).astype(np.int32)], 255,
                     cv2.LINE_AA, shift)
    return mask.astype(np.float32) / 255.0, kind


def _object_pose(class_name: str, dt: float, speed: float, omega: float, growth: float,
                 jitter: float = 0.0):
    """(dx, dy, dangle_deg, dradius) of the object at ``dt`` frames from the middle frame.

    Image coordinates: x right, y down; a positive OpenCV angle turns counter-clockwise
    as seen on screen. Translations are rotated by ``jitter`` degrees (counter-clockwise
    on screen).
    """
    dx = dy = dangle = dradius = 0.0
    if class_name == "move_left":
        dx = -speed * dt
    elif class_name == "move_right":
        dx = speed * dt
    elif class_name == "move_up":
        dy = -speed * dt
    elif class_name == "move_down":
        dy = speed * dt
    elif class_name == "rotate_clockwise":
        dangle = -omega * dt
    elif class_name == "rotate_counterclockwise":
        dangle = omega * dt
    elif class_name == "grow":
        dradius = growth * dt
    elif class_name == "shrink":
        dradius = -growth * dt
    else:
        raise ValueError(f"unknown synthetic class {class_name!r}; known: {CLASS_NAMES}")
    if jitter:
        # On screen y points down, so a counter-clockwise turn is (x, y) -> (x c + y s, -x s + y c).
        c, s = math.cos(math.radians(jitter)), math.sin(math.radians(jitter))
        dx, dy = dx * c + dy * s, -dx * s + dy * c
    return dx, dy, dangle, dradius


def video_seed(seed: int, class_index: int, index: int) -> np.random.SeedSequence:
    """The random stream of one video, independent of every other video's."""
    return np.random.SeedSequence([seed, class_index, index])


def render_video(config: SyntheticConfig, class_index: int, index: int) -> np.ndarray:
    """Renders video ``index`` of class ``class_index``: uint8 ``[num_frames, size, size, 3]`` RGB.

    Deterministic in ``(config, class_index, index)``.
    """
    return render_video_and_shape(config, class_index, index)[0]


def render_video_and_shape(config: SyntheticConfig, class_index: int,
                           index: int) -> tuple[np.ndarray, int]:
    """:func:`render_video` and the object's shape (index into :data:`SHAPE_NAMES`): the
    appearance attribute an image teacher can learn from one frame."""
    motion, shape = config.class_attributes(class_index)
    rng = np.random.default_rng(video_seed(config.seed, class_index, index))
    return _render(config, motion, rng, shape)


def render_motion(config: SyntheticConfig, class_name: str, rng: np.random.Generator,
                  shape: int | None = None) -> np.ndarray:
    """Renders one video of motion ``class_name`` with appearance drawn from ``rng``.

    ``shape`` (index into :data:`SHAPE_NAMES`) fixes the object's shape; None draws it. The
    appearance draws do not depend on the class, so the same ``rng`` state gives the same
    object and background for every class; with a still background, a class's video played
    backwards is exactly its twin's (left/right, up/down, cw/ccw, grow/shrink).
    """
    return _render(config, class_name, rng, shape)[0]


def _render(config: SyntheticConfig, class_name: str, rng: np.random.Generator,
            shape: int | None) -> tuple[np.ndarray, int]:
    """(frames uint8 [T,size,size,3], the shape drawn or given)."""
    s, t_frames = config.size, config.num_frames

    # Background: a periodic texture, still or drifting (wrapping around).
    bg_color = rng.uniform(40, 215, 3).astype(np.float32)  # drawn always: the stream stays
    if config.background_color is not None:
        bg_color = np.asarray(config.background_color, np.float32)
    bg = _periodic_texture(rng, s, sigma=rng.uniform(1.5, 3.0) * config.texture_scale,
                           color=bg_color, contrast=rng.uniform(*config.background_contrast))
    drift = rng.uniform(0, config.background_drift) if rng.random() < 0.5 else 0.0
    drift_angle = rng.uniform(0, 2 * np.pi)
    drift_v = drift * np.array([np.cos(drift_angle), np.sin(drift_angle)])

    # Object sprite: texture x shape mask, drawn at a resolution that covers its largest size.
    t_mid = (t_frames - 1) / 2.0
    diameter = rng.uniform(*config.object_size) * s  # at the middle frame, pixels
    # Radius growth speed (px / frame), capped so the radius stays >= 1/4 of its middle size.
    growth = min(rng.uniform(*config.growth_speed), 0.75 * (diameter / 2) / max(t_mid, 1e-6))
    sprite_size = math.ceil(diameter + 2 * growth * t_mid) | 1  # odd: a center pixel
    obj_color = rng.uniform(30, 225, 3).astype(np.float32)
    # Texture grain of (1-2.5) * texture_scale frame pixels at the middle frame's size.
    grain = rng.uniform(1.0, 2.5) * config.texture_scale * sprite_size / diameter
    sprite = _periodic_texture(rng, sprite_size, sigma=grain, color=obj_color,
                               contrast=rng.uniform(40, 60))
    mask, shape = _shape_mask(rng, sprite_size, shape)

    speed = rng.uniform(*config.speed)
    omega = rng.uniform(*config.angular_speed)
    center = rng.uniform(0, s, 2)  # position at the middle frame, uniform on the torus
    if not config.wrap:  # the same draw, squeezed so the middle frame holds the whole object
        margin = diameter / 2 + 1
        center = margin + center * (s - 2 * margin) / s
    angle0 = rng.uniform(0, 360)
    # Drawn last (and for every class) so that the draws above, and hence the videos made
    # without jitter, stay what they were before this option existed.
    jitter = rng.uniform(-config.direction_jitter, config.direction_jitter)

    frames = np.empty((t_frames, s, s, 3), np.uint8)
    sc = (sprite_size - 1) / 2.0
    for t in range(t_frames):
        dt = t - t_mid
        # Background shifted by drift * t with wrap-around.
        shift = drift_v * dt
        m_bg = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
        frame = cv2.warpAffine(bg, m_bg, (s, s), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_WRAP)
        dx, dy, dangle, dradius = _object_pose(class_name, dt, speed, omega, growth, jitter)
        scale = (diameter + 2 * dradius) / sprite_size
        pos = center + [dx, dy]
        if config.wrap:
            pos = np.mod(pos, s)
        m = cv2.getRotationMatrix2D((sc, sc), angle0 + dangle, scale)
        radius = scale * sprite_size / 2.0 + 2
        # Draw every wrapped copy that touches the frame (the frame is a torus), or only the
        # object itself.
        offsets = (-s, 0, s) if config.wrap else (0,)
        for ox in offsets:
            for oy in offsets:
                px, py = pos[0] + ox, pos[1] + oy
                if px + radius < 0 or px - radius > s or py + radius < 0 or py - radius > s:
                    continue
                m_obj = m.copy()
                m_obj[:, 2] += (px - sc, py - sc)
                alpha = cv2.warpAffine(mask, m_obj, (s, s), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                color = cv2.warpAffine(sprite, m_obj, (s, s), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REPLICATE)
                frame = frame + alpha[..., None] * (color - frame)
        frames[t] = np.clip(np.round(frame), 0, 255).astype(np.uint8)
    return frames, shape


@dataclasses.dataclass(frozen=True)
class SyntheticVideo:
    """One entry of the dataset: where it goes and what it is."""

    path: str  # relative to the dataset folder
    class_index: int
    index: int
    split: str  # "train" or "test"


def dataset_entries(config: SyntheticConfig) -> list[SyntheticVideo]:
    """All videos of the dataset in manifest order (class by class), with their split."""
    num_test = round(config.videos_per_class * config.test_fraction)
    entries = []
    for class_index, name in enumerate(config.class_names):
        for index in range(config.videos_per_class):
            split = "test" if index >= config.videos_per_class - num_test else "train"
            entries.append(SyntheticVideo(path=f"{name}/{name}_{index:03d}.mp4",
                                          class_index=class_index, index=index, split=split))
    return entries


def _write_one(args) -> tuple[str, str]:
    """Writes one video; returns (its path, its object's shape name)."""
    config, entry, out_dir = args
    path = os.path.join(out_dir, entry.path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    frames, shape = render_video_and_shape(config, entry.class_index, entry.index)
    video.write_video(path, frames, config.fps)
    return entry.path, SHAPE_NAMES[shape]


def generate_dataset(config: SyntheticConfig, out_dir: str, num_workers: int = 1) -> str:
    """Writes the dataset's mp4 files, ``manifest.csv`` and ``labels.txt`` under ``out_dir``.

    Args:
      config: what to generate.
      out_dir: output folder (created if missing; existing files are overwritten).
      num_workers: processes rendering and encoding in parallel (1 = in this process).

    Returns:
      The path of ``manifest.csv``.
    """
    os.makedirs(out_dir, exist_ok=True)
    entries = dataset_entries(config)
    jobs = [(config, e, out_dir) for e in entries]
    logging.info("Writing %d synthetic videos (%d classes x %d, %d frames of %dx%d) to %s",
                 len(entries), len(config.class_names), config.videos_per_class, config.num_frames,
                 config.size, config.size, out_dir)
    start = time.time()
    report_every = max(1, len(jobs) // 10)

    def progress(done: int) -> None:
        if done % report_every == 0 or done == len(jobs):
            logging.info("  %d/%d videos (%.1f s)", done, len(jobs), time.time() - start)

    shapes = {}
    if num_workers > 1:
        with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
            for done, (path, shape) in enumerate(
                    pool.imap_unordered(_write_one, jobs, chunksize=4), 1):
                shapes[path] = shape
                progress(done)
    else:
        for done, job in enumerate(jobs, 1):
            path, shapes[path] = _write_one(job)
            progress(done)

    manifest = os.path.join(out_dir, "manifest.csv")
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", "label_name", "split", "shape"])
        for e in entries:
            writer.writerow([e.path, config.class_names[e.class_index], e.split, shapes[e.path]])
    with open(os.path.join(out_dir, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("".join(name + "\n" for name in config.class_names))
    logging.info("Wrote %s and labels.txt", manifest)
    return manifest
