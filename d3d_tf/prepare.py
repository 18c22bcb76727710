"""Videos + annotations -> sharded TFRecords for training and evaluation.

  python -m d3d_tf.prepare --format=ucf101 --annotations=ucfTrainTestlist \
      --video_dir=UCF-101 --split=train --out_dir=data/ucf101 --flow=tvl1 --num_shards=64

See docs/data_pipeline.md for every input format. Rerunning the same command after an
interruption skips the finished shards. `--verify=GLOB` checks existing shards instead.
`--num_hosts/--host` splits the shards over machines, `--beam_options` runs the same work as an
Apache Beam pipeline (docs/data_scale.md).
"""
from __future__ import annotations

import dataclasses
import sys

from absl import app, flags

from d3d_tf.ava import ava
from d3d_tf.core import cli, config_flags
from d3d_tf.core.config_flags import field
from d3d_tf.data import datasets, prepare_hosts, prepare_lib

FLAGS = flags.FLAGS
flags.DEFINE_enum("format", "manifest", [*datasets.FORMATS, "ava"],
                  "Input format: kinetics (CSV), ucf101 / hmdb51 (split files), folder "
                  "(class-per-folder tree), list (unlabeled file list), manifest (synthetic), "
                  "ava (AVA CSVs: one record per keyframe, see docs/ava.md).")
flags.DEFINE_string("annotations", "", "Kinetics CSV, UCF-101/HMDB-51 split folder, file "
                    "list, manifest.csv or AVA annotation CSV (unused for --format=folder).")
flags.DEFINE_string("video_dir", "", "Folder holding the videos (kinetics, ucf101, hmdb51, "
                    "folder).")
flags.DEFINE_integer("fold", 1, "UCF-101 / HMDB-51 split number (1, 2 or 3).")
flags.DEFINE_string("split", "train", "Which split to write (train, test, val, ...); "
                    "folder and list inputs give every video this split.")
flags.DEFINE_string("out_dir", None, "Output folder for shards, labels.txt and info JSON.")
flags.DEFINE_enum("flow", "tvl1", list(prepare_lib.FLOW_CHOICES),
                  "Optical flow to store: tvl1 (the papers'), farneback (fast, not the "
                  "papers'), dis (OpenCV's DIS: many times faster than tvl1, NOT the papers' "
                  "flow; docs/data_scale.md), none.")
flags.DEFINE_float("fps", None, "Resample videos to this frame rate (default: keep).")
flags.DEFINE_integer("resize_short_side", None, "Resize frames so the short side is this many "
                     "pixels (default: keep).")
flags.DEFINE_integer("max_frames", None, "Keep at most this many frames per video.")
flags.DEFINE_integer("num_shards", 8, "Number of TFRecord shards for this split.")
flags.DEFINE_integer("workers", 0, "Worker processes (0 = number of CPU cores).")
flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of stored frames (1-100).")
config_flags.define_flags(ava.AvaPrepareConfig)
config_flags.define_flags(prepare_hosts.HostConfig)


@dataclasses.dataclass
class EngineConfig:
    beam_options: str | None = field(None, "Run as an Apache Beam pipeline (pip install "
                                     "-e '.[beam]'), one element per shard, writing the same "
                                     "shards, with these Beam pipeline options, e.g. "
                                     "'--runner=DirectRunner --direct_num_workers=2 "
                                     "--direct_running_mode=multi_processing' ('' = the "
                                     "DirectRunner's defaults; docs/data_scale.md).")


config_flags.define_flags(EngineConfig)
flags.DEFINE_string("verify", None, "Instead of preparing: read every shard matching this "
                    "glob, check every record and decode every frame and flow image, print "
                    "the record count and exit (non-zero naming the shard on damage).")


def main(argv):
    del argv
    if FLAGS.verify:
        from d3d_tf.data import records
        try:
            total = records.verify_shards(FLAGS.verify, parse=True, decode=True)
        except records.RecordError as e:
            sys.exit(f"error: {e}")
        print(f"{FLAGS.verify}: {total} records, all shards readable, every frame decodes")
        return
    if not FLAGS.out_dir:
        sys.exit("error: --out_dir is required")
    if FLAGS.format == "ava":
        _prepare_ava()
        return
    try:
        entries, labels = datasets.read_dataset(
            FLAGS.format, annotations=FLAGS.annotations, video_dir=FLAGS.video_dir,
            split=FLAGS.split, fold=FLAGS.fold)
        config = _config()
        beam_options = config_flags.from_flags(EngineConfig).beam_options
        if beam_options is None:
            summary = prepare_lib.prepare(entries, labels, config)
        else:
            summary = _prepare_beam().prepare(entries, labels, config, beam_options)
    except (datasets.AnnotationError, prepare_lib.PrepareError) as e:
        sys.exit(f"error: {e}")
    _print_summary(summary, config)


def _print_summary(summary: prepare_lib.PrepareSummary, config: prepare_lib.PrepareConfig):
    print(summary.format())
    if config.hosts.shared:
        print(config.hosts.finish_hint(config.out_dir, config.split))


def _config() -> prepare_lib.PrepareConfig:
    return prepare_lib.PrepareConfig(
        out_dir=FLAGS.out_dir, split=FLAGS.split, flow=FLAGS.flow, fps=FLAGS.fps,
        short_side=FLAGS.resize_short_side, max_frames=FLAGS.max_frames,
        num_shards=FLAGS.num_shards, workers=FLAGS.workers, jpeg_quality=FLAGS.jpeg_quality,
        hosts=config_flags.from_flags(prepare_hosts.HostConfig))


def _prepare_beam():
    try:
        from d3d_tf.data import prepare_beam
    except ImportError as e:
        raise app.UsageError(f"--beam_options needs Apache Beam ({e}): pip install "
                             f"-e '.[beam]' in the checkout") from None
    return prepare_beam


def _prepare_ava():
    if config_flags.from_flags(EngineConfig).beam_options is not None:
        raise app.UsageError("--beam_options does not support --format=ava (run it without)")
    try:
        config = _config()
        summary = ava.prepare(FLAGS.annotations, FLAGS.video_dir,
                              config_flags.from_flags(ava.AvaPrepareConfig), config)
    except (datasets.AnnotationError, prepare_lib.PrepareError) as e:
        sys.exit(f"error: {e}")
    _print_summary(summary, config)


if __name__ == "__main__":
    cli.run(main)
