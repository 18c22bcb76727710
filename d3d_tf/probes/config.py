"""The settings of `python -m d3d_tf.probe` (`ProbeConfig`), of `--task=flow_loss` /
`--task=cnn_flow` (a section of the training config) and the flow decoders' names; TF-free,
so the probe CLI parses its flags before TensorFlow is imported."""
from __future__ import annotations

import dataclasses

from d3d_tf.core.config_flags import field
from d3d_tf.training.config import MODALITIES, OPTIMIZERS, SCHEDULES, STRATEGIES

DECODERS = ("simple", "spatial", "pwc")


@dataclasses.dataclass
class FlowConfig:
    """The flow alternatives of D3D Table 6: decoder, its endpoint, the flow loss's weight."""
    flow_endpoint: str = field("3A", "flow_loss, cnn_flow: endpoint read by the flow decoder.")
    flow_decoder: str = field("pwc", "flow_loss, cnn_flow: flow decoder (simple, spatial, pwc).",
                              choices=DECODERS)
    flow_weight: float = field(1.0, "flow_loss: lambda_flow, weight of the flow loss next to "
                               "CE.", min=0)
    flow_net_init: str | None = field(None, "cnn_flow: OUT/<endpoint> folder of a probe run "
                                      "(python -m d3d_tf.probe) that initializes the RGB layers "
                                      "and the decoder.")
    temporal_stream: str | None = field(None, "cnn_flow: flow model directory fed the "
                                        "predicted flow (e.g. the flow teacher).")


@dataclasses.dataclass
class ProbeConfig:
    """A probe run: one model directory, one decoder, one or more endpoints.

    Each field is also a flag of `python -m d3d_tf.probe` (`d3d_tf.core.config_flags`).
    """
    model_dir: str = field(help="Run or model directory of the network to probe.")
    train_data: str = field(help="Glob of training TFRecord shards (with flow/encoded).")
    eval_data: str = field(help="Glob of evaluation TFRecord shards (with flow/encoded).")
    out_dir: str = field(help="Output directory: probe.json and <endpoint>/ (TensorBoard "
                         "train/ and eval/ logs, examples.npz, weights.npz, checkpoints: an "
                         "interrupted probe resumes).")
    endpoints: tuple = field(("3A",), "Endpoints to probe, one decoder each: aliases (3A, 4F) "
                             "or slim names, or 'all' for every endpoint of the network.",
                             aliases=("endpoint",))
    decoder: str = field("pwc", "Flow decoder (D3D Fig. 3): simple, spatial or pwc.",
                         choices=DECODERS)
    pwc_dense: bool = field(False, "pwc: PWC-Net's dense connections (each conv also sees all "
                            "earlier outputs); default the plain six-conv chain.")
    finetune: bool = field(False, "Train the backbone with the decoder ('ft'); default: frozen "
                           "backbone, batch norm in inference mode.")
    modality: str = field("rgb", "Input modality of the probed network: rgb (S3D-G, D3D) or "
                          "flow (the teacher baseline). A model dir of the other modality is "
                          "refused.", choices=MODALITIES)
    label: str | None = field(None, "Name of this model in reports (default: the model "
                              "directory's run name).")
    num_frames: int | None = field(None, "Frames per clip (default: the model's T).", min=1)
    crop_size: int | None = field(None, "Square crop side in pixels (default: the model's H).",
                                  min=8)
    frame_stride: int = field(1, "Take every n-th stored frame.", min=1)
    resize_short_side: int | None = field(None, "Resize the short side before cropping.")
    random_flip: bool = field(True, "Training: flip clips horizontally (flow x negated).")
    batch_size: int = field(8, "GLOBAL training batch size.", min=1)
    eval_batch_size: int | None = field(None, "Evaluation batch (default --batch_size).")
    max_eval_clips: int = field(0, "Evaluate on at most this many clips (0 = all).", min=0)
    train_steps: int = field(1000, "Optimizer steps per endpoint.", min=1)
    optimizer: str = field("adamw", "sgd (momentum 0.9) or adamw.", choices=OPTIMIZERS)
    learning_rate: float = field(1e-3, "Peak learning rate.", min=0)
    schedule: str = field("cosine", "Learning-rate schedule.", choices=SCHEDULES)
    warmup_steps: int = field(0, "Linear warmup steps.", min=0)
    clip_norm: float | None = field(None, "Clip gradients to this global L2 norm.")
    strategy: str = field("default", "Distribution strategy.", choices=STRATEGIES)
    examples: int = field(4, "Eval clips whose predicted flow is kept for Fig. 5.", min=0)
    log_every: int = field(50, "Progress line every N steps.", min=1)
    shuffle_buffer: int = field(256, "Training shuffle buffer (videos).", min=1)
    seed: int = field(0, "Random seed (decoder initialization, data order).")
