"""The flow-based alternatives to distillation of D3D §4.1 / Table 6, as training tasks.

    python -m d3d_tf.train --task=flow_loss --flow_weight=1 ...     # "S3D-G with flow loss"
    python -m d3d_tf.train --task=cnn_flow --flow_net_init=PROBE/3A \
        --temporal_stream=runs/teacher/model ...                   # "S3D-G with 3D CNN flow"

* `flow_loss` (flow as supervision): an RGB S3D-G with a flow decoder (default PWC) on its
  `flow_endpoint` (default 3A), trained on `CE + flow_weight * flow loss`, the flow loss being
  the probes' §3.1 loss against the pooled TV-L1 flow of the clip
  (`d3d_tf.probes.flow_probe`). Needs records with flow. The saved model/ is the S3D-G
  classifier alone (the decoder is training-only; it lives in the checkpoints).
* `cnn_flow` (flow as a learnable input): the RGB S3D-G up to `flow_endpoint` with its
  decoder, initialized from a probe that learnt to reproduce TV-L1 (`flow_net_init`: the
  `OUT/<endpoint>` folder of `python -m d3d_tf.probe`, whose weights.npz holds the backbone up
  to the endpoint and the decoder; the paper pretrains it this way), predicts flow; that flow
  is turned into the input of a flow S3D-G (`temporal_stream`, a flow model directory,
  e.g. the teacher) and everything is fine-tuned end to end on CE alone.
  Prediction -> temporal-stream input: (mag, sin θ, cos θ) -> (x, y) = max(mag, 0)·(cos θ,
  sin θ) px of the input frame (as for the EPE), divided by FLOW_BOUND = 20 and clipped to
  [-1, 1] (the pipeline's flow convention), then brought from the decoder's T'×H'×W' grid to
  the clip's T×H×W (each time step repeated, bilinear in space), so the temporal stream sees
  a flow clip of the size it was trained on. The run has no model/ directory (two networks in
  one are not a `ModelSpec`); its checkpoints and eval metrics (train_summary.json) are the
  result.
"""
from __future__ import annotations

import os

import keras
import tensorflow as tf

from d3d_tf import models
from d3d_tf.models import saving
from d3d_tf.probes import decoders, flow_probe
from d3d_tf.training import losses, network, task, tasks

TASKS = ("flow_loss", "cnn_flow")


class FlowLossClassifier(tasks.Task):
    """CE + flow_weight · §3.1 flow loss of the decoder. Logs `ce` and `flow` (unweighted)."""

    def __init__(self, network: keras.Model, *, flow_weight: float = 1.0, **kwargs):
        super().__init__(network, modality="rgb", **kwargs)
        self.flow_weight = float(flow_weight)

    def loss_terms(self, batch, training):
        out = self.network(batch["rgb"], training=training)
        target = flow_probe.targets(batch["flow"], out["flow"].shape[1:4])
        terms = {"ce": losses.cross_entropy(batch["label"], out["logits"],
                                            label_smoothing=self.label_smoothing),
                 "flow": flow_probe.flow_loss(out["flow"], target)}
        return terms, {"ce": 1.0, "flow": self.flow_weight}, out["logits"]


