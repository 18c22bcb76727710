"""What every export format shares: finding the model directory, rebuilding the classifier at
the export clip size, and turning uint8 frames into the network's input range.

Exports serve RGB classifiers only (the paper's point: no optical flow at inference).
"""
from __future__ import annotations

import ctypes
import os
import shutil

import keras

from d3d_tf.core import atomic
from d3d_tf.data import preprocessing
from d3d_tf.deploy.config import (  # noqa: F401 (the names export/ has always had)
    FORMATS,
    LABELS_FILE,
    MODEL_CARD_JSON,
    MODEL_CARD_MD,
    QUANTIZE_MODES,
    ExportConfig,
)
from d3d_tf.models import saving


def load_for_export(path: str, *, frames: int | None = None, size: int | None = None,
                    pooling: str = "3d", conv_impl: str | None = None,
                    ) -> tuple[keras.Model, saving.ModelSpec, str]:
    """Rebuilds the classifier of a model (or run) directory for inference.

    frames, size: clip length T and square side H = W in pixels; default: the spec's
      input_shape. The network is fully convolutional, so weights load at any size (the slim
      head's pool kernel shrinks to the input).
    pooling: `3d`, or `2d` for TFLite (no MAX_POOL_3D / AVG_POOL_3D ops).
    conv_impl: None keeps the spec's; `2d_all` for TFLite lowers every conv to CONV_2D.
    Returns (model, spec with the export input_shape, resolved model directory). Dropout is a
    no-op because every export calls the model with training=False.
    """
    for flag, value in (("--num_frames", frames), ("--crop_size", size)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    model_dir = saving.resolve_model_dir(path)
    spec = saving.load_spec(model_dir)
    if spec.modality != "rgb":
        raise ValueError(f"{model_dir}: only RGB models can be exported, this one is "
                         f"{spec.modality!r}")
    t, h, w, _ = spec.input_shape
    t, h, w = frames or t, size or h, size or w
    if None in (t, h, w):
        raise ValueError(f"{model_dir}: the spec's input_shape {spec.input_shape} leaves the "
                         f"clip size open; pass --num_frames and --crop_size")
    overrides = {"pooling": pooling}
    if conv_impl is not None:
        overrides["conv_impl"] = conv_impl
    model, spec = saving.load_model_dir(model_dir, input_shape=(int(t), int(h), int(w)),
                                        **overrides)
    return model, spec, model_dir


def check_model_name(name: str | None, source: str = "--model_name") -> str | None:
    """`name` if it is a plain file name, else ValueError naming `source` (the flag, or the
    data file the name was read from): it names a folder / file stem inside the output
    folder, so it must not climb out of it. Every export checks the name it writes under,
    whether from --model_name or from the model's own file (model.json, detector.json)."""
    if name is not None and (not isinstance(name, str) or not name or name in (".", "..")
                             or "/" in name or os.sep in name or "\0" in name):
        raise ValueError(f"{source}={name!r} must be a plain name (no '/', not '..'): it "
                         f"names a file or folder inside --out_dir")
    return name


def swap_in_dir(new: str, final: str) -> None:
    """Puts the complete directory `new` at `final`, replacing what is there.

    Linux: one atomic renameat2(RENAME_EXCHANGE), so `final` is never missing. Elsewhere:
    the old directory is renamed aside first and put back if the second rename fails.
    """
    if not os.path.exists(final):
        os.replace(new, final)
        return
    if _exchange(new, final):
        shutil.rmtree(new)  # now holds the old version
        return
    old = final + ".old"
    shutil.rmtree(old, ignore_errors=True)
    os.replace(final, old)
    try:
        os.replace(new, final)
    except BaseException:
        os.replace(old, final)
        raise
    shutil.rmtree(old)


def _exchange(a: str, b: str) -> bool:
    """Atomically swaps the paths a and b (Linux renameat2); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def labels_of(spec: saving.ModelSpec) -> list[str]:
    """The spec's class names, or `class_0` ... when the model directory has none."""
    return list(spec.labels) if spec.labels else [f"class_{i}" for i in range(spec.num_classes)]


def write_model_card(directory: str, spec: saving.ModelSpec, *, model_dir: str,
                     fmt: str, extra: dict | None = None, stem: str = "") -> dict:
    """Writes `model_card.json` and `model_card.md` into `directory` (`<stem>_model_card.*`
    when a stem is given); returns the card dict."""
    t, h, w, c = spec.input_shape
    card = {
        "model": spec.name,
        "format": fmt,
        "num_classes": spec.num_classes,
        "classes": labels_of(spec),
        "input": {"frames": t, "height": h, "width": w, "channels": c, "dtype": "uint8",
                  "layout": "[batch, frames, height, width, 3] RGB"},
        "normalization": {"rgb_range": spec.rgb_range,
                          "in_graph": preprocessing.normalization_text(spec.rgb_range)},
        "config": spec.config,
        "source_checkpoint": os.path.abspath(model_dir),
        "source": spec.source,
        "metrics": dict(spec.metrics),
        **(extra or {}),
    }
    prefix = f"{stem}_" if stem else ""
    atomic.write_json(os.path.join(directory, prefix + MODEL_CARD_JSON), card)
    lines = [
        f"# {spec.name} ({fmt})", "",
        (f"- Classes: {spec.num_classes} ({', '.join(card['classes'][:20])}"
         f"{', ...' if spec.num_classes > 20 else ''})"),
        f"- Input: uint8 RGB `[batch, {t}, {h}, {w}, 3]` (frames, height, width, channels)",
        f"- Normalization (inside the graph): {preprocessing.normalization_text(spec.rgb_range)}",
        (f"- Backbone: {spec.name}, depth_multiplier {spec.config.get('depth_multiplier')}, "
         f"head {spec.config.get('head')}"),
        f"- Source checkpoint: `{card['source_checkpoint']}`" + (
            f" (from {spec.source})" if spec.source else ""),
    ]
    if spec.metrics:
        lines.append("- Metrics: " + ", ".join(f"{k} = {v}" for k, v in spec.metrics.items()))
    else:
        lines.append("- Metrics: none recorded in model.json")
    for key, value in (extra or {}).items():
        lines.append(f"- {key}: {value}")
    atomic.write_text(os.path.join(directory, prefix + MODEL_CARD_MD), "\n".join(lines) + "\n")
    return card
