"""The training loop: one function, `train(TrainConfig)`, for every task and strategy.

Keras 3 `fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), so this loop
calls the task's `train_step` through `strategy.run` on a dataset distributed with
`strategy.distribute_datasets_from_function` (each input pipeline reads its share of the
shards and batches the per-replica batch).

Outputs under `model_dir`:
  ckpt/            tf.train.CheckpointManager checkpoints (network, optimizer incl. its step
                   counter); a rerun with the same model_dir resumes from the latest one
  train/, eval/    TensorBoard summaries (loss terms, accuracy, learning rate, clips/s, frames)
  model/           the final model directory (`d3d_tf.models.saving`), also rewritten at each
                   evaluation: what export / predict / evaluate consume
"""
from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from d3d_tf import models
from d3d_tf.core import atomic, config_flags, run_lock
from d3d_tf.core import progress as progress_lib
from d3d_tf.core.config_flags import field
from d3d_tf.data import damaged_shards, pipeline, preprocessing, read_errors, records
from d3d_tf.data import service as data_service
from d3d_tf.data.pipeline import MODALITIES
from d3d_tf.data.preprocessing import RGB_RANGES
from d3d_tf.distinit import distinit
from d3d_tf.models import cpu_choices, layers, s3dg, saving
from d3d_tf.models import summary as model_summary
from d3d_tf.probes import decoders, flow_tasks
from d3d_tf.training import checkpoints, evaluation, summaries, tasks
from d3d_tf.training import strategy as strategy_lib

