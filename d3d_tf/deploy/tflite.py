"""TFLite export with builtin ops only, and an op-list check.

The model is rebuilt with `pooling="2d"`: TFLite has no MAX_POOL_3D / AVG_POOL_3D builtin, so
the 3D pools are expressed as 2D pools over reshaped tensors (exact for max pooling); and with
`conv_impl="2d_all"`: every conv becomes CONV_2D (`[1,k,k]` per frame, `[t,1,1]` over time,
the full `[3,7,7]` stem as a sum of 2D convs over shifted frames), because TFLite's CONV_3D is
float-only and outside XNNPACK. The exported model therefore has no 3D op at all. The
converter is restricted to builtin op sets, and the produced flatbuffer is parsed and rejected
(`TFLiteOpsError`) if it holds any Select TF op (`Flex...`) or custom op.

Model interface (batch fixed to 1, static shapes are what mobile delegates want):
    input   frames         uint8   [1, T, H, W, 3]   RGB 0..255, normalized inside the model
    outputs logits         float32 [1, K]
            probabilities  float32 [1, K]
uint8 input keeps the device code trivial (camera frames go in as they are) and makes the
normalization part of the model, so it cannot be forgotten or done with the wrong range.

Variants (`quantize`):
    float32       plain conversion
    float16       weights stored as float16 (dequantized to float32 at load on CPU)
    dynamic_int8  weights int8, activations float (dynamic-range quantization)
    int8          full-integer quantization calibrated on a representative dataset. With every
                  conv lowered to CONV_2D the convs are int8; the converter still allows
                  TFLITE_BUILTINS next to TFLITE_BUILTINS_INT8 so that a model built with
                  CONV_3D (conv_impl="3d") converts too, its CONV_3D left in float32 between
                  QUANTIZE / DEQUANTIZE (see `op_counts` of the result).
"""
from __future__ import annotations

import collections
import csv
import io
import itertools
import os
import tempfile
from collections.abc import Callable, Iterable

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from ai_edge_litert import schema_py_generated as schema

from d3d_tf.core import atomic
from d3d_tf.data import damaged_shards, pipeline, preprocessing, read_errors
from d3d_tf.deploy import common
from d3d_tf.deploy.config import card_stem, tflite_labels  # noqa: F401 (also tflite.*)

QUANTIZE_MODES = common.QUANTIZE_MODES
_BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


class TFLiteOpsError(ValueError):
    """The converted model uses ops outside the TFLite builtin set."""





def op_counts(tflite_model: bytes) -> dict[str, int]:
    """{op name: number of uses} over all subgraphs of a .tflite flatbuffer.

    Builtin ops are named as in the schema (`CONV_3D`, `QUANTIZE`, ...); custom ops (which
    include Select TF ops, `FlexMaxPool3D` ...) by their custom code.
    """
    model = schema.Model.GetRootAsModel(tflite_model, 0)
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Builtin codes above 127 live only in BuiltinCode; the deprecated byte is capped.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.append(code.CustomCode().decode())
        else:
            names.append(_BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}"))
    counts = collections.Counter()
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for j in range(graph.OperatorsLength()):
            counts[names[graph.Operators(j).OpcodeIndex()]] += 1
    return dict(sorted(counts.items()))


def non_builtin_ops(counts: dict[str, int]) -> list[str]:
    """Names in an `op_counts` result that are not TFLite builtins (Flex or custom ops)."""
    return [name for name in counts if name not in schema.BuiltinOperator.__dict__]


def check_builtin_only(tflite_model: bytes, what: str = "model") -> dict[str, int]:
    """Returns `op_counts`; raises TFLiteOpsError naming any Select TF / custom op."""
    counts = op_counts(tflite_model)
    bad = non_builtin_ops(counts)
    if bad:
        raise TFLiteOpsError(f"{what} uses non-builtin ops {bad}: it needs the Flex delegate "
                             f"or custom kernels, which stock LiteRT does not have")
    return counts


def _write_tflite_saved_model(model: keras.Model, spec, path: str) -> None:
    """SavedModel with the TFLite interface (module doc), the converter's input."""
    t, h, w, _ = spec.input_shape

    def serve(frames):
        logits = model(preprocessing.normalize_rgb(frames, spec.rgb_range), training=False)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    # ExportArchive rather than saved_model.write_module: with a plain tf.Module the converter
    # keeps Keras variables as READ_VARIABLE ops that fail at run time instead of constants.
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serving_default", fn=serve,
                         input_signature=[tf.TensorSpec([1, t, h, w, 3], tf.uint8, name="frames")])
    archive.write_out(path, verbose=False)


def synthetic_clips(n: int, shape, seed: int = 0) -> Iterable[np.ndarray]:
    """`n` random uint8 clips `[1,T,H,W,3]`: smooth moving blobs rather than white noise, so
    calibration sees image-like activation ranges."""
    rng = np.random.default_rng(seed)
    t, h, w, _ = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(n):
        clip = np.empty((t, h, w, 3), np.float32)
        base = rng.uniform(0, 255, 3)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        vy, vx = rng.uniform(-2, 2, 2)
        color = rng.uniform(0, 255, 3)
        for i in range(t):
            blob = np.exp(-((yy - cy - vy * i) ** 2 + (xx - cx - vx * i) ** 2) / (0.05 * h * w))
            clip[i] = base * (1 - blob[..., None]) + color * blob[..., None]
        clip += rng.normal(0, 8, clip.shape)
        yield np.clip(clip, 0, 255).astype(np.uint8)[None]


