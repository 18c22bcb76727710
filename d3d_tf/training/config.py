"""The settings of a training run, per concern, as TF-free dataclasses (each field a flag).

    TrainConfig            model_dir, train_data, task, eval_data, labels
      clip      ClipConfig       num_frames, frame_stride, crop_size, resize_short_side
      input     InputConfig      modality, rgb_range, min_scale, random_flip, shuffle_buffer, ...
      network   NetworkConfig    model, depth_multiplier, head, conv_impl, init_from, ...
      optim     OptimizerConfig  optimizer, learning_rate, momentum, adamw_weight_decay, ...
      lr        ScheduleConfig   schedule, warmup_steps, step_boundaries, ...
      run       RunConfig        train_steps, batch_size, strategy, precision, checkpoints, eval
      <method>  each method's section, declared in its folder (distill, distinit, ava, flow)

`assemble(method_sections)` builds the TrainConfig class from these and the methods' sections
(`d3d_tf.methods.TrainConfig`): the core names no method. Flag names are the leaf fields'
names, flat (`--num_frames`, `--distill_endpoints`), and so are the config's attributes:
`config.num_frames` reads `config.clip.num_frames`, and `TrainConfig(num_frames=8, ...)` or
`dataclasses.replace(config, num_frames=8)` set it. `flat_dict(config)` is the flat
{name: value} view train_summary.json records.

The choices of a few fields are those of modules that import TensorFlow (a test checks they
agree), so that `python -m d3d_tf.train --help` answers before TensorFlow is imported.
"""
from __future__ import annotations

import dataclasses

from d3d_tf.core import config_flags
from d3d_tf.core.config_flags import field, section
from d3d_tf.data.clip import ClipConfig
from d3d_tf.data.preprocessing import RGB_RANGES
from d3d_tf.models import cpu_choices

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
MODALITIES = ("rgb", "flow")                          # d3d_tf.data.pipeline.MODALITIES
HEADS = ("slim", "global")                            # d3d_tf.models.s3dg.HEADS
CONV_IMPLS = ("auto", *cpu_choices.CONV_IMPLS)        # d3d_tf.models.layers.CONV_IMPLS
STRATEGIES = ("default", "mirrored", "multi_worker")  # d3d_tf.training.strategy.STRATEGIES
SKIP_HELP = ("Skip the rest of a truncated or corrupt TFRecord shard instead of stopping: the "
             "records before the damage are used, and the damaged shards and the records lost "
             "are logged and counted (docs/failures.md). Default: stop with one line naming "
             "the shard.")                            # d3d_tf.data.damaged_shards.SKIP_HELP


@dataclasses.dataclass
class InputConfig:
    """What the trained network reads and how training clips are augmented and fed."""
    modality: str = field("rgb", "Input of the trained network.", choices=MODALITIES)
    rgb_range: str = field("[-1,1]", "How RGB pixels are scaled for the network.",
                           choices=RGB_RANGES, aliases=("input_range",))
    min_scale: float = field(1.0, "Training crop side scaled by U(min_scale, 1) then resized "
                             "(random-resized crop); 1 = plain random crop.")
    random_flip: bool = field(True, "Training: flip clips horizontally with p=0.5 (RGB and "
                              "flow together, flow x negated). A flip mirrors motion, so turn "
                              "it off when classes are left/right or rotation-sense motions.")
    shuffle_buffer: int = field(256, "Training shuffle buffer (videos).", min=1)
    data_service: str | None = field(None, "grpc://host:port of a tf.data service dispatcher "
                                     "(python -m d3d_tf.data_service): the training pipeline "
                                     "then runs on its workers, each clip once per epoch "
                                     "(docs/gpu.md).")
    skip_corrupt_records: bool = field(False, SKIP_HELP)


@dataclasses.dataclass
class NetworkConfig:
    """The trained network (the options of d3d_tf.models' configs that a run may set)."""
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
                      "time) or global (mean over T,H,W, 1x1x1 conv).", choices=HEADS)
    conv_impl: str = field("auto", "How convolutions run (same variables and numbers): 2d lowers "
                           "[1,k,k] and [t,1,1] convs to 2D convs, 2d_spatial only the [1,k,k] "
                           "ones, 2d_all also the stem, 3d uses conv3d, auto picks 3d on "
                           "a machine with a GPU, else 2d or 2d_spatial for this CPU "
                           "(docs/performance.md).", choices=CONV_IMPLS)
    dropout_keep_prob: float = field(0.8, "Head dropout keep probability.")
    weight_decay: float = field(1e-7, "L2 weight decay of the conv kernels (added to the loss, "
                                "as in slim S3D-G).", min=0)
    batch_norm_decay: float = field(0.999, "Decay of the BN moving averages used at evaluation "
                                    "(slim: 0.999; use ~0.9 for runs of a few hundred steps, "
                                    "whose moving averages would otherwise still be near their "
                                    "initial values).")
    label_smoothing: float = field(0.0, "Label smoothing of the CE loss.", min=0)
    init_from: str | None = field(None, "finetune / ava: model directory whose backbone "
                                  "initializes the network (the head is re-initialized).")
    freeze_until: str | None = field(None, "Freeze all blocks up to this endpoint (e.g. 4F; "
                                     "layer3 for a video ResNet).")


@dataclasses.dataclass
class OptimizerConfig:
    """The optimizer: SGD with momentum or AdamW, its peak learning rate, gradient clipping."""
    optimizer: str = field("sgd", "SGD with momentum or AdamW.", choices=OPTIMIZERS)
    learning_rate: float = field(0.1, "Peak learning rate.", min=0)
    momentum: float = field(0.9, "SGD momentum.", min=0)
    adamw_weight_decay: float = field(1e-4, "AdamW decoupled weight decay.", min=0)
    clip_norm: float | None = field(None, "Clip gradients to this global L2 norm.")