@keras.saving.register_keras_serializable(package="d3d_tf")
class PolarToFlowInput(keras.layers.Layer):
    """Decoder output (mag, sin, cos) [B,T',H',W',3] -> flow-stream input [B,T,H,W,2] in
    [-1, 1] (= flow_px / 20), see the module doc."""

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = tuple(int(s) for s in size)  # (T, H, W) of the clip

    def call(self, polar):
        t, h, w = self.size
        flow = tf.clip_by_value(flow_probe.from_polar(polar) / flow_probe.FLOW_BOUND, -1.0, 1.0)
        tp, hp, wp = flow.shape[1:4]
        flow = tf.repeat(flow, -(-t // tp), axis=1)[:, :t]                # [B,T,H',W',2]
        frames = tf.reshape(flow, [-1, hp, wp, 2])
        frames = tf.image.resize(frames, (h, w), method="bilinear")
        return tf.reshape(frames, [-1, t, h, w, 2])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, 2)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def validate(c) -> None:
    """Checks of the flow tasks' flags (`c` a TrainConfig); ValueError / FileNotFoundError."""
    if c.task not in TASKS:
        return
    models.family_of(c.model).resolve_endpoint(c.flow_endpoint)
    if c.modality != "rgb":
        raise ValueError(f"--task={c.task} trains on RGB clips: use --modality=rgb")
    if c.task == "cnn_flow":
        for flag, value in (("--temporal_stream", c.temporal_stream),
                            ("--flow_net_init", c.flow_net_init)):
            if not value:
                raise ValueError(f"--task=cnn_flow needs {flag}")
        spec = saving.load_spec(c.temporal_stream)
        if spec.modality != "flow":
            raise ValueError(f"--temporal_stream={c.temporal_stream} is a {spec.modality} model;"
                             " it must take flow (e.g. the flow teacher)")
        path = os.path.join(c.flow_net_init, saving.WEIGHTS_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--flow_net_init={c.flow_net_init}: no {saving.WEIGHTS_FILE}"
                                    " (the OUT/<endpoint> folder of python -m d3d_tf.probe)")


def modalities(c) -> list[str]:
    """Batch keys the task reads."""
    return ["rgb", "flow"] if c.task == "flow_loss" else ["rgb"]


def build_task(c, num_classes: int, shape, options: dict, **common):
    """(task, network) of `c.task`; `options` are the run's S3DGConfig options (RGB).

    `network.saved_network` is what the trainer writes as model/ (None: nothing)."""
    if c.task == "flow_loss":
        classifier = models.build_classifier(c.model, num_classes=num_classes,
                                             input_shape=shape, endpoints=(c.flow_endpoint,),
                                             **options)
        network = decoders.attach_decoder(classifier, c.flow_endpoint, c.flow_decoder,
                                          keep_outputs=True)
        network.saved_network = classifier
        return FlowLossClassifier(network, flow_weight=c.flow_weight, **common), network
    endpoint = models.family_of(c.model).resolve_endpoint(c.flow_endpoint)
    backbone = models.build_backbone(c.model, input_shape=shape,
                                     **{**options, "final_endpoint": endpoint})
    polar = decoders.decode(backbone.output[endpoint], c.flow_decoder,
                            conv_impl=options.get("conv_impl", "auto"))
    saving.load_weights(keras.Model(backbone.input, polar),
                        os.path.join(c.flow_net_init, saving.WEIGHTS_FILE))
    stream, _ = saving.load_model_dir(c.temporal_stream, input_shape=shape[:3])
    if stream.output.shape[-1] != num_classes:
        raise ValueError(f"--temporal_stream={c.temporal_stream} has {stream.output.shape[-1]} "
                         f"classes, the data {num_classes}")
    flow = PolarToFlowInput(shape[:3], name="FlowInput")(polar)
    network = keras.Model(backbone.input, {"logits": stream(flow), "flow": polar},
                          name="s3dg_cnn_flow")
    network.saved_network = None
    return tasks.Classifier(network, modality="rgb", **common), network


class _FlowTask(task.TrainingTask):
    """The shared hooks of the two flow tasks (`build_task`, `validate`, `modalities`)."""

    def validate(self, train_files):
        validate(self.config)

    def build(self, num_classes, global_batch):
        c = self.config
        return build_task(c, num_classes, network.clip_shape(c), network.model_options(c, 3),
                          **self.step_options(global_batch))

    def modalities(self):
        return modalities(self.config)


@task.register("flow_loss")
class FlowLossTask(_FlowTask):
    """`--task=flow_loss`: CE + --flow_weight x the decoder's flow loss (needs flow records)."""

    def flow_reason(self):
        return "flow loss"


@task.register("cnn_flow")
class CnnFlowTask(_FlowTask):
    """`--task=cnn_flow`: predicted flow fed to --temporal_stream, trained end to end on CE."""