def record_clips(file_pattern: str, n: int, shape,
                 skip_damaged=None) -> Iterable[np.ndarray]:
    """Up to `n` uint8 clips `[1,T,H,W,3]` from TFRecords (eval mode: centre crop, the centre
    clip of each video, short side resized to H). With `skip_damaged` (a
    `damaged_shards.DamageLog`), damaged shards are read up to the damage and entered there."""
    return (clip for clip, _ in labelled_record_clips(file_pattern, n, shape, skip_damaged))


def labelled_record_clips(file_pattern: str, n: int, shape,
                          skip_damaged=None) -> Iterable[tuple[np.ndarray, int]]:
    """(uint8 clip `[1,T,H,W,3]`, label) pairs, read as `record_clips` reads them."""
    t, h, _, _ = shape
    cfg = pipeline.PipelineConfig(file_pattern=file_pattern, num_frames=t, crop_size=h,
                                  training=False, batch_size=1, num_clips=1,
                                  resize_short_side=h, rgb_range="[0,1]")
    with read_errors.explained(file_pattern):  # a damaged shard: one line naming it
        for element in pipeline.make_dataset(cfg, skip_damaged=skip_damaged).take(n):
            rgb = element["rgb"].numpy()  # [1,T,H,W,3] in [0,1]
            yield (np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8),
                   int(element["label"].numpy()[0]))


def convert(model: keras.Model, spec, *, quantize: str = "float32",
            representative: Callable[[], Iterable[np.ndarray]] | None = None) -> bytes:
    """Converts a classifier built with `pooling="2d"` to a builtin-ops-only .tflite.

    representative: for `int8`, a callable returning an iterable of uint8 `[1,T,H,W,3]` clips.
    Raises TFLiteOpsError if the result holds a Flex or custom op.
    """
    with tempfile.TemporaryDirectory() as tmp:
        flatbuffer = _converter(model, spec, quantize, representative, tmp).convert()
    check_builtin_only(flatbuffer, f"{spec.name} ({quantize})")
    return flatbuffer


def _converter(model: keras.Model, spec, quantize: str, representative, tmp: str):
    """The TFLiteConverter of `convert`, reading a SavedModel it writes into `tmp`."""
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"--quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    if model.d3d_config.pooling != "2d":
        raise ValueError("build the model with pooling='2d' for TFLite (no MAX_POOL_3D builtin)")
    _write_tflite_saved_model(model, spec, tmp)
    converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize == "int8":
        if representative is None:
            raise ValueError("int8 quantization needs representative clips")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([clip] for clip in representative())
        # BUILTINS as well as BUILTINS_INT8: CONV_3D has no int8 kernel and stays float.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


LAYER_REPORT_FIELDS = ("op", "layer", "rmse_over_scale", "rmse", "max_abs_error", "scale",
                       "num_elements", "tensor")


def layer_errors(model: keras.Model, spec, representative, debug_clips) -> list[dict]:
    """Per-tensor error of the full-integer int8 model against float, worst first.

    LiteRT's QuantizationDebugger runs `debug_clips()` (uint8 `[1,T,H,W,3]`) through a copy of
    the int8 model that also computes each quantized op in float, and compares. Each row has
    the op, its S3D-G layer (the first scope of the tensor name), the RMSE of the dequantized
    output against float, that RMSE in quantization steps (`rmse_over_scale`: ~0.29 is pure
    rounding of a well-calibrated tensor, much more means clipped or badly scaled ranges),
    the largest absolute error and the scale.
    """
    with tempfile.TemporaryDirectory() as tmp:
        converter = _converter(model, spec, "int8", representative, tmp)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=lambda: ([clip] for clip in debug_clips()))
        debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    rows = []
    for line in dump.getvalue().splitlines()[1:]:
        # op_name,tensor_idx,num_elements,stddev,mean_error,max_abs_error,mean_squared_error,
        # scale,zero_point,tensor_name (';'-joined names: split the first 9 commas only)
        op, _, num, _, _, max_abs, mse, scale, _, tensor = line.split(",", 9)
        rmse, scale = float(np.sqrt(float(mse))), float(scale)
        scope = tensor.split(";")[0].split("/")
        layer = scope[1] if len(scope) > 1 else scope[0]
        rows.append({"op": op, "layer": layer.removesuffix("_1"),
                     "rmse_over_scale": rmse / scale if scale else float("nan"), "rmse": rmse,
                     "max_abs_error": float(max_abs), "scale": scale,
                     "num_elements": int(float(num)), "tensor": tensor})
    rows.sort(key=lambda r: -r["rmse_over_scale"] if np.isfinite(r["rmse_over_scale"]) else 0)
    return rows