TASKS = ("classify", "distill", "finetune", "distinit", "ava") + flow_tasks.TASKS
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs. Sizes in frames / pixels; steps are optimizer steps.

    Each field is also a flag of `python -m d3d_tf.train` (same name, default and help text,
    `d3d_tf.core.config_flags`): a new option is one field here.
    """
    model_dir: str = field(help="Output directory: checkpoints (ckpt/), TensorBoard summaries "
                           "(train/, eval/) and the final model directory (model/).")
    train_data: str = field(help="Glob of training TFRecord shards.")
    task: str = field("classify", "classify: train on one modality; distill: RGB student + "
                      "frozen teacher (D3D); finetune: restore a backbone, new head; distinit: "
                      "video student of frozen image teachers on (unlabeled) videos; ava: "
                      "action detector on AVA keyframe records (docs/ava.md); flow_loss, "
                      "cnn_flow: the flow alternatives of D3D Table 6 (docs/probes.md).",
                      choices=TASKS)
    eval_data: str | None = field(None, "Glob of validation TFRecord shards (optional).")
    labels: str | None = field(None, "labels.txt (default: next to the training shards; "
                                "--task=distinit needs none).")
    # network (the options of d3d_tf.models.S3DGConfig that a run may set)
    model: str = field("s3dg", "Network preset of d3d_tf.models (s3dg, s3d, i3d, ...).")
    depth_multiplier: float = field(1.0, "Channel multiplier of every conv.", min=0.0)
    first_temporal_kernel_size: int | None = field(
        None, "Temporal size of the [k,7,7] stem conv (1, 3, 5, 7; default: the preset's).")
    temporal_conv_startat: str | None = field(
        None, "First block with temporal kernels (2C, 3B, ..., or 'none' for a 2D network; "
        "default: the preset's).")
    gating_startat: str | None = field(
        None, "First block with self-gating (2C, 3B, ..., or 'none'; default: the preset's).")
    head: str = field("slim", "Classifier head: slim (avg pool [2,7,7], 1x1x1 conv, mean over "
                      "time) or global (mean over T,H,W, 1x1x1 conv).", choices=s3dg.HEADS)
    conv_impl: str = field("auto", "How convolutions run (same variables and numbers): 2d lowers "
                           "[1,k,k] and [t,1,1] convs to 2D convs, 2d_spatial only the [1,k,k] "
                           "ones, 2d_all also the stem, 3d uses conv3d, auto picks 3d on "
                           "a machine with a GPU, else 2d or 2d_spatial for this CPU "
                           "(docs/performance.md).",
                           choices=layers.CONV_IMPLS)
    num_frames: int = field(64, "Frames per clip (T).", min=1)
    frame_stride: int = field(1, "Take every n-th stored frame.", min=1)
    crop_size: int = field(224, "Square crop side in pixels (H = W).", min=1)
    resize_short_side: int | None = field(None, "Resize the short side to this many pixels "
                                          "before cropping (default: as stored).")
    min_scale: float = field(1.0, "Training crop side scaled by U(min_scale, 1) then resized "
                             "(random-resized crop); 1 = plain random crop.")
    random_flip: bool = field(True, "Training: flip clips horizontally with p=0.5 (RGB and "
                              "flow together, flow x negated). A flip mirrors motion, so turn "
                              "it off when classes are left/right or rotation-sense motions.")
    modality: str = field("rgb", "Input of the trained network.", choices=MODALITIES)
    rgb_range: str = field("[-1,1]", "How RGB pixels are scaled for the network.",
                           choices=RGB_RANGES, aliases=("input_range",))
    dropout_keep_prob: float = field(0.8, "Head dropout keep probability.")
    weight_decay: float = field(1e-7, "L2 weight decay of the conv kernels (added to the loss, "
                                "as in slim S3D-G).", min=0)
    batch_norm_decay: float = field(0.999, "Decay of the BN moving averages used at evaluation "
                                    "(slim: 0.999; use ~0.9 for runs of a few hundred steps, "
                                    "whose moving averages would otherwise still be near their "
                                    "initial values).")
    label_smoothing: float = field(0.0, "Label smoothing of the CE loss.", min=0)
    # distillation
    teacher: str | None = field(None, "distill: model directory of the frozen teacher.")
    distill_endpoints: tuple = field(("logits",), "distill: where to match the teacher: logits "
                                     "and/or endpoints (2C, 4C, 4F, ... or slim names).",
                                     aliases=("distill_endpoint",))
    distill_weights: tuple = field((1.0,), "distill: lambda of Eq. 1, one per "
                                   "--distill_endpoints value (or one for all).", item=float,
                                   aliases=("distill_weight",))
    action_loss_weight: float = field(1.0, "distill: weight of the CE loss; 0 = 'D3D without "
                                      "action loss'.")
    # DistInit (d3d_tf.distinit.distinit; docs/distinit.md)
    distinit_teachers: tuple = field((), "distinit: frozen image teachers, keras.applications "
                                     "names (ResNet50), .keras files or model directories of "
                                     "1-frame networks (r2d_18); one head each (Eq. 3).")
    distinit_teacher_weights: tuple = field(("imagenet",), "distinit: weights of each "
                                            "keras.applications teacher (imagenet, a local "
                                            "file, or none), one per teacher or one for all.")
    distinit_frames: str = field("random", "distinit: frames the teachers see: the center "
                                 "frame or random ones.", choices=distinit.FRAME_PICKS)
    distinit_num_frames: int = field(1, "distinit: frames per clip whose teacher logits are "
                                     "averaged (Eq. 1; K random frames).", min=1)
    distinit_temperature: float = field(1.0, "distinit: softmax temperature tau (Eq. 1, 2).")
    distinit_loss: str = field("ce", "distinit: soft-target cross-entropy (Eq. 2) or MSE on "
                               "logits (Table 3).", choices=distinit.LOSSES)
    distinit_entropy_threshold: float | None = field(
        None, "distinit: zero weight for clips whose target entropy (nats) is above this.")
    distinit_precomputed: bool = field(False, "distinit: read the teachers' per-frame logits "
                                       "stored with the records (python -m "
                                       "d3d_tf.distinit_targets) instead of running them.")
    distinit_loss_weights: tuple = field((), "distinit: loss weight of each teacher (Eq. 3; "
                                         "default 1 each).", item=float)
    # fine-tuning
    init_from: str | None = field(None, "finetune / ava: model directory whose backbone "
                                  "initializes the network (the head is re-initialized).")
    freeze_until: str | None = field(None, "Freeze all blocks up to this endpoint (e.g. 4F; "
                                     "layer3 for a video ResNet).")
    # AVA detection (d3d_tf.ava.ava_task; --init_from gives the backbone)
    ava_endpoint: str = field("Mixed_4f", "ava: backbone endpoint whose time-averaged features "
                              "are cropped per person box (RoIAlign).")
    ava_roi_size: int = field(14, "ava: RoIAlign output side, feature pixels (MaxPool_5a "
                              "halves it before Mixed_5b).", min=1)
    ava_max_boxes: int = field(16, "ava: boxes per keyframe (ground truth in training, best-"
                               "scored proposals at evaluation); more are dropped.", min=1)
    ava_box_jitter: float = field(0.1, "ava: training boxes = ground truth with centre moved by "
                                  "up to this fraction of its size and sides scaled by "
                                  "exp(+-this).", min=0)
    ava_box_loss_weight: float = field(1.0, "ava: weight of the box-offset (Huber) loss.",
                                       min=0)
    # flow alternatives (d3d_tf.probes.flow_tasks)
    flow_endpoint: str = field("3A", "flow_loss, cnn_flow: endpoint read by the flow decoder.")
    flow_decoder: str = field("pwc", "flow_loss, cnn_flow: flow decoder (simple, spatial, pwc).",
                              choices=decoders.DECODERS)
    flow_weight: float = field(1.0, "flow_loss: lambda_flow, weight of the flow loss next to "
                               "CE.", min=0)
    flow_net_init: str | None = field(None, "cnn_flow: OUT/<endpoint> folder of a probe run "
                                      "(python -m d3d_tf.probe) that initializes the RGB layers "
                                      "and the decoder.")
    temporal_stream: str | None = field(None, "cnn_flow: flow model directory fed the "
                                        "predicted flow (e.g. the flow teacher).")
    # optimization
    optimizer: str = field("sgd", "SGD with momentum or AdamW.", choices=OPTIMIZERS)
    learning_rate: float = field(0.1, "Peak learning rate.", min=0)
    momentum: float = field(0.9, "SGD momentum.", min=0)
    adamw_weight_decay: float = field(1e-4, "AdamW decoupled weight decay.", min=0)
    schedule: str = field("cosine", "Learning-rate schedule after the warmup.",
                          choices=SCHEDULES)
    warmup_steps: int = field(0, "Linear warmup steps from 0.", min=0)
    step_boundaries: tuple = field((), "step schedule: steps where lr *= step_factor.", item=int)
    step_factor: float = field(0.1, "step schedule: decay factor.")
    cosine_alpha: float = field(0.0, "cosine schedule: final lr fraction.")
    clip_norm: float | None = field(None, "Clip gradients to this global L2 norm.")
    train_steps: int = field(1000, "Optimizer steps in total.", min=1)
    batch_size: int = field(8, "GLOBAL batch size (all replicas); must be divisible by the "
                            "replica count.", min=1)
    strategy: str = field("default", "Distribution: one device, MirroredStrategy, or "
                          "MultiWorkerMirroredStrategy (TF_CONFIG).",
                          choices=strategy_lib.STRATEGIES)
    sync_batch_norm: bool = field(False, "Batch-norm statistics over the global batch (all "
                                  "replicas).")
    precision: str = field("auto", "Compute dtype: float32, bfloat16 (Keras mixed_bfloat16: "
                           "bf16 compute, float32 variables; ~10x slower than float32 on CPUs "
                           "without AVX512-BF16/AMX) or mixed_float16 (float16 compute, float32 "
                           "variables, dynamic loss scaling; for GPUs, docs/gpu.md). auto: "
                           "mixed_float16 on a machine with a GPU; on a CPU bfloat16 where it "
                           "is native and one replica's step is at least "
                           f"{cpu_choices.BF16_MIN_GFLOPS_PER_STEP:g} forward GFLOPs, else "
                           "float32 (docs/performance.md).", choices=cpu_choices.PRECISIONS)
    jit_compile: bool = field(False, "Compile each replica's train step with XLA "
                              "(tf.function(jit_compile=True)); the first step then takes "
                              "longer (compilation), the others usually less on a GPU.")
    # bookkeeping
    checkpoint_every: int = field(500, "Checkpoint every N steps.", min=1)
    max_checkpoints: int = field(3, "Checkpoints to keep.", min=1)
    eval_every: int = field(0, "Evaluate (and rewrite model/) every N steps; 0 = only at the "
                            "end.", min=0)
    eval_clips: int = field(1, "Clips per validation video.", min=1)
    eval_crops: int = field(1, "Spatial crops per validation clip: 1 (centre) or 3 (along the "
                            "long side).", choices=(1, 3))
    eval_batch_size: int | None = field(None, "Evaluation batch (default --batch_size).")
    log_every: int = field(10, "Progress line every N steps.", min=1)
    summary_images_every: int = field(0, "Input-frame image summaries every N steps (0 = first "
                                      "step only).", min=0)
    shuffle_buffer: int = field(256, "Training shuffle buffer (videos).", min=1)
    data_service: str | None = field(None, "grpc://host:port of a tf.data service dispatcher "
                                     "(python -m d3d_tf.data_service): the training pipeline "
                                     "then runs on its workers, each clip once per epoch "
                                     "(docs/gpu.md).")
    seed: int = field(0, "Random seed (initialization and data order).")
    skip_corrupt_records: bool = damaged_shards.skip_field()


# --- validation ------------------------------------------------------------------------


def _require_data(pattern: str, what: str) -> list[str]:
    files = sorted(tf.io.gfile.glob(pattern)) if pattern else []
    if not files:
        raise FileNotFoundError(f"{what}: no TFRecord files match {pattern!r}")
    return files


def _shards_without_flow(files: list[str]) -> list[str]:
    """The shards of `files` whose first record holds no optical flow (one record read per
    shard: `prepare` writes a shard with one --flow setting). Empty shards, and shards whose
    first record is damaged (the input pipeline reports those), are not listed."""
    missing = []
    for path in files:
        try:
            first = next(records.read_records(path), None)
        except records.RecordError:
            continue
        if first is None:
            continue
        parsed = records.parse_sequence_example(tf.constant(first), with_rgb=False,
                                                with_flow=True)
        if int(tf.shape(parsed[records.FLOW_KEY])[0]) == 0:
            missing.append(path)
    return missing


def no_flow_text(files: list[str], missing: list[str]) -> str:
    """Which of the shards `files` hold no flow (`missing`, from `_shards_without_flow`)."""
    if len(missing) == len(files):
        return "none of its shards holds optical flow"
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    return (f"{len(missing)} of its {len(files)} shards hold no optical flow "
            f"({', '.join(missing[:3])}{more})")


def labels_path(config: TrainConfig) -> str:
    if config.labels:
        return config.labels
    files = sorted(tf.io.gfile.glob(config.train_data))
    return os.path.join(os.path.dirname(files[0]) if files else ".", "labels.txt")


def label_names(config: TrainConfig) -> list[str]:
    """Class names of the run's labels file (`labels_path`), in label-id order.

    `--task=distinit` learns its teachers' outputs, not labels: its records may be unlabeled
    (label -1, `prepare --format=list` writes no labels.txt), so there a missing labels.txt
    next to the shards or an empty one gives [] (no label range to check). An explicit
    `--labels` must still exist. Every other task needs a non-empty file: FileNotFoundError /
    ValueError name it."""
    path = labels_path(config)
    if config.task == "distinit" and (
            (not config.labels and not os.path.exists(path))
            or (os.path.isfile(path) and not os.path.getsize(path))):
        return []
    if not os.path.isfile(path):
        raise FileNotFoundError(f"labels file {path} not found: pass --labels or put "
                                "labels.txt next to the training shards")
    return preprocessing.read_labels(path)


def _require_model_dir(path, flag: str, task: str, hint: str = "") -> None:
    """Raises a clear error unless `path` (the value of `flag`) is a model directory."""
    if not path:
        raise ValueError(f"{task} needs {flag}=<model directory>")
    try:
        saving.resolve_model_dir(path)  # a model directory or a run directory holding one
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{flag}={path}: not a model directory ({e}){hint}") from None


def validate(config: TrainConfig) -> None:
    """Checks the configuration before anything is built; ValueError/FileNotFoundError with a
    message naming the flag and the file. With `--strategy=multi_worker` it first makes the
    process's strategy (`strategy.make_strategy`): its checks read records, a TF op."""
    c = config
    config_flags.check(c)  # choices and lower bounds declared on the fields
    if c.strategy == "multi_worker":  # before the first TF op of the process (record reads)
        strategy_lib.make_strategy(c.strategy)
    if c.model not in models.PRESETS:
        raise ValueError(f"--model={c.model!r} unknown; choose one of {', '.join(models.PRESETS)}")
    if c.depth_multiplier <= 0:
        raise ValueError(f"--depth_multiplier must be > 0, got {c.depth_multiplier}")
    train_files = _require_data(c.train_data, "--train_data")
    if c.eval_data:
        _require_data(c.eval_data, "--eval_data")
    label_names(c)  # FileNotFoundError / ValueError naming the file
    needs_flow = c.modality == "flow"
    for e in c.distill_endpoints:
        if e != "logits":
            models.resolve_endpoint(e)
    if c.task == "distill":
        _require_model_dir(c.teacher, "--teacher", "--task=distill", "; train the teacher first")
        teacher_spec = saving.load_spec(c.teacher)
        needs_flow = needs_flow or teacher_spec.modality == "flow"
        if c.modality != "rgb":
            raise ValueError("--task=distill trains an RGB student: use --modality=rgb")
        if len(c.distill_weights) not in (1, len(c.distill_endpoints)):
            raise ValueError(f"--distill_weights has {len(c.distill_weights)} values for "
                             f"{len(c.distill_endpoints)} --distill_endpoints values")
        inner = [e for e in c.distill_endpoints if e != "logits"]
        if inner and teacher_spec.config.get("depth_multiplier") != c.depth_multiplier:
            raise ValueError(
                f"distillation at {inner} needs feature maps of equal shape: the teacher has "
                f"depth_multiplier {teacher_spec.config.get('depth_multiplier')}, the student "
                f"{c.depth_multiplier}")
    if c.task == "distinit":
        if not c.distinit_teachers:
            raise ValueError("--task=distinit needs --distinit_teachers")
        if c.eval_data:
            raise ValueError("--task=distinit has no labels to evaluate: drop --eval_data and "
                             "evaluate after --task=finetune")
        distinit.check_precomputed(c.distinit_precomputed, train_files, c.distinit_teachers,
                                   c.distinit_teacher_weights)
        if c.distinit_temperature <= 0:
            raise ValueError(f"--distinit_temperature must be > 0, got {c.distinit_temperature}")
    if c.task == "finetune":
        _require_model_dir(c.init_from, "--init_from", "--task=finetune")
    elif c.init_from and c.task not in ("finetune", "ava"):
        raise ValueError("--init_from is only used with --task=finetune or --task=ava")
    if c.freeze_until:
        name = saving.load_spec(c.init_from).name if c.task == "finetune" else c.model
        models.family_of(name).resolve_endpoint(c.freeze_until)
    flow_tasks.validate(c)
    if c.skip_corrupt_records and c.task == "ava":
        raise ValueError("--skip_corrupt_records is not available with --task=ava")
    if c.data_service is not None:
        data_service.parse_address(c.data_service)
        if c.skip_corrupt_records:
            raise ValueError("--skip_corrupt_records is not available with --data_service (the "
                             "service's workers cannot run its Python reader)")
    needs_flow = needs_flow or c.task == "flow_loss"
    missing = _shards_without_flow(train_files) if needs_flow else []
    if missing:
        why = {"distill": "teacher", "flow_loss": "flow loss"}.get(c.task, "--modality=flow")
        raise ValueError(f"this run needs optical flow ({why}) "
                         f"but --train_data={c.train_data}: "
                         f"{no_flow_text(train_files, missing)}: prepare the data with flow "
                         "(d3d_tf.prepare --flow=tvl1)")


