"""Writes the built-in synthetic motion dataset (mp4 videos + manifest.csv + labels.txt).

    python -m d3d_tf.synthetic --out_dir=demo_out/videos

The class of each video is its motion alone (see `d3d_tf.data.synthetic.CLASS_NAMES`);
appearance is random; with `--shape_classes=N` the class is the object's shape and its motion.
`manifest.csv` records every video's shape (an appearance label of single frames).
`python -m d3d_tf.prepare --format=manifest --annotations=DIR/manifest.csv`
turns it into TFRecords like any other data.
"""
from __future__ import annotations

import dataclasses
import os

from absl import app, flags, logging

from d3d_tf.ava import synthetic_ava
from d3d_tf.core import cli, config_flags
from d3d_tf.core.config_flags import field, section
from d3d_tf.data import synthetic

D = synthetic.SyntheticConfig()
FLAGS = flags.FLAGS


def _floats(values) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


@dataclasses.dataclass
class MultiActorFlags:
    """The multi-actor (AVA-format) dataset's own flags."""
    actors: int = field(0, "Multi-actor (AVA-format) dataset with this many actors per video; "
                        "0 = the single-object classification dataset.", min=0)
    videos: int = field(synthetic_ava.MultiActorConfig.num_videos, "--actors>0: number of "
                        "videos (the last quarter is the val split).", min=1)
    duration: int = field(synthetic_ava.MultiActorConfig.duration_s, "--actors>0: video length "
                          "in seconds (keyframes at 1 .. duration-1 s).", min=1)


@dataclasses.dataclass
class SyntheticFlags:
    """The flags of `python -m d3d_tf.synthetic` (`d3d_tf.core.config_flags`); the ranges and
    the colour are parsed into `synthetic.SyntheticConfig` by `main`."""
    out_dir: str | None = field(None, "Folder for the videos, manifest.csv and labels.txt.")
    classes: int = field(D.num_classes, "Number of motion classes (the first N of "
                         f"{', '.join(synthetic.CLASS_NAMES)}).")
    videos_per_class: int = field(D.videos_per_class, "Videos per class (balanced).")
    frames: int = field(D.num_frames, "Frames per video.")
    size: int = field(D.size, "Frame height = width, pixels.")
    fps: float = field(D.fps, "Frame rate written into the mp4 files.")
    test_fraction: float = field(D.test_fraction, "Fraction of each class's videos in the "
                                 "'test' split (the last indices; deterministic).")
    seed: int = field(D.seed, "Base seed: the same seed gives the same frames.")
    workers: int = field(0, "Processes rendering and encoding (0 = all cores).")
    speed: tuple = field(_floats(D.speed), "Translation speed range (min,max), pixels per "
                         "frame.", item=str)
    direction_jitter: float = field(D.direction_jitter, "Translation classes move along their "
                                    "axis turned by a random angle in [-x, x] degrees per video "
                                    "(0 = exactly left/right/up/down; must be < 45).")
    background_drift: float = field(D.background_drift, "Maximum background speed, pixels per "
                                    "frame (half of the videos have a still background); 0 = "
                                    "always still.")
    background_contrast: tuple = field(_floats(D.background_contrast), "Background texture "
                                       "contrast range (min,max), grey levels; 0,0 = a plain "
                                       "background, 25,45 = the default textured background.",
                                       item=str)
    object_size: tuple = field(_floats(D.object_size), "Object diameter range (min,max) at the "
                               "middle frame, fraction of the frame size.", item=str)
    wrap: bool = field(D.wrap, "The frame is a torus: the object wraps around the borders (its "
                       "position is uniform in every frame). --nowrap keeps the whole object "
                       "inside the middle frame and lets it leave the frame past a border.")
    background_color: tuple = field((), "R,G,B in [0,255]: this background colour in every "
                                    "video; empty = a random colour per video.", item=str)
    texture_scale: float = field(D.texture_scale, "Multiplies the grain size of every texture; "
                                 "larger = smoother textures.")
    shape_classes: int = field(D.shape_classes, "0 = classes by motion alone (random object "
                               "shapes); N > 0 = each class is one of the first N shapes of "
                               f"{', '.join(synthetic.SHAPE_NAMES)} doing one of the --classes "
                               "motions (N x --classes classes named shape_motion).")
    multi_actor: MultiActorFlags = section(MultiActorFlags, "Multi-actor (AVA format)")


config_flags.define_flags(SyntheticFlags)


def _numbers(name: str, count: int, what: str) -> tuple[float, ...]:
    """The list flag `name` as `count` floats; `what` says so in the error."""
    values = FLAGS[name].value
    try:
        numbers = tuple(float(v) for v in values)
    except ValueError:
        numbers = ()
    if len(numbers) != count:
        raise app.UsageError(f"--{name} takes {what}, got {','.join(values)!r}")
    return numbers


def _range(name: str) -> tuple[float, float]:
    return _numbers(name, 2, "two numbers min,max")


def _color(name: str) -> tuple[float, float, float] | None:
    return _numbers(name, 3, "three numbers R,G,B") if FLAGS[name].value else None


def _multi_actor_config(c: SyntheticFlags) -> synthetic_ava.MultiActorConfig:
    """The multi-actor config: its own defaults, overridden by the flags given."""
    given = {"num_classes": "classes", "fps": "fps", "size": "size", "seed": "seed"}
    options = {k: getattr(c, f) for k, f in given.items() if FLAGS[f].present}
    if FLAGS["speed"].present:
        options["speed"] = _range("speed")
    m = c.multi_actor
    return synthetic_ava.MultiActorConfig(num_videos=m.videos, num_actors=m.actors,
                                          duration_s=m.duration, **options)


def main(argv):
    del argv
    c = config_flags.from_flags(SyntheticFlags)
    if not c.out_dir:
        raise app.UsageError("--out_dir is required")
    logging.set_verbosity(logging.INFO)
    workers = c.workers or os.cpu_count() or 1
    if c.multi_actor.actors:
        try:
            config = _multi_actor_config(c)
        except ValueError as e:
            raise app.UsageError(str(e)) from e
        paths = synthetic_ava.generate_dataset(config, c.out_dir, num_workers=workers)
        print(f"wrote {config.num_videos} multi-actor videos; label map: {paths['label_map']}")
        return
    try:
        config = synthetic.SyntheticConfig(
            num_classes=c.classes, videos_per_class=c.videos_per_class,
            num_frames=c.frames, size=c.size, fps=c.fps,
            test_fraction=c.test_fraction, seed=c.seed,
            speed=_range("speed"), direction_jitter=c.direction_jitter,
            background_drift=c.background_drift,
            background_contrast=_range("background_contrast"),
            texture_scale=c.texture_scale, shape_classes=c.shape_classes,
            object_size=_range("object_size"), wrap=c.wrap,
            background_color=_color("background_color"))
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    manifest = synthetic.generate_dataset(config, c.out_dir, num_workers=workers)
    print(f"wrote {len(config.class_names) * config.videos_per_class} videos; "
          f"manifest: {manifest}")


if __name__ == "__main__":
    cli.run(main, groups=cli.help_groups(SyntheticFlags))
