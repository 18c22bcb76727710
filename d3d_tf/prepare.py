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
from d3d_tf.core.config_flags import field, section
from d3d_tf.data import datasets, prepare_hosts, prepare_lib

FLAGS = flags.FLAGS


@dataclasses.dataclass
class EngineConfig:
    beam_options: str | None = field(None, "Run as an Apache Beam pipeline (pip install "
                                     "-e '.[beam]'), one element per shard, writing the same "
                                     "shards, with these Beam pipeline options, e.g. "
                                     "'--runner=DirectRunner --direct_num_workers=2 "
                                     "--direct_running_mode=multi_processing' ('' = the "
                                     "DirectRunner's defaults; docs/data_scale.md).")


@dataclasses.dataclass
class PrepareFlags:
    """The flags of `python -m d3d_tf.prepare` (`d3d_tf.core.config_flags`)."""
    format: str = field("manifest", "Input format: kinetics (CSV), ucf101 / hmdb51 (split "
                        "files), folder (class-per-folder tree), list (unlabeled file list), "
                        "manifest (synthetic), ava (AVA CSVs: one record per keyframe, see "
                        "docs/ava.md).", choices=(*datasets.FORMATS, "ava"))
    annotations: str = field("", "Kinetics CSV, UCF-101/HMDB-51 split folder, file list, "
                             "manifest.csv or AVA annotation CSV (unused for --format=folder).")
    video_dir: str = field("", "Folder holding the videos (kinetics, ucf101, hmdb51, folder).")
    fold: int = field(1, "UCF-101 / HMDB-51 split number (1, 2 or 3).")
    split: str = field("train", "Which split to write (train, test, val, ...); folder and list "
                       "inputs give every video this split.")
    out_dir: str | None = field(None, "Output folder for shards, labels.txt and info JSON.")
    flow: str = field("tvl1", "Optical flow to store: tvl1 (the papers'), farneback (fast, not "
                      "the papers'), dis (OpenCV's DIS: many times faster than tvl1, NOT the "
                      "papers' flow; docs/data_scale.md), none.",
                      choices=prepare_lib.FLOW_CHOICES)
    fps: float | None = field(None, "Resample videos to this frame rate (default: keep).")
    resize_short_side: int | None = field(None, "Resize frames so the short side is this many "
                                          "pixels (default: keep).")
    max_frames: int | None = field(None, "Keep at most this many frames per video.")
    num_shards: int = field(8, "Number of TFRecord shards for this split.")
    workers: int = field(0, "Worker processes (0 = number of CPU cores).")
    jpeg_quality: int = field(90, "JPEG quality of stored frames (1-100).")
    verify: str | None = field(None, "Instead of preparing: read every shard matching this "
                               "glob, check every record and decode every frame and flow "
                               "image, print the record count and exit (non-zero naming the "
                               "shard on damage).")
    ava: ava.AvaPrepareConfig = section(ava.AvaPrepareConfig, "AVA (--format=ava)")
    hosts: prepare_hosts.HostConfig = section(prepare_hosts.HostConfig, "Several machines")
    engine: EngineConfig = section(EngineConfig, "Apache Beam")


config_flags.define_flags(PrepareFlags)
HELP_GROUPS = cli.help_groups(PrepareFlags)


def main(argv):
    del argv
    c = config_flags.from_flags(PrepareFlags)
    if c.verify:
        from d3d_tf.data import records
        try:
            total = records.verify_shards(c.verify, parse=True, decode=True)
        except records.RecordError as e:
            sys.exit(f"error: {e}")
        print(f"{c.verify}: {total} records, all shards readable, every frame decodes")
        return
    if not c.out_dir:
        sys.exit("error: --out_dir is required")
    if c.format == "ava":
        _prepare_ava(c)
        return
    try:
        entries, labels = datasets.read_dataset(
            c.format, annotations=c.annotations, video_dir=c.video_dir,
            split=c.split, fold=c.fold)
        config = _config(c)
        beam_options = c.engine.beam_options
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


def _config(c: PrepareFlags) -> prepare_lib.PrepareConfig:
    return prepare_lib.PrepareConfig(
        out_dir=c.out_dir, split=c.split, flow=c.flow, fps=c.fps,
        short_side=c.resize_short_side, max_frames=c.max_frames,
        num_shards=c.num_shards, workers=c.workers, jpeg_quality=c.jpeg_quality,
        hosts=c.hosts)


def _prepare_beam():
    try:
        from d3d_tf.data import prepare_beam
    except ImportError as e:
        raise app.UsageError(f"--beam_options needs Apache Beam ({e}): pip install "
                             f"-e '.[beam]' in the checkout") from None
    return prepare_beam


def _prepare_ava(c: PrepareFlags):
    if c.engine.beam_options is not None:
        raise app.UsageError("--beam_options does not support --format=ava (run it without)")
    try:
        config = _config(c)
        summary = ava.prepare(c.annotations, c.video_dir,
                              c.ava, config)
    except (datasets.AnnotationError, prepare_lib.PrepareError) as e:
        sys.exit(f"error: {e}")
    _print_summary(summary, config)


if __name__ == "__main__":
    cli.run(main, groups=HELP_GROUPS)
