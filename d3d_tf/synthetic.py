"""Writes the built-in synthetic motion dataset (mp4 videos + manifest.csv + labels.txt).

    python -m d3d_tf.synthetic --out_dir=demo_out/videos

The class of each video is its motion alone (see `d3d_tf.data.synthetic.CLASS_NAMES`);
appearance is random; with `--shape_classes=N` the class is the object's shape and its motion.
`manifest.csv` records every video's shape (an appearance label of single frames).
`python -m d3d_tf.prepare --format=manifest --annotations=DIR/manifest.csv`
turns it into TFRecords like any other data.
"""
from __future__ import annotations

import os

from absl import app, flags, logging

from d3d_tf.ava import synthetic_ava
from d3d_tf.core import cli
from d3d_tf.data import synthetic

D = synthetic.SyntheticConfig()
FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", None, "Folder for the videos, manifest.csv and labels.txt.")
flags.DEFINE_integer("classes", D.num_classes, "Number of motion classes (the first N of "
                     f"{', '.join(synthetic.CLASS_NAMES)}).")
flags.DEFINE_integer("videos_per_class", D.videos_per_class, "Videos per class (balanced).")
flags.DEFINE_integer("frames", D.num_frames, "Frames per video.")
flags.DEFINE_integer("size", D.size, "Frame height = width, pixels.")
flags.DEFINE_float("fps", D.fps, "Frame rate written into the mp4 files.")
flags.DEFINE_float("test_fraction", D.test_fraction, "Fraction of each class's videos in the "
                   "'test' split (the last indices; deterministic).")
flags.DEFINE_integer("seed", D.seed, "Base seed: the same seed gives the same frames.")
flags.DEFINE_list("speed", [str(v) for v in D.speed], "Translation speed range (min,max), "
                  "pixels per frame.")
flags.DEFINE_float("direction_jitter", D.direction_jitter, "Translation classes move along "
                   "their axis turned by a random angle in [-x, x] degrees per video (0 = exactly "
                   "left/right/up/down; must be < 45).")
flags.DEFINE_float("background_drift", D.background_drift, "Maximum background speed, pixels "
                   "per frame (half of the videos have a still background); 0 = always still.")
flags.DEFINE_list("background_contrast", [str(v) for v in D.background_contrast],
                  "Background texture contrast range (min,max), grey levels; 0,0 = a plain "
                  "background, 25,45 = the default textured background.")
flags.DEFINE_list("object_size", [str(v) for v in D.object_size], "Object diameter range "
                  "(min,max) at the middle frame, fraction of the frame size.")
flags.DEFINE_bool("wrap", D.wrap, "The frame is a torus: the object wraps around the borders "
                  "(its position is uniform in every frame). --nowrap keeps the whole object "
                  "inside the middle frame and lets it leave the frame past a border.")
flags.DEFINE_list("background_color", [], "R,G,B in [0,255]: this background colour in every "
                  "video; empty = a random colour per video.")
flags.DEFINE_float("texture_scale", D.texture_scale, "Multiplies the grain size of every texture; "
                   "larger = smoother textures.")
flags.DEFINE_integer("shape_classes", D.shape_classes, "0 = classes by motion alone (random "
                     "object shapes); N > 0 = each class is one of the first N shapes of "
                     f"{', '.join(synthetic.SHAPE_NAMES)} doing one of the --classes motions "
                     "(N x --classes classes named shape_motion).")
flags.DEFINE_integer("actors", 0, "Multi-actor (AVA-format) dataset with this many actors per "
                     "video; 0 = the single-object classification dataset.")
flags.DEFINE_integer("videos", synthetic_ava.MultiActorConfig.num_videos, "--actors>0: number "
                     "of videos (the last quarter is the val split).")
flags.DEFINE_integer("duration", synthetic_ava.MultiActorConfig.duration_s, "--actors>0: video "
                     "length in seconds (keyframes at 1 .. duration-1 s).")
flags.DEFINE_integer("workers", 0, "Processes rendering and encoding (0 = all cores).")


def _numbers(name: str, count: int, what: str) -> tuple[float, ...]:
    """The list flag `name` as `count` floats; `what` says so in the error."""
    values = getattr(FLAGS, name)
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
    return _numbers(name, 3, "three numbers R,G,B") if getattr(FLAGS, name) else None


def _multi_actor_config() -> synthetic_ava.MultiActorConfig:
    """The multi-actor config: its own defaults, overridden by the flags given."""
    given = {"num_classes": "classes", "fps": "fps", "size": "size", "seed": "seed"}
    options = {k: getattr(FLAGS, f) for k, f in given.items() if FLAGS[f].present}
    if FLAGS["speed"].present:
        options["speed"] = _range("speed")
    return synthetic_ava.MultiActorConfig(num_videos=FLAGS.videos, num_actors=FLAGS.actors,
                                          duration_s=FLAGS.duration, **options)


def main(argv):
    del argv
    if not FLAGS.out_dir:
        raise app.UsageError("--out_dir is required")
    logging.set_verbosity(logging.INFO)
    workers = FLAGS.workers or os.cpu_count() or 1
    if FLAGS.actors:
        try:
            config = _multi_actor_config()
        except ValueError as e:
            raise app.UsageError(str(e)) from e
        paths = synthetic_ava.generate_dataset(config, FLAGS.out_dir, num_workers=workers)
        print(f"wrote {config.num_videos} multi-actor videos; label map: {paths['label_map']}")
        return
    try:
        config = synthetic.SyntheticConfig(
            num_classes=FLAGS.classes, videos_per_class=FLAGS.videos_per_class,
            num_frames=FLAGS.frames, size=FLAGS.size, fps=FLAGS.fps,
            test_fraction=FLAGS.test_fraction, seed=FLAGS.seed,
            speed=_range("speed"), direction_jitter=FLAGS.direction_jitter,
            background_drift=FLAGS.background_drift,
            background_contrast=_range("background_contrast"),
            texture_scale=FLAGS.texture_scale, shape_classes=FLAGS.shape_classes,
            object_size=_range("object_size"), wrap=FLAGS.wrap,
            background_color=_color("background_color"))
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    manifest = synthetic.generate_dataset(config, FLAGS.out_dir, num_workers=workers)
    print(f"wrote {len(config.class_names) * config.videos_per_class} videos; "
          f"manifest: {manifest}")


if __name__ == "__main__":
    cli.run(main)