@dataclasses.dataclass
class ScheduleConfig:
    """The learning rate over the steps: a linear warmup from 0, then the schedule."""
    schedule: str = field("cosine", "Learning-rate schedule after the warmup.",
                          choices=SCHEDULES)
    warmup_steps: int = field(0, "Linear warmup steps from 0.", min=0)
    step_boundaries: tuple = field((), "step schedule: steps where lr *= step_factor.", item=int)
    step_factor: float = field(0.1, "step schedule: decay factor.")
    cosine_alpha: float = field(0.0, "cosine schedule: final lr fraction.")


@dataclasses.dataclass
class RunConfig:
    """Steps, batch, devices, precision and bookkeeping (checkpoints, evaluation, logs)."""
    train_steps: int = field(1000, "Optimizer steps in total.", min=1)
    batch_size: int = field(8, "GLOBAL batch size (all replicas); must be divisible by the "
                            "replica count.", min=1)
    strategy: str = field("default", "Distribution: one device, MirroredStrategy, or "
                          "MultiWorkerMirroredStrategy (TF_CONFIG).", choices=STRATEGIES)
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
    seed: int = field(0, "Random seed (initialization and data order).")


# The core's sections: (attribute, class, help title), in --help order.
CORE_SECTIONS = (("clip", ClipConfig, "Clip"), ("input", InputConfig, "Input"),
                 ("network", NetworkConfig, "Network"), ("optim", OptimizerConfig, "Optimizer"),
                 ("lr", ScheduleConfig, "Learning-rate schedule"), ("run", RunConfig, "Run"))


class _Flat:
    """Flat construction and attribute access over the sections of a TrainConfig."""

    def __init__(self, **kwargs):
        fields = {f.name: f for f in dataclasses.fields(self)}
        leaves = {}
        for name, value in kwargs.items():
            if name in fields:
                if config_flags.is_section(fields[name]):
                    value = dataclasses.replace(value)  # a copy: set leaves are this config's
                object.__setattr__(self, name, value)
            else:
                leaves[name] = value
        for name, f in fields.items():
            if name in kwargs:
                continue
            if f.default is not dataclasses.MISSING:
                object.__setattr__(self, name, f.default)
            elif f.default_factory is not dataclasses.MISSING:
                object.__setattr__(self, name, f.default_factory())
            elif not config_flags.is_section(f):
                raise TypeError(f"{type(self).__name__}: missing required setting {name!r}")
        for name, value in leaves.items():
            owner = self._owner(name)
            if owner is None:
                raise TypeError(f"{type(self).__name__} has no setting {name!r}")
            object.__setattr__(owner, name, value)

    def _owner(self, name):
        """The section instance holding the leaf setting `name` (None: there is none)."""
        for f in dataclasses.fields(self):
            if config_flags.is_section(f):
                sub = self.__dict__.get(f.name)
                if sub is None:
                    continue
                if any(x.name == name for x in dataclasses.fields(sub)):
                    return sub
                if hasattr(sub, "_owner"):
                    inner = sub._owner(name)
                    if inner is not None:
                        return inner
        return None

    def __setattr__(self, name, value):
        if name in self.__dataclass_fields__:
            object.__setattr__(self, name, value)
            return
        owner = self._owner(name)
        if owner is None:
            raise AttributeError(f"{type(self).__name__} has no setting {name!r}")
        setattr(owner, name, value)

    def __getattr__(self, name):  # only for names that are not top-level fields
        if name.startswith("__"):
            raise AttributeError(name)
        owner = self._owner(name)
        if owner is None:
            raise AttributeError(f"{type(self).__name__} has no setting {name!r}")
        return getattr(owner, name)


def assemble(method_sections=(), name: str = "TrainConfig") -> type:
    """The TrainConfig class: the top-level fields, the core's sections and
    `method_sections` [(attribute, class, help title)] (each method's own settings).

    Each field is a flag of `python -m d3d_tf.train` (same name, default and help text,
    `d3d_tf.core.config_flags`); a new option is one field in its section.
    """
    fields = [
        ("model_dir", str, field(help="Output directory: checkpoints (ckpt/), TensorBoard "
                                 "summaries (train/, eval/) and the final model directory "
                                 "(model/).")),
        ("train_data", str, field(help="Glob of training TFRecord shards.")),
        ("task", str, field("classify", "What to train (a registered task; the tasks' own "
                            "flags are listed under their titles): classify: one modality; "
                            "finetune: restore a backbone, new head; distill: RGB student + "
                            "frozen teacher (D3D); distinit: video student of frozen image "
                            "teachers on (unlabeled) videos; ava: action detector on AVA "
                            "keyframe records (docs/ava.md); flow_loss, cnn_flow: the flow "
                            "alternatives of D3D Table 6 (docs/probes.md).")),
        ("eval_data", str | None, field(None, "Glob of validation TFRecord shards "
                                        "(optional).")),
        ("labels", str | None, field(None, "labels.txt (default: next to the training shards; "
                                     "--task=distinit needs none).")),
    ]
    for attr, cls, title in (*CORE_SECTIONS, *method_sections):
        fields.append((attr, cls, section(cls, title)))
    made = dataclasses.make_dataclass(name, fields, bases=(_Flat,), init=False)
    made.__doc__ = ("Everything a training run needs, per concern (`d3d_tf.training.config`). "
                    "Sizes in frames / pixels; steps are optimizer steps.")
    made.__module__ = __name__
    return made


def flat_dict(config) -> dict:
    """{setting name: value} of every leaf setting of `config` (sections flattened)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if config_flags.is_section(f):
            out.update(flat_dict(value))
        else:
            out[f.name] = value
    return out