# --- building --------------------------------------------------------------------------


class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `base(warmup_steps)` over `warmup_steps`, then `base(step)`.

    base: a LearningRateSchedule or a constant learning rate (float); either round-trips
    through `get_config` / `from_config`.
    """

    def __init__(self, base, warmup_steps: int):
        self.base = base
        self.warmup_steps = warmup_steps

    def _base(self, step):
        if isinstance(self.base, keras.optimizers.schedules.LearningRateSchedule):
            return tf.cast(self.base(step), tf.float32)
        return tf.constant(float(self.base), tf.float32)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = self._base(step)
        if not self.warmup_steps:
            return lr
        frac = tf.minimum(step / float(self.warmup_steps), 1.0)
        return tf.where(step < self.warmup_steps, frac * self._base(float(self.warmup_steps)),
                        lr)

    def get_config(self):
        base = self.base
        if isinstance(base, keras.optimizers.schedules.LearningRateSchedule):
            base = keras.optimizers.schedules.serialize(base)
        return {"base": base, "warmup_steps": self.warmup_steps}

    @classmethod
    def from_config(cls, config):
        base = config["base"]
        if isinstance(base, dict):
            base = keras.optimizers.schedules.deserialize(base)
        return cls(base, config["warmup_steps"])


def make_schedule(c: TrainConfig):
    if c.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            0.0 if c.warmup_steps else c.learning_rate,
            decay_steps=max(c.train_steps - c.warmup_steps, 1), alpha=c.cosine_alpha,
            warmup_target=c.learning_rate if c.warmup_steps else None,
            warmup_steps=c.warmup_steps)
    if c.schedule == "step" and c.step_boundaries:
        bounds = [int(b) for b in c.step_boundaries]
        values = [c.learning_rate * c.step_factor ** i for i in range(len(bounds) + 1)]
        base = keras.optimizers.schedules.PiecewiseConstantDecay(bounds, values)
        return WarmupSchedule(base, c.warmup_steps)
    return WarmupSchedule(c.learning_rate, c.warmup_steps)


def make_optimizer(c: TrainConfig, *, loss_scale: bool = False):
    """The run's optimizer; `loss_scale` wraps it in a `keras.optimizers.LossScaleOptimizer`
    (dynamic loss scaling for float16: the task's train step scales the loss by it)."""
    lr = make_schedule(c)
    if c.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(lr, momentum=c.momentum)
    else:
        optimizer = keras.optimizers.AdamW(lr, weight_decay=c.adamw_weight_decay)
    return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scale else optimizer


# TrainConfig fields passed to the network builder as they are (S3DGConfig fields).
_NETWORK_FIELDS = ("depth_multiplier", "dropout_keep_prob", "weight_decay", "sync_batch_norm",
                   "batch_norm_decay", "head", "conv_impl")
# Fields whose None means "the preset's value" and whose "none" means None.
_PRESET_FIELDS = ("first_temporal_kernel_size", "temporal_conv_startat", "gating_startat")


def _model_options(c: TrainConfig, in_channels: int) -> dict:
    """The S3DGConfig options of this run (on top of the `c.model` preset)."""
    options = {k: getattr(c, k) for k in _NETWORK_FIELDS}
    for k in _PRESET_FIELDS:
        value = getattr(c, k)
        if value is not None:
            options[k] = None if str(value).lower() == "none" else value
    # Other families (video ResNets) take only the options their config has.
    fields = models.family_of(c.model).config_fields
    return {k: v for k, v in {**options, "in_channels": in_channels}.items() if k in fields}


def clip_shape(c: TrainConfig) -> tuple[int, int, int, int]:
    """[T, H, W, C] of the clips the trained network reads: C = 2 for flow (x, y), 3 for RGB."""
    return (c.num_frames, c.crop_size, c.crop_size, 2 if c.modality == "flow" else 3)


def build_task(c: TrainConfig, num_classes: int, global_batch: int, *,
               loss_scale: bool = False):
    """Builds (inside the current strategy scope) the network, the task and its optimizer
    (`loss_scale`: see `make_optimizer`). Every network, a frozen teacher included, computes in
    Keras' global dtype policy of the moment. Returns (task, network, teacher spec or None)."""
    shape = clip_shape(c)
    channels = shape[-1]
    common = {"label_smoothing": c.label_smoothing, "global_batch_size": global_batch,
                  "clip_norm": c.clip_norm}
    teacher_spec = None
    if c.task in flow_tasks.TASKS:
        task, network = flow_tasks.build_task(c, num_classes, shape, _model_options(c, 3),
                                              **common)
    elif c.task == "distill":
        inner = tuple(e for e in c.distill_endpoints if e != "logits")
        network = models.build_classifier(c.model, num_classes=num_classes, input_shape=shape,
                                          endpoints=inner, **_model_options(c, 3))
        t_channels = 2 if saving.load_spec(c.teacher).modality == "flow" else 3
        teacher, teacher_spec = tasks.load_teacher(
            c.teacher, input_shape=(*shape[:3], t_channels), endpoints=inner)
        if teacher_spec.num_classes != num_classes and "logits" in c.distill_endpoints:
            raise ValueError(f"teacher {c.teacher} has {teacher_spec.num_classes} classes, the "
                             f"data {num_classes}: logits cannot be distilled")
        task = tasks.Distiller(network, teacher, teacher_modality=teacher_spec.modality,
                               endpoints=c.distill_endpoints, distill_weights=c.distill_weights,
                               action_loss_weight=c.action_loss_weight, **common)
    elif c.task == "distinit":
        teachers = distinit.load_teachers(c.distinit_teachers, c.distinit_teacher_weights,
                                          rgb_range=c.rgb_range)
        # The stored logits' width, before a graph would fail on it.
        distinit.check_precomputed(c.distinit_precomputed,
                                   _require_data(c.train_data, "--train_data"), teachers)
        network = models.build_classifier(c.model, num_classes=sum(t.num_classes for t in
                                                                   teachers),
                                          input_shape=shape, **_model_options(c, channels))
        task = distinit.DistInit(
            network, teachers, pick=c.distinit_frames, num_frames=c.distinit_num_frames,
            temperature=c.distinit_temperature, loss=c.distinit_loss,
            entropy_threshold=c.distinit_entropy_threshold,
            teacher_weights=c.distinit_loss_weights, modality=c.modality, **common)
    else:
        options = _model_options(c, channels)
        name = c.model
        if c.task == "finetune":
            init_spec = saving.load_spec(c.init_from)
            name = init_spec.name
            # The backbone's architecture comes from the restored model; only the options
            # that own no variables (dropout, weight decay, sync BN) come from this run.
            options = {**init_spec.config, **{k: options[k] for k in (
                "dropout_keep_prob", "weight_decay", "sync_batch_norm", "batch_norm_decay")}}
            if options["in_channels"] != channels:
                raise ValueError(f"--init_from={c.init_from} is a {init_spec.modality} model "
                                 f"but --modality={c.modality}")
        network = models.build_classifier(name, num_classes=num_classes, input_shape=shape,
                                          **options)
        task = tasks.Classifier(network, modality=c.modality, **common)
    task.compile(optimizer=make_optimizer(c, loss_scale=loss_scale))
    return task, network, teacher_spec


def _pipeline(c: TrainConfig, *, training: bool, batch: int, seed: int | None,
              modalities) -> pipeline.PipelineConfig:
    return pipeline.PipelineConfig(
        file_pattern=c.train_data if training else c.eval_data, num_frames=c.num_frames,
        frame_stride=c.frame_stride, crop_size=c.crop_size, training=training,
        modalities=tuple(modalities), batch_size=batch,
        num_clips=1 if training else c.eval_clips, num_crops=1 if training else c.eval_crops,
        resize_short_side=c.resize_short_side,
        min_scale=c.min_scale if training else 1.0, random_flip=c.random_flip,
        rgb_range=c.rgb_range, num_classes=len(label_names(c)) or None,
        teacher_logits=training and c.task == "distinit" and c.distinit_precomputed,
        shuffle_buffer=c.shuffle_buffer, seed=seed)


def _image_summary(batch, step):
    """First clip of the batch: up to 4 frames (RGB, or flow as (x, y, 0))."""
    for key in ("rgb", "flow"):
        if key not in batch:
            continue
        x = batch[key]
        x = x.values[0] if hasattr(x, "values") else x
        clip = tf.cast(x[0], tf.float32)                  # [T,H,W,C]
        frames = tf.gather(clip, np.linspace(0, clip.shape[0] - 1, min(4, clip.shape[0]))
                           .astype(np.int32))
        if key == "flow":
            frames = tf.concat([frames, tf.zeros_like(frames[..., :1])], -1)
        lo = -1.0 if tf.reduce_min(frames) < 0 else 0.0
        summaries.images(f"input/{key}", (frames - lo) / (1.0 - lo), step=step)


# --- the loop --------------------------------------------------------------------------


def evaluate_network(c: TrainConfig, network, modality: str, skip_damaged=None) -> dict:
    """Clip- and video-level metrics of `network` on `c.eval_data` (single pass, local)."""
    cfg = _pipeline(c, training=False, batch=c.eval_batch_size or c.batch_size, seed=c.seed,
                    modalities=(modality,))
    try:
        preds = evaluation.predict(network, pipeline.make_dataset(cfg, skip_damaged=skip_damaged),
                                   modality=modality, progress_every_s=60,
                                   total_clips=pipeline.num_eval_clips(cfg))
    except evaluation.EmptyDataError:
        raise read_errors.nothing_read("--eval_data", c.eval_data, skip_damaged) from None
    return evaluation.metrics(preds)


def save_model(c: TrainConfig, directory: str, network, names, modality, metrics: dict,
               step: int, train_inputs=()) -> None:
    # A DistInit network's classes are its teachers' (heads dropped by fine-tuning).
    network = getattr(network, "saved_network", network)  # flow tasks: see flow_tasks
    if network is None:
        return
    spec = saving.spec_for(network, name=network.name if network.name in models.PRESETS
                           else c.model, labels=[] if c.task == "distinit" else names,
                           modality=modality,
                           rgb_range=c.rgb_range,
                           source=f"d3d_tf.train task={c.task} step={step}", metrics=metrics,
                           train_inputs=list(train_inputs), **video_counts(c))
    saving.save_model_dir(directory, network, spec)


def video_counts(c: TrainConfig) -> dict:
    """model.json's `train_videos` (records in --train_data, from the shards' record headers:
    no record is parsed) and `pretrain_videos` (the --init_from model's `train_videos`)."""
    if c.train_data not in _VIDEO_COUNTS:  # once per run: a save at every evaluation
        _VIDEO_COUNTS[c.train_data] = sum(records.count_framed(f)[0] for f in
                                          sorted(tf.io.gfile.glob(c.train_data)))
    pretrain = saving.load_spec(c.init_from).train_videos if c.init_from else None
    return {"train_videos": _VIDEO_COUNTS[c.train_data], "pretrain_videos": pretrain}


_VIDEO_COUNTS: dict = {}


def resolve_precision(c: TrainConfig, num_classes: int, per_replica: int,
                      devices=None) -> str:
    """`c.precision`, or for `auto` the dtype this machine trains this run fastest in.

    devices: the machine's physical devices (default: this process's,
    `cpu_choices.local_devices()`). `auto` is `cpu_choices.auto_choices`: mixed_float16 with a
    GPU; on a CPU bfloat16 only where it is native and only for a step of at least
    `cpu_choices.BF16_MIN_GFLOPS_PER_STEP` forward GFLOPs, which it counts on a float32 copy
    of the network built at the run's clip shape.
    """
    flags = cpu_choices.cpu_flags()
    devices = cpu_choices.local_devices() if devices is None else devices
    on_gpu = cpu_choices.has_gpu(devices)
    native = cpu_choices.has_native_bfloat16(flags)
    if c.precision != "auto":
        if c.precision == "bfloat16" and not on_gpu and native is False:
            logging.warning("precision bfloat16: this CPU has no native bfloat16 (AVX512-BF16 "
                            "or AMX), so bfloat16 convolutions fall back to slow Eigen kernels "
                            "(~10x slower than float32 here); use precision float32.")
        if c.precision == "mixed_float16" and not on_gpu:
            logging.warning("precision mixed_float16 without a GPU: CPUs have no fast float16 "
                            "convolutions, so this runs slower than float32 (it is meant for "
                            "GPUs; here it only checks a run).")
        return c.precision
    if on_gpu or not native:
        return cpu_choices.auto_choices(devices, flags).precision
    shape = clip_shape(c)
    probe = models.build_classifier(c.model, num_classes=num_classes, input_shape=shape,
                                    **_model_options(c, shape[-1]))
    gflops = model_summary.total_flops(probe) / 1e9 * per_replica
    del probe
    return cpu_choices.auto_precision(flags, gflops)


_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16",
             "mixed_float16": "mixed_float16"}


