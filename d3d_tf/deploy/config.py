"""What to export (`ExportConfig`, the flags of `python -m d3d_tf.export`) and the names of the
files an export writes, without TensorFlow: the CLI declares its flags and `Predictor` finds a
.tflite file's labels before TensorFlow is imported.
"""
from __future__ import annotations

import dataclasses
import os

from d3d_tf.core.config_flags import field
from d3d_tf.data import preprocessing, read_options

FORMATS = ("saved_model", "tflite", "ava_saved_model")
QUANTIZE_MODES = ("float32", "float16", "dynamic_int8", "int8")
LABELS_FILE = "labels.txt"
MODEL_CARD_JSON = "model_card.json"
MODEL_CARD_MD = "model_card.md"


@dataclasses.dataclass
class ExportConfig:
    """What to export, and how: the settings of `python -m d3d_tf.export` (one flag a field).

    The TF Serving layout is `<out_dir>/<model_name>/<version>`; TFLite writes
    `<out_dir>/<model_name>_<quantize>.tflite`, labels.txt and that file's model card.
    """

    model_dir: str = field(help="Model directory (model.json + weights.npz) or a training run "
                           "directory holding model/.")
    out_dir: str = field(help="Output directory: the TF Serving model root for saved_model "
                         "(<out_dir>/<model_name>/<version>), the .tflite folder for tflite.")
    format: str = field("saved_model", "Export format (ava_saved_model: an AVA detector, frames + "
                        "boxes -> per-box scores; docs/ava.md).", choices=FORMATS)
    num_frames: int | None = field(None, "Clip length T in frames (default: the model's).",
                                   min=1)
    crop_size: int | None = field(None, "Frame height = width in pixels (default: the "
                                  "model's).", min=1)
    model_name: str | None = field(None, "Model name (TF Serving name / .tflite file stem); "
                                   "default: the model's preset name.")
    version: int = field(1, "saved_model: version directory (a positive integer).", min=1)
    top_k: int = field(5, "saved_model: number of top classes in the outputs (capped at the "
                       "number of classes).", min=1)
    overwrite: bool = field(False, "saved_model: replace an existing version directory.")
    quantize: str = field("float32", "tflite: float32, float16 weights, dynamic-range int8 "
                          "weights, or full-integer int8 (calibrated).", choices=QUANTIZE_MODES)
    calibration_data: str | None = field(None, "tflite int8: TFRecord glob of clips for "
                                         "calibration; default: synthetic random clips (only "
                                         "good for testing).")
    calibration_clips: int = field(64, "tflite int8: number of calibration clips.", min=1)
    accuracy_data: str | None = field(None, "tflite: labelled TFRecord glob (e.g. the test "
                                      "split): top-1 of the .tflite model and of the float "
                                      "Keras model on the same centre clips, in the model card.")
    accuracy_clips: int = field(256, "tflite: at most this many --accuracy_data clips.", min=1)
    layer_report: bool = field(True, "tflite int8: per-layer quantization error (LiteRT's "
                               "QuantizationDebugger on calibration clips) in "
                               "<model_name>_int8_layers.csv, the worst layers in the model card.")
    skip_corrupt_records: bool = read_options.skip_field()  # --calibration_data's records


def card_stem(tflite_path: str) -> str:
    """`<name>_<quantize>` of a .tflite path: each variant's model card is
    `<stem>_model_card.{json,md}` beside it, so exporting int8 keeps the float32 card."""
    return os.path.splitext(os.path.basename(tflite_path))[0]


def tflite_labels(path: str) -> list[str] | None:
    """Class names written beside a .tflite file (None if there are none)."""
    candidate = os.path.join(os.path.dirname(os.path.abspath(path)), LABELS_FILE)
    return preprocessing.read_labels(candidate) if os.path.isfile(candidate) else None
