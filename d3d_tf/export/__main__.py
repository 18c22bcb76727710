"""Export a model directory for inference.

    python -m d3d_tf.export --checkpoint=runs/demo --format=saved_model --out=exports
    python -m d3d_tf.export --checkpoint=runs/demo/model --format=tflite --quantize=int8 \\
        --calibration_data='data/demo/val-*.tfrecord' --out=exports/tflite

See docs/export.md.
"""
from __future__ import annotations

import json

from absl import app, flags, logging

from d3d_tf import cli
from d3d_tf.export import saved_model, tflite

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "Model directory (model.json + weights.npz) or a "
                    "training run directory holding model/.")
flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite"], "Export format.")
flags.DEFINE_string("out", None, "Output directory: the TF Serving model root for "
                    "saved_model (<out>/<model_name>/<version>), the .tflite folder for tflite.")
flags.DEFINE_integer("frames", None, "Clip length T in frames (default: the model's).",
                     lower_bound=1)
flags.DEFINE_integer("size", None, "Frame height = width in pixels (default: the model's).",
                     lower_bound=1)
flags.DEFINE_enum("quantize", "float32", list(tflite.QUANTIZE_MODES),
                  "TFLite variant: float32, float16 weights, dynamic-range int8 weights, or "
                  "full-integer int8 (calibrated).")
flags.DEFINE_string("calibration_data", None, "TFRecord glob of clips for int8 calibration; "
                    "default: synthetic random clips (only good for testing).")
flags.DEFINE_integer("calibration_clips", 64, "Number of clips used for int8 calibration.",
                     lower_bound=1)
flags.DEFINE_string("model_name", None, "Model name (TF Serving name / .tflite file stem); "
                    "default: the model's preset name.")
flags.DEFINE_integer("version", 1, "SavedModel version directory (a positive integer).",
                     lower_bound=1)
flags.DEFINE_integer("top_k", 5, "SavedModel: number of top classes in the outputs.", lower_bound=1)
flags.DEFINE_bool("overwrite", False, "SavedModel: replace an existing version directory.")
flags.mark_flags_as_required(["checkpoint", "out"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.format == "saved_model":
        if FLAGS.quantize != "float32" or FLAGS.calibration_data:
            raise app.UsageError("--quantize / --calibration_data apply to --format=tflite only")
        path = saved_model.export_saved_model(saved_model.SavedModelConfig(
            checkpoint=FLAGS.checkpoint, out_dir=FLAGS.out, frames=FLAGS.frames,
            size=FLAGS.size, model_name=FLAGS.model_name, version=FLAGS.version,
            top_k=FLAGS.top_k, overwrite=FLAGS.overwrite))
        logging.info("SavedModel written to %s", path)
        print(path)
    else:
        logging.info("Converting to TFLite (%s); this takes a minute", FLAGS.quantize)
        path = tflite.export_tflite(tflite.TFLiteConfig(
            checkpoint=FLAGS.checkpoint, out_dir=FLAGS.out, frames=FLAGS.frames,
            size=FLAGS.size, quantize=FLAGS.quantize, calibration_data=FLAGS.calibration_data,
            calibration_clips=FLAGS.calibration_clips, model_name=FLAGS.model_name))
        with open(path, "rb") as f:
            ops = tflite.op_counts(f.read())
        logging.info("TFLite ops: %s", json.dumps(ops))
        print(path)


if __name__ == "__main__":
    cli.run(main)