def check_loss_scaling(c: TrainConfig, precision: str, replicas: int) -> None:
    """ValueError for what loss scaling does not support: `--clip_norm` with several replicas
    (the clipped, all-reduced gradients and the LossScaleOptimizer's conditional update issue
    collectives that TensorFlow mismatches across replicas)."""
    if precision == "mixed_float16" and c.clip_norm and replicas > 1:
        raise ValueError(f"--clip_norm={c.clip_norm:g} with --precision=mixed_float16 works on "
                         f"one replica only, this strategy has {replicas}: drop --clip_norm or "
                         "use --precision=float32 or bfloat16")


def set_precision_policy(precision: str) -> None:
    """Sets Keras' global dtype policy for a resolved `precision` (float32, bfloat16 or
    mixed_float16); the networks built afterwards compute in it (variables stay float32)."""
    keras.mixed_precision.set_global_policy(_POLICIES[precision])


def make_train_function(strategy: tf.distribute.Strategy, task, *, jit_compile: bool = False):
    """`tf.function` running `task.train_step` on every replica of `strategy` on one
    distributed batch; returns the logs averaged over replicas. `jit_compile` compiles each
    replica's step with XLA (the input pipeline and the replica reduction stay outside)."""
    step = tf.function(task.train_step, jit_compile=True) if jit_compile else task.train_step

    @tf.function
    def train_fn(batch):
        logs = strategy.run(step, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                for k, v in logs.items()}

    return train_fn


