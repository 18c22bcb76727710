"""A model directory: everything needed to rebuild a trained classifier, framework-light.

    DIR/model.json      ModelSpec: preset, S3DGConfig fields, classes, input shape, labels,
                        input range, modality, provenance and metrics
    DIR/weights.npz     every variable, keyed by its Keras path (`Mixed_4b.Branch_1...../kernel`)

Weights are keyed by path rather than by position so that a model can be rebuilt with other
build-time options that own no variables (`pooling="2d"` for TFLite, another input size) and so
that a backbone can be loaded into a classifier with a new head (fine-tuning).
"""
from __future__ import annotations

import dataclasses
import json
import os
import zipfile

import keras
import numpy as np

from d3d_tf.core import atomic
from d3d_tf.data.preprocessing import RGB_RANGES
from d3d_tf.models import registry

SPEC_FILE = "model.json"
WEIGHTS_FILE = "weights.npz"


@dataclasses.dataclass
class ModelSpec:
    """What a saved classifier is.

    input_shape: `(T, H, W, C)` the model was trained with; H, W and T may differ at inference
      (the network is fully convolutional) but exports default to it.
    rgb_range: how pixels are scaled before the network: `[-1,1]` (ours, TF-Slim's and
      the released D3D checkpoints') or `[0,1]` (torchvision's, before its mean/std).
    modality: `rgb` or `flow` (flow is `flow_px / 20` in [-1, 1], 2 channels).
    train_inputs: the modalities its training read (`rgb`, `flow`), a teacher's input
      included (D3D: `["rgb", "flow"]`); empty in model directories written before it was
      recorded.
    train_videos: videos (records) in its run's --train_data shards, counted from the record
      headers; None where not recorded (converted weights, older directories).
    pretrain_videos: the `train_videos` of the --init_from model it was fine-tuned from
      (DistInit's Table 4 "Size": the unlabeled set's videos); None where not recorded.
    """

    name: str
    num_classes: int
    input_shape: tuple
    config: dict
    labels: list = dataclasses.field(default_factory=list)
    rgb_range: str = "[-1,1]"
    modality: str = "rgb"
    source: str = ""
    metrics: dict = dataclasses.field(default_factory=dict)
    train_inputs: list = dataclasses.field(default_factory=list)
    train_videos: int | None = None
    pretrain_videos: int | None = None

    def __post_init__(self):
        self.input_shape = tuple(self.input_shape)
        if self.rgb_range not in RGB_RANGES:
            raise ValueError(f"rgb_range must be one of {RGB_RANGES}, got {self.rgb_range!r}")
        if self.labels and len(self.labels) != self.num_classes:
            raise ValueError(
                f"{len(self.labels)} labels given for a model with {self.num_classes} classes"
            )

    def build(self, *, input_shape=None, endpoints=(), **overrides) -> keras.Model:
        """Builds the (untrained) classifier.

        input_shape: `(T, H, W)` or `(T, H, W, C)` to build at another clip size (the network
          is fully convolutional; C must be the spec's); default: `self.input_shape`.
        endpoints: extra outputs (slim names or aliases), as in `s3dg.build_classifier`.
        overrides: config fields that own no variables (`pooling`, `conv_impl`,
          `dropout_keep_prob`, ...).
        The family (S3D-G, video ResNet) and its config class come from `self.name`.
        """
        family = registry.family_of(self.name)
        cfg = family.config_class(**{**self.config, **overrides})
        shape = self.input_shape if input_shape is None else tuple(input_shape)
        if len(shape) == 3:
            shape = (*shape, self.input_shape[3])
        return family.build_classifier(
            self.name, num_classes=self.num_classes, input_shape=shape, config=cfg,
            endpoints=endpoints,
        )


def spec_for(model: keras.Model, *, name: str, labels=(), **fields) -> ModelSpec:
    """The ModelSpec of a classifier built by `models.build_classifier`."""
    cfg = model.d3d_config
    inputs = model.inputs[0].shape[1:]
    logits = model.output["logits"] if isinstance(model.output, dict) else model.output
    return ModelSpec(
        name=name,
        num_classes=int(logits.shape[-1]),
        input_shape=tuple(inputs),
        config=dataclasses.asdict(cfg),
        labels=list(labels),
        **fields,
    )


def save_weights(model: keras.Model, path: str) -> None:
    """Writes every variable of `model` to an `.npz` keyed by Keras variable path."""
    arrays = {w.path: np.asarray(w) for w in model.weights}
    if len(arrays) != len(model.weights):
        raise ValueError("model has duplicate variable paths; cannot save by path")
    with atomic.open_for_write(path, "wb") as f:
        np.savez(f, **arrays)


