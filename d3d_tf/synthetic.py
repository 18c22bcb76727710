"""Writes the built-in synthetic motion dataset (class defined by motion alone).

    python -m d3d_tf.synthetic --out_dir=/tmp/synthetic

writes ``<out_dir>/<class>/<class>_NNN.mp4``, ``manifest.csv`` (path,label_name,split) and
``labels.txt``; ``python -m d3d_tf.prepare`` reads the manifest. See docs/data.md.
"""
from absl import app, flags, logging

from d3d_tf.data import synthetic

_DEFAULTS = synthetic.SyntheticConfig()

_OUT_DIR = flags.DEFINE_string("out_dir", None, "Folder to write the videos, manifest.csv "
                               "and labels.txt into (created if missing).", required=True)
_CLASSES = flags.DEFINE_integer(
    "classes", _DEFAULTS.num_classes,
    f"Number of classes: the first N of {', '.join(synthetic.CLASS_NAMES)}.")
_VIDEOS_PER_CLASS = flags.DEFINE_integer("videos_per_class", _DEFAULTS.videos_per_class,
                                         "Videos per class (classes are balanced).")
_FRAMES = flags.DEFINE_integer("frames", _DEFAULTS.num_frames, "Frames per video.")
_SIZE = flags.DEFINE_integer("size", _DEFAULTS.size, "Frame height and width in pixels.")
_FPS = flags.DEFINE_float("fps", _DEFAULTS.fps, "Frame rate written into the mp4 files.")
_TEST_FRACTION = flags.DEFINE_float(
    "test_fraction", _DEFAULTS.test_fraction,
    "Fraction of each class's videos in the test split (the last indices of each class).")
_SEED = flags.DEFINE_integer("seed", _DEFAULTS.seed,
                             "Random seed; the same seed gives identical frames.")
_WORKERS = flags.DEFINE_integer("workers", 1, "Processes rendering and encoding in parallel.")


def main(argv):
    del argv  # unused
    try:
        config = synthetic.SyntheticConfig(
            num_classes=_CLASSES.value, videos_per_class=_VIDEOS_PER_CLASS.value,
            num_frames=_FRAMES.value, size=_SIZE.value, fps=_FPS.value,
            test_fraction=_TEST_FRACTION.value, seed=_SEED.value)
    except ValueError as e:  # name the bad flag's value instead of a traceback
        raise app.UsageError(
            f"{e} (flags: num_classes is --classes, num_frames is --frames)") from e
    manifest = synthetic.generate_dataset(config, _OUT_DIR.value, num_workers=_WORKERS.value)
    logging.info("Done: %s", manifest)


if __name__ == "__main__":
    app.run(main)
