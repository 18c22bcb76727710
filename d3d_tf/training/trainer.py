"""A training run: `train(TrainConfig)` checks the settings, takes the run lock and runs the
`--task`'s `TrainingTask` (`d3d_tf.training.task`, registered by its method's package; import
`d3d_tf.methods` for them all) through the one loop (`d3d_tf.training.loop`).

Outputs under `model_dir`: see `d3d_tf.training.loop`.
"""
from __future__ import annotations

import dataclasses

import keras

from d3d_tf import models
from d3d_tf.core import config_flags, run_lock
from d3d_tf.core.config_flags import field
from d3d_tf.data import damaged_shards, read_errors
from d3d_tf.data import service as data_service
from d3d_tf.data.pipeline import MODALITIES
from d3d_tf.data.preprocessing import RGB_RANGES
from d3d_tf.models import cpu_choices, layers, s3dg
from d3d_tf.training import inputs, loop, network, optimization
from d3d_tf.training import strategy as strategy_lib
from d3d_tf.training import task as task_lib
from d3d_tf.training.config import OPTIMIZERS, SCHEDULES
from d3d_tf.training.optimization import WarmupSchedule, make_train_function, set_precision_policy  # noqa: F401


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
                      )
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
                                 "frame or random ones.", choices=("center", "random"))
    distinit_num_frames: int = field(1, "distinit: frames per clip whose teacher logits are "
                                     "averaged (Eq. 1; K random frames).", min=1)
    distinit_temperature: float = field(1.0, "distinit: softmax temperature tau (Eq. 1, 2).")
    distinit_loss: str = field("ce", "distinit: soft-target cross-entropy (Eq. 2) or MSE on "
                               "logits (Table 3).", choices=("ce", "mse"))
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
                              choices=("simple", "spatial", "pwc"))
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


_require_model_dir = require_model_dir = inputs.require_model_dir


def make_task(config: TrainConfig) -> task_lib.TrainingTask:
    """The `TrainingTask` of `config.task` (ValueError naming --task if none is registered)."""
    return task_lib.get(config.task)(config)


def validate(config: TrainConfig) -> None:
    """Checks the configuration before anything is built; ValueError/FileNotFoundError with a
    message naming the flag and the file. With `--strategy=multi_worker` it first makes the
    process's strategy (`strategy.make_strategy`): its checks read records, a TF op."""
    c = config
    config_flags.check(c)  # choices and lower bounds declared on the fields
    task = make_task(c)
    if c.strategy == "multi_worker":  # before the first TF op of the process (record reads)
        strategy_lib.make_strategy(c.strategy)
    if c.model not in models.PRESETS:
        raise ValueError(f"--model={c.model!r} unknown; choose one of {', '.join(models.PRESETS)}")
    if c.depth_multiplier <= 0:
        raise ValueError(f"--depth_multiplier must be > 0, got {c.depth_multiplier}")
    train_files = inputs.require_data(c.train_data, "--train_data")
    if c.eval_data:
        inputs.require_data(c.eval_data, "--eval_data")
    task.label_names()  # FileNotFoundError / ValueError naming the file
    task.validate(train_files)
    if c.init_from and not task.uses_init_from:
        users = ", ".join(f"--task={n}" for n in task_lib.names()
                          if task_lib.get(n).uses_init_from)
        raise ValueError(f"--init_from is only used with {users}")
    if c.freeze_until:
        models.family_of(task.network_name()).resolve_endpoint(c.freeze_until)
    if c.skip_corrupt_records and not task.supports_skip_corrupt:
        raise ValueError(f"--skip_corrupt_records is not available with --task={c.task}")
    if c.data_service is not None:
        data_service.parse_address(c.data_service)
        if c.skip_corrupt_records:
            raise ValueError("--skip_corrupt_records is not available with --data_service (the "
                             "service's workers cannot run its Python reader)")
    why = task.flow_reason() or ("--modality=flow" if c.modality == "flow" else None)
    missing = inputs.shards_without_flow(train_files) if why else []
    if missing:
        raise ValueError(f"this run needs optical flow ({why}) "
                         f"but --train_data={c.train_data}: "
                         f"{inputs.no_flow_text(train_files, missing)}: prepare the data with "
                         "flow (d3d_tf.prepare --flow=tvl1)")


# --- the settings' optimizer, schedule and precision (`optimization`, `network`) ----------


def make_schedule(c: TrainConfig):
    """The learning rate per step of run settings `c` (`optimization.make_schedule`)."""
    _, schedule = optimization.settings_of(c)
    return optimization.make_schedule(schedule, c.learning_rate, c.train_steps)


def make_optimizer(c: TrainConfig, *, loss_scale: bool = False):
    """The optimizer of run settings `c` (`optimization.make_optimizer`)."""
    return loop.make_optimizer(c, loss_scale=loss_scale)


def check_loss_scaling(c: TrainConfig, precision: str, replicas: int) -> None:
    """`optimization.check_loss_scaling` for run settings `c`."""
    optimization.check_loss_scaling(c.clip_norm, precision, replicas)


resolve_precision = network.resolve_precision
clip_shape = network.clip_shape
_model_options = network.model_options
video_counts = task_lib.video_counts


def build_task(c: TrainConfig, num_classes: int, global_batch: int, *,
               loss_scale: bool = False):
    """(step model compiled with the run's optimizer, network, the TrainingTask), built in the
    current strategy scope and Keras dtype policy (`loss_scale`: see `make_optimizer`)."""
    task = make_task(c)
    step_model, net = task.build(num_classes, global_batch)
    step_model.compile(optimizer=make_optimizer(c, loss_scale=loss_scale))
    return step_model, net, task


# --- the run ------------------------------------------------------------------------------


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
    return loop.run(config, make_task(config), make_optimizer=make_optimizer)