def train(config: TrainConfig) -> dict:
    """Trains (or resumes) the run described by `config`; returns the final metrics dict.

    `precision` sets Keras' global dtype policy for the run only: the caller's policy is
    restored on return (and on error). Holds `model_dir/train.lock` meanwhile: a second process
    on the same model_dir is refused (run_lock.RunLockedError naming the first).
    """
    validate(config)
    policy = keras.mixed_precision.global_policy()
    try:
        with run_lock.hold(config.model_dir, run_lock.lock_name(config.strategy)), \
                read_errors.explained(config.train_data, config.eval_data):
            return _train(config)
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _train(config: TrainConfig) -> dict:
    c = config
    if c.task == "ava":
        from d3d_tf.ava import ava_task
        return ava_task.train(c)
    names = label_names(c)
    strategy = strategy_lib.make_strategy(c.strategy)
    replicas = strategy.num_replicas_in_sync
    per_replica = strategy_lib.per_replica_batch(strategy, c.batch_size)
    precision = resolve_precision(c, len(names) or 1, per_replica)
    check_loss_scaling(c, precision, replicas)
    set_precision_policy(precision)
    logging.info("precision %s%s, conv_impl %s, jit_compile %s (%s)", precision,
                 " (auto)" if c.precision == "auto" else "",
                 cpu_choices.resolve_conv_impl(c.conv_impl), c.jit_compile,
                 cpu_choices.describe(cpu_choices.cpu_flags()))
    chief = strategy_lib.is_chief(strategy)
    out_dir = strategy_lib.worker_dir(c.model_dir, strategy)
    os.makedirs(out_dir, exist_ok=True)
    tf.random.set_seed(c.seed)
    keras.utils.set_random_seed(c.seed)
    logging.info("strategy %s: %d replica(s), global batch %d = %d per replica",
                 c.strategy, replicas, c.batch_size, per_replica)

    with strategy.scope():
        task, network, teacher_spec = build_task(c, len(names), c.batch_size,
                                                 loss_scale=precision == "mixed_float16")
        optimizer = task.optimizer
        optimizer.build(network.trainable_variables)
        ckpt = tf.train.Checkpoint(network=network, optimizer=optimizer)
    checkpoints.remove_temp_dirs(os.path.join(out_dir, "ckpt"))
    # The newest intact checkpoint (damaged ones are skipped loudly), before the manager
    # reads the folder's checkpoint list.
    latest = checkpoints.restore_newest_intact(ckpt, os.path.join(c.model_dir, "ckpt"),
                                               update_state=chief)
    manager = tf.train.CheckpointManager(ckpt, os.path.join(out_dir, "ckpt"),
                                         max_to_keep=c.max_checkpoints)
    if latest:
        logging.info("resumed from %s at step %d", latest, int(optimizer.iterations.numpy()))
    elif c.task == "finetune":
        loaded = tasks.init_from_model_dir(network, c.init_from)
        logging.info("fine-tuning: %d variables from %s, new %d-class head",
                     len(loaded), c.init_from, len(names))
    if c.freeze_until:
        frozen = tasks.freeze_until(network, c.freeze_until)
        logging.info("froze %d layers up to %s", len(frozen), c.freeze_until)
    start = int(optimizer.iterations.numpy())

    modalities = ["rgb"] if c.task in ("distill",) else [c.modality]
    if c.task in flow_tasks.TASKS:
        modalities = flow_tasks.modalities(c)
    if teacher_spec is not None and teacher_spec.modality not in modalities:
        modalities.append(teacher_spec.modality)
    if c.task == "distinit" and "rgb" not in modalities and not c.distinit_precomputed:
        # on-the-fly image teachers see the clip's RGB frames
        modalities.append("rgb")
    # Reseed from the start step so that a resumed run does not replay the same clips.
    seed = c.seed + start
    damage = damaged_shards.DamageLog() if c.skip_corrupt_records else None

    def dataset_fn(ctx):
        ds = pipeline.make_dataset(_pipeline(c, training=True, batch=c.batch_size,
                                             seed=seed, modalities=modalities), ctx, damage)
        return data_service.distribute(ds, c.data_service) if c.data_service else ds

    dist_ds = strategy.distribute_datasets_from_function(dataset_fn)
    iterator = iter(dist_ds)

    train_fn = make_train_function(strategy, task, jit_compile=c.jit_compile)

    writer = tf.summary.create_file_writer(os.path.join(out_dir, "train")) if chief \
        else tf.summary.create_noop_writer()
    eval_writer = tf.summary.create_file_writer(os.path.join(out_dir, "eval")) if chief \
        else tf.summary.create_noop_writer()
    train_modality = "rgb" if c.task == "distill" else c.modality
    results: dict = {}

    def run_eval(step):
        nonlocal results
        if not c.eval_data:
            return
        t0 = time.time()
        results = evaluate_network(c, network, train_modality, damage)
        s = evaluation.summary(results)
        logging.info("eval step %d: clip top1 %.4f top5 %.4f | video top1 %.4f mca %.4f (%.0fs)",
                     step, s["clip_top1"], s["clip_top5"], s["video_top1"],
                     s["video_mean_class_accuracy"], time.time() - t0)
        with eval_writer.as_default():
            for k, v in s.items():
                summaries.scalar(f"eval/{k}", v, step=step)
        if chief:
            save_model(c, os.path.join(c.model_dir, "model"), network, names, train_modality,
                       s, step, modalities)

    step = start
    t_last, steps_last = time.time(), 0
    t_begin = time.time()
    step_times = []
    # The ETA's rate counts from the end of the first step (which traces and compiles).
    progress = progress_lib.Progress(c.train_steps - start)
    logs, first_logs = {}, {}
    # The last log_every steps' logs (small tensors, no device sync): their mean goes into
    # train_summary.json, steadier than the last batch alone.
    recent = collections.deque(maxlen=c.log_every)
    while step < c.train_steps:
        try:
            batch = next(iterator)
        except StopIteration:  # the training data repeats: it holds no record at all
            raise read_errors.nothing_read("--train_data", c.train_data, damage) from None
        logs = train_fn(batch)
        recent.append(logs)
        step += 1
        steps_last += 1
        progress.update()
        if step == start + 1 or step % c.log_every == 0 or step == c.train_steps:
            values = {k: float(v) for k, v in logs.items()}     # syncs with the device
            if step == 1:  # the losses at the start, for the λ·L_d ≈ CE rule (paper Sec. 5.6)
                first_logs = values
            if not all(math.isfinite(v) for v in values.values()):
                raise FloatingPointError(f"non-finite loss at step {step}: {values}")
            now = time.time()
            if step > start + 1:
                step_times.append((now - t_last) / steps_last)
            clips_per_s = steps_last * c.batch_size / max(now - t_last, 1e-9)
            lr = float(optimizer.learning_rate)
            logging.info("step %d/%d  %s  lr %.3g  %.1f clips/s  ETA %s%s", step,
                         c.train_steps, "  ".join(f"{k} {v:.4g}" for k, v in values.items()),
                         lr, clips_per_s, progress_lib.hms(progress.eta()),
                         f"  ({damage.count_text()})" if damage and damage.shards else "")
            for shard in damage.new_shards() if damage else ():
                logging.warning("SKIPPED DAMAGED SHARD %s", shard.describe())
            with writer.as_default():
                for k, v in values.items():
                    summaries.scalar(f"train/{k}", v, step=step)
                summaries.scalar("train/learning_rate", lr, step=step)
                summaries.scalar("train/clips_per_second", clips_per_s, step=step)
                if step == start + 1 or (c.summary_images_every and
                                         step % c.summary_images_every == 0):
                    _image_summary(batch, step)
            t_last, steps_last = now, 0
        if step % c.checkpoint_every == 0 or step == c.train_steps:
            manager.save(checkpoint_number=step)
        if c.eval_every and step % c.eval_every == 0 and step != c.train_steps:
            run_eval(step)
            t_last, steps_last = time.time(), 0
    total = time.time() - t_begin
    run_eval(step)
    if chief and not c.eval_data:
        save_model(c, os.path.join(c.model_dir, "model"), network, names, train_modality, {},
                   step, modalities)
    writer.flush()
    eval_writer.flush()
    summary = {"step": step, "start_step": start,
               "seconds_per_step": float(np.median(step_times)) if step_times else None,
               "train_seconds": total,
               "first_train_logs": first_logs,
               "config": dataclasses.asdict(c),  # every setting of the run, for reports
               "final_train_logs": {k: float(v) for k, v in logs.items()},
               "mean_train_logs": {k: float(np.mean([float(r[k]) for r in recent]))
                                   for k in logs} if recent else {},
               "mean_train_logs_steps": len(recent),
               **(evaluation.summary(results) if results else {})}
    if damage is not None:
        summary["skipped_damaged"] = damage.to_json()
        if damage.shards:
            logging.warning("done with damaged data: %s", damage.summary())
    logging.info("done: %s", summary)
    if chief:  # step time and final metrics for reports (`make demo` reads it)
        path = os.path.join(c.model_dir, "train_summary.json")
        if os.path.exists(path) and (not step_times or not first_logs):
            # A rerun or resumed run did not time steps / see step 1: keep what was measured.
            with open(path) as f:
                earlier = json.load(f)
            if not step_times:
                summary["seconds_per_step"] = earlier.get("seconds_per_step")
            if not first_logs:
                summary["first_train_logs"] = earlier.get("first_train_logs", {})
        atomic.write_json(path, summary)
    return summary