def load_weights(model: keras.Model, path: str, *, skip_prefixes=(), allow_missing=False) -> list:
    """Loads an `.npz` written by `save_weights` into `model`, matching by variable path.

    skip_prefixes: variable paths starting with these are left as initialized (e.g. `Logits.`
      for a new head). allow_missing: tolerate model variables absent from the file.
    Returns the paths that were loaded. Raises ValueError naming the file and the variable on a
    shape mismatch, a missing variable, or a variable in the file the model does not have.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {k: data[k] for k in data.files}
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise ValueError(f"{path}: holds object arrays (pickled Python objects), which are "
                             f"never loaded; save the weights as numeric arrays") from None
        raise ValueError(f"{path}: not a readable .npz weights file ({e})") from None
    except FileNotFoundError:
        raise
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npz weights file ({e})") from None
    loaded, missing = [], []
    for w in model.weights:
        if w.path.startswith(tuple(skip_prefixes)):
            continue
        if w.path not in stored:
            missing.append(w.path)
            continue
        value = stored.pop(w.path)
        if tuple(value.shape) != tuple(w.shape):
            raise ValueError(
                f"{path}: variable {w.path} has shape {value.shape} in the file but "
                f"{tuple(w.shape)} in the model"
            )
        w.assign(value)
        loaded.append(w.path)
    if missing and not allow_missing:
        raise ValueError(f"{path}: missing {len(missing)} variable(s), e.g. {missing[:3]}")
    unused = [k for k in stored if not k.startswith(tuple(skip_prefixes))]
    if unused:
        raise ValueError(f"{path}: {len(unused)} variable(s) not in the model, e.g. {unused[:3]}")
    return loaded


def save_model_dir(directory: str, model: keras.Model, spec: ModelSpec) -> None:
    """Writes `model.json` and `weights.npz` into `directory` (created if needed)."""
    os.makedirs(directory, exist_ok=True)
    save_weights(model, os.path.join(directory, WEIGHTS_FILE))
    atomic.write_json(os.path.join(directory, SPEC_FILE), dataclasses.asdict(spec))


def load_spec(path: str) -> ModelSpec:
    """The ModelSpec of a model directory or of a training run directory (`RUN/model`)."""
    path = os.path.join(resolve_model_dir(path), SPEC_FILE)
    with open(path) as f:
        fields = json.load(f)
    if "input_range" in fields:  # the field's name in model directories written before
        fields["rgb_range"] = fields.pop("input_range")
    return ModelSpec(**fields)


def run_name(directory: str) -> str:
    """A short name for a model or run directory: its folder's name, or the run's when the
    folder is a run's `model/` (`runs/d3d/model` -> `d3d`)."""
    path = os.path.normpath(directory)
    base = os.path.basename(path)
    return os.path.basename(os.path.dirname(path)) if base == "model" else base


def resolve_model_dir(path: str) -> str:
    """`path` itself if it is a model directory, else `path/model` (a training run directory).

    Raises FileNotFoundError naming `path` when neither holds a `model.json`.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or directory")
    for candidate in (path, os.path.join(path, "model")):
        if os.path.isfile(os.path.join(candidate, SPEC_FILE)):
            return candidate
    raise FileNotFoundError(
        f"{path} is neither a model directory (no {SPEC_FILE}) nor a training run "
        f"directory (no model/{SPEC_FILE})"
    )


def load_model_dir(path: str, *, input_shape=None, endpoints=(), trainable: bool = True,
                   **overrides) -> tuple[keras.Model, ModelSpec]:
    """Rebuilds the classifier saved in a model (or run) directory and loads its weights.

    The one way every tool (evaluation, distillation teachers, fine-tuning, export, probes)
    turns a model directory back into a network.

    input_shape: `(T, H, W)` (or with C) to rebuild at another clip size; default: the spec's.
    endpoints: extra outputs (e.g. `("3A",)`): the model then returns a dict with `logits`.
    trainable: False freezes every variable (teachers, frozen probes).
    overrides: S3DGConfig fields that own no variables (e.g. `pooling="2d"`,
      `dropout_keep_prob=1.0`).
    Returns (model, spec); `spec.input_shape` is the shape the model was built with.
    """
    directory = resolve_model_dir(path)
    spec = load_spec(directory)
    model = spec.build(input_shape=input_shape, endpoints=endpoints, **overrides)
    load_weights(model, os.path.join(directory, WEIGHTS_FILE))
    if not trainable:
        model.trainable = False
    built = tuple(model.inputs[0].shape[1:])
    return model, dataclasses.replace(spec, input_shape=built)