def accuracy(path: str, model: keras.Model, spec, clips) -> dict:
    """Top-1 of the .tflite model at `path` and of the float Keras `model` on the same clips.

    clips: iterable of (uint8 `[1,T,H,W,3]`, label). Returns {"clips", "tflite_top1",
    "float_top1", "agreement"} (fractions; agreement: clips both models give the same class).
    """
    from d3d_tf.deploy.predictor import Predictor

    lite_model = Predictor(path)
    n = hits_tflite = hits_float = agree = 0
    for clip, label in clips:
        lite = int(np.argmax(lite_model.probabilities(clip)))
        logits = model(preprocessing.normalize_rgb(tf.constant(clip), spec.rgb_range),
                       training=False)
        ref = int(np.argmax(np.asarray(logits)))
        n += 1
        hits_tflite += lite == label
        hits_float += ref == label
        agree += lite == ref
    if not n:
        raise ValueError("no labelled clips to measure accuracy on")
    return {"clips": n, "tflite_top1": hits_tflite / n, "float_top1": hits_float / n,
            "agreement": agree / n}


def export_tflite(config: common.ExportConfig) -> str:
    """Converts a model directory to `<out_dir>/<model_name>_<quantize>.tflite`; returns its
    path. Also writes labels.txt and `<name>_<quantize>_model_card.{json,md}` (with the op
    list) into out_dir."""
    if config.quantize not in QUANTIZE_MODES:
        raise ValueError(f"--quantize must be one of {QUANTIZE_MODES}, got {config.quantize!r}")
    common.check_model_name(config.model_name)
    if config.skip_corrupt_records and not config.calibration_data:
        raise ValueError("--skip_corrupt_records applies to the records of --calibration_data")
    # A glob that matches nothing is refused before the minute-long conversion, not after.
    for pattern in (config.calibration_data, config.accuracy_data):
        if pattern:
            pipeline.list_files(pattern)
    model, spec, model_dir = common.load_for_export(
        config.model_dir, frames=config.num_frames, size=config.crop_size, pooling="2d",
        conv_impl="2d_all")
    damage = damaged_shards.DamageLog() if config.skip_corrupt_records else None
    if config.calibration_data:
        def representative():
            return record_clips(config.calibration_data, config.calibration_clips,
                                spec.input_shape, damage)
    else:
        def representative():
            return synthetic_clips(config.calibration_clips, spec.input_shape)
    flatbuffer = convert(model, spec, quantize=config.quantize, representative=representative)
    if damage is not None and config.quantize == "int8":
        logging.warning("int8 calibration on %s: %s", config.calibration_data,
                        damage.summary() or "no damaged shard")
    os.makedirs(config.out_dir, exist_ok=True)
    name = config.model_name or spec.name
    path = os.path.join(config.out_dir, f"{name}_{config.quantize}.tflite")
    atomic.write_bytes(path, flatbuffer)
    preprocessing.write_labels(os.path.join(config.out_dir, common.LABELS_FILE),
                               common.labels_of(spec))
    counts = op_counts(flatbuffer)
    t, h, w, _ = spec.input_shape
    extra = {
        "tflite_file": os.path.basename(path),
        "quantize": config.quantize,
        "tflite_interface": f"frames uint8 [1, {t}, {h}, {w}, 3] -> logits, probabilities "
                            "float32 [1, K]",
        "tflite_ops": counts,
    }
    if config.quantize == "int8":
        extra["calibration"] = config.calibration_data or "synthetic random clips"
        if damage is not None:
            extra["calibration_skipped_damaged"] = damage.to_json()
        if counts.get("CONV_3D"):  # only a model built with conv_impl="3d" has one
            extra["int8_caveat"] = (f"{counts['CONV_3D']} CONV_3D op(s): no int8 kernel, they "
                                    "run in float32 between QUANTIZE/DEQUANTIZE")
        if config.layer_report:
            logging.info("int8 layer report: running the quantization debugger")
            rows = layer_errors(model, spec, representative, lambda: itertools.islice(
                representative(), min(8, config.calibration_clips)))
            report = os.path.join(config.out_dir, f"{name}_int8_layers.csv")
            with atomic.open_for_write(report, newline="") as f:
                writer = csv.DictWriter(f, fieldnames=LAYER_REPORT_FIELDS, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
            worst = [r for r in rows if r["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD",
                                                     "MUL", "CONCATENATION")][:5]
            extra["int8_layer_report"] = os.path.basename(report)
            extra["int8_worst_layers"] = ", ".join(
                f"{r['layer']} {r['op']} {r['rmse_over_scale']:.2f} steps" for r in worst)
    if config.accuracy_data:
        logging.info("accuracy of the .tflite model and the float model on %s",
                     config.accuracy_data)
        extra["accuracy"] = accuracy(path, model, spec, labelled_record_clips(
            config.accuracy_data, config.accuracy_clips, spec.input_shape))
        extra["accuracy"]["data"] = config.accuracy_data
    common.write_model_card(config.out_dir, spec, model_dir=model_dir, fmt="TFLite",
                            extra=extra, stem=card_stem(path))
    return path
