"""Classify video files with an exported model (SavedModel directory or .tflite file).

    python -m d3d_tf.predict clip1.mp4 clip2.webm --export_path=exports/s3dg/1
    python -m d3d_tf.predict clip.mp4 --export_path=exports/tflite/s3dg_float32.tflite --json

Clips are sampled, cropped and normalized exactly as evaluation does (`d3d_tf.deploy.predictor`).
"""
from __future__ import annotations

import json
import sys

from absl import app, flags

from d3d_tf.core import cli, config_flags
from d3d_tf.deploy.predictor import PredictConfig, Predictor, predict_video

FLAGS = flags.FLAGS
flags.DEFINE_string("export_path", None, "SavedModel directory (version dir or model base "
                    "path) or .tflite file written by d3d_tf.export.")
flags.DEFINE_bool("json", False, "Print one JSON object per video instead of text.")
config_flags.define_flags(PredictConfig)


def main(argv):
    from d3d_tf.data.video import VideoError

    videos = argv[1:]
    if not videos:
        raise app.UsageError("give one or more video files: python -m d3d_tf.predict "
                             "VIDEO... --export_path=PATH")
    if not FLAGS.export_path:
        raise app.UsageError("--export_path is required (SavedModel directory or .tflite file)")
    config = config_flags.from_flags(PredictConfig)
    try:
        predictor = Predictor(FLAGS.export_path, num_threads=config.num_threads)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: --export_path: {e}", file=sys.stderr)
        return 2
    failed = 0
    for path in videos:
        try:
            result = predict_video(path, predictor, config)
        except (VideoError, ValueError) as e:  # VideoTooShortError is a ValueError
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        if FLAGS.json:
            print(json.dumps(result))
        else:
            print(path)
            for r in result["top_k"]:
                print(f"  {r['score']:.4f}  {r['label']}")
    return 1 if failed else 0


if __name__ == "__main__":
    cli.run(main, groups=[("Model", ["export_path", "json"]),
                          *cli.help_groups(PredictConfig)])
