"""Export a model directory for inference.

    python -m d3d_tf.export --model_dir=runs/demo --format=saved_model --out_dir=exports
    python -m d3d_tf.export --model_dir=runs/demo/model --format=tflite --quantize=int8 \\
        --calibration_data='data/demo/val-*.tfrecord' --out_dir=exports/tflite

See docs/export.md.
"""
from __future__ import annotations

import json

from absl import app, flags, logging

from d3d_tf.core import cli, config_flags
from d3d_tf.deploy.config import ExportConfig

FLAGS = flags.FLAGS
config_flags.define_flags(ExportConfig)


def main(argv):
    from d3d_tf.ava import ava_saved_model
    from d3d_tf.deploy import saved_model, tflite

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = config_flags.from_flags(ExportConfig)
        if config.format != "tflite" and (config.quantize != "float32"
                                          or config.calibration_data):
            raise ValueError("--quantize / --calibration_data apply to --format=tflite only")
        if config.format == "ava_saved_model":
            path = ava_saved_model.export(config.model_dir, config.out_dir,
                                          model_name=config.model_name, version=config.version,
                                          overwrite=config.overwrite)
        elif config.format == "saved_model":
            path = saved_model.export_saved_model(config)
            logging.info("SavedModel written to %s", path)
        else:
            logging.info("Converting to TFLite (%s); this takes a minute", config.quantize)
            path = tflite.export_tflite(config)
            with open(path, "rb") as f:
                logging.info("TFLite ops: %s", json.dumps(tflite.op_counts(f.read())))
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        raise app.UsageError(str(e)) from None
    print(path)


if __name__ == "__main__":
    cli.run(main, groups=cli.help_groups(ExportConfig))
