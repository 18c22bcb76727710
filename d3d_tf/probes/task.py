"""Motion probes (D3D §3, §5.2): train a flow decoder on a network's endpoint, measure EPE.

    config = ProbeConfig(model_dir="runs/d3d", train_data=..., eval_data=..., out_dir=...,
                         endpoints=("3A",), decoder="pwc")
    summary = run(config)        # writes OUT/probe.json and TensorBoard logs in OUT/<alias>/

Two settings, as in the paper: **frozen** (default) trains only the decoder; the backbone's
layers are non-trainable, so its batch norms run in inference mode and no backbone variable
(BN moving statistics included) changes — `probe.json` records that this was checked.
`finetune=True` ("ft") trains backbone and decoder end to end.

The probed network is fed the modality it was trained on: an RGB model gets the RGB clip, a
flow model (the temporal stream) gets the TV-L1 flow — the "decoder on the flow teacher's own
features" baseline of Table 1. `modality` says which of the two the caller means to probe and
a model directory of the other modality is refused before anything is built ("wrong
modality"), so that a teacher is never probed by mistake where a student was meant (its EPE
would look excellent). Targets, loss and EPE: `d3d_tf.probes.flow_probe` (EPE in pixels of
the network's input frame).

probe.json: the run's settings and one entry per endpoint with `epe` and `zeros_epe` (the
all-zeros prediction on the same clips, = mean target magnitude), both means over the eval
clips, and `clips` (per clip: video_id, epe, zeros_epe). OUT/<alias>/examples.npz keeps the
pooled TV-L1 target and the predicted flow ([N,T',H',W',2] px) of the first eval clips for
Fig. 5 (`d3d_tf.probe_report`), and OUT/<alias>/weights.npz the trained probe (backbone up to
the endpoint and decoder, by variable path), which `--task=cnn_flow` of `d3d_tf.train` starts
from.

Each endpoint's probe is a run of the training loop (`d3d_tf.training.loop`, task
`ProbeTraining`) with OUT/<alias>/ as its model_dir: checkpoints in ckpt/, so an interrupted
probe resumes where it stopped (a rerun with other settings starts over: `probe_settings.json`
records what the checkpoints were made with), the run lock, train/ and eval/ summaries and
train_summary.json, on any strategy.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from d3d_tf.core import atomic, config_flags, fingerprint
from d3d_tf.core import progress as progress_lib
from d3d_tf.data import pipeline
from d3d_tf.models import registry, s3dg, saving
from d3d_tf.probes import config as probe_config
from d3d_tf.probes import decoders, flow_probe
from d3d_tf.probes.probe_tables import EXAMPLES_FILE, PROBE_FILE
from d3d_tf.training import config as train_config
from d3d_tf.training import inputs, loop, tasks
from d3d_tf.training import task as task_lib

SHORT_NAMES = {v: k for k, v in s3dg.ALIASES.items()}
RESUME_FILE = "probe_settings.json"  # in OUT/<alias>/: what its checkpoints were made with
ProbeConfig = probe_config.ProbeConfig  # the flags of python -m d3d_tf.probe (TF-free)


class FlowProbe(tasks.Task):
    """Trains `network` (a model from `decoders.attach_decoder`) to predict pooled TV-L1 flow.

    Logged keys: `flow` (§3.1 loss), `l2` (weight decay of the trainable backbone kernels when
    fine-tuning), `total`, `epe` and `zeros_epe` (px), `grad_norm`.
    """

    def loss_terms(self, batch, training):
        pred = self.network(batch[self.modality], training=training)["flow"]
        target = flow_probe.targets(batch["flow"], pred.shape[1:4])
        return {"flow": flow_probe.flow_loss(pred, target)}, {"flow": 1.0}, pred

    def _logs(self, batch, terms, per_example, l2, pred):
        target = flow_probe.targets(batch["flow"], pred.shape[1:4])
        return {"flow": tf.reduce_mean(terms["flow"]), "l2": l2,
                "total": tf.reduce_mean(per_example) + l2,
                "epe": tf.reduce_mean(flow_probe.epe(flow_probe.from_polar(pred), target)),
                "zeros_epe": tf.reduce_mean(flow_probe.zeros_epe(target))}


# --- validation ------------------------------------------------------------------------


VECTOR_ENDPOINTS = ("pooled",)  # endpoints of [B,C] vectors (ResNet)


def resolve_endpoints(names, spec: saving.ModelSpec) -> list[str]:
    """Endpoint names of `names` (aliases, slim names or `all`) that the model has, in order:
    those of the model's family (`models.registry`), up to its final endpoint, that are
    feature maps [B,T,H,W,C] (a ResNet's `pooled` [B,C] vector has nothing to decode flow
    from)."""
    try:
        family = registry.family_of(spec.name)
    except ValueError:  # a network saved under another name: the S3D-G endpoints
        family = registry.family_of("s3dg")
    endpoints = family.valid_endpoints
    final = spec.config.get("final_endpoint", endpoints[-1])
    if final not in endpoints:
        raise ValueError(f"model {spec.name!r} ends at {final!r}, not an endpoint of the "
                         f"{family.name} family ({', '.join(endpoints)})")
    available = [e for e in endpoints[:endpoints.index(final) + 1] if e not in VECTOR_ENDPOINTS]
    if tuple(names) in (("all",), ("ALL",)):
        return available
    out = []
    for n in names:
        e = family.resolve_endpoint(n)
        if e in VECTOR_ENDPOINTS:
            raise ValueError(f"--endpoints={n}: a pooled [B,C] vector, not a feature map to "
                             f"decode flow from; choose among {', '.join(available)}")
        if e not in available:
            raise ValueError(f"--endpoints={n}: the network ends at {final}")
        out.append(e)
    return out


def check_modality(spec: saving.ModelSpec, modality: str, model_dir: str) -> None:
    """ValueError unless the saved model takes `modality` (and its spec is consistent)."""
    channels = spec.config.get("in_channels")
    expected = {"rgb": 3, "flow": 2}
    if spec.modality not in expected or channels != expected[spec.modality]:
        raise ValueError(f"{model_dir}: model.json says modality {spec.modality!r} with "
                         f"{channels} input channels; cannot probe it")
    if spec.modality != modality:
        hint = " (the teacher baseline: pass --modality=flow)" if spec.modality == "flow" else ""
        raise ValueError(f"--model_dir={model_dir} is a {spec.modality} model but "
                         f"--modality={modality}{hint}")


def require_flow_records(pattern: str, flag: str) -> None:
    """FileNotFoundError if nothing matches, ValueError if the records hold no flow."""
    files = inputs.require_data(pattern, flag)
    missing = inputs.shards_without_flow(files)
    if missing:
        raise ValueError(f"{flag}={pattern}: {inputs.no_flow_text(files, missing)} "
                         "(flow/encoded), which the probe's targets are: prepare them with "
                         "`python -m d3d_tf.prepare --flow=tvl1`")


def validate(c: ProbeConfig) -> tuple[saving.ModelSpec, list[str]]:
    """Checks everything before training; returns (spec, slim endpoint names)."""
    config_flags.check(c)
    spec = saving.load_spec(c.model_dir)
    check_modality(spec, c.modality, c.model_dir)
    endpoints = resolve_endpoints(c.endpoints, spec)
    require_flow_records(c.train_data, "--train_data")
    require_flow_records(c.eval_data, "--eval_data")
    return spec, endpoints


# --- one endpoint ----------------------------------------------------------------------


def _pipeline_config(c: ProbeConfig, spec, *, training: bool) -> pipeline.PipelineConfig:
    t = c.num_frames or spec.input_shape[0]
    size = c.crop_size or spec.input_shape[1]
    return pipeline.PipelineConfig(
        file_pattern=c.train_data if training else c.eval_data, num_frames=t,
        frame_stride=c.frame_stride, crop_size=size, training=training,
        modalities=tuple(dict.fromkeys((spec.modality, "flow"))),
        batch_size=c.batch_size if training else (c.eval_batch_size or c.batch_size),
        resize_short_side=c.resize_short_side, random_flip=c.random_flip,
        rgb_range=spec.rgb_range, shuffle_buffer=c.shuffle_buffer, seed=c.seed)


_RunConfig = train_config.assemble(name="ProbeRunConfig")


def run_config(c: ProbeConfig, out: str):
    """The training loop's settings of one endpoint's probe (a core TrainConfig, no method
    section): the probe's optimizer, schedule, steps, batch and seed, float32, the endpoint's
    folder `out` as model_dir (checkpoints there, so an interrupted probe resumes), one
    evaluation at the end."""
    return _RunConfig(
        model_dir=out, train_data=c.train_data, eval_data=c.eval_data,
        optimizer=c.optimizer, learning_rate=c.learning_rate, clip_norm=c.clip_norm,
        schedule=c.schedule, warmup_steps=c.warmup_steps, train_steps=c.train_steps,
        batch_size=c.batch_size, eval_batch_size=c.eval_batch_size, strategy=c.strategy,
        precision="float32", checkpoint_every=min(500, c.train_steps), eval_every=0,
        log_every=c.log_every, seed=c.seed, modality=c.modality, random_flip=c.random_flip,
        shuffle_buffer=c.shuffle_buffer, frame_stride=c.frame_stride,
        resize_short_side=c.resize_short_side)

# Settings that change what a probe's checkpoints hold or mean: a rerun with others starts over.
_RESUME_KEYS = ("model_dir", "train_data", "decoder", "pwc_dense", "finetune", "modality",
                "num_frames", "crop_size", "frame_stride", "resize_short_side", "random_flip",
                "batch_size", "train_steps", "optimizer", "learning_rate", "schedule",
                "warmup_steps", "clip_norm", "shuffle_buffer", "seed")


def _start_over_unless_same(c: ProbeConfig, endpoint: str, out: str) -> None:
    """Removes `out`'s checkpoints when they were made with other settings (or by a probe that
    recorded none), so that only the same probe resumes; records this probe's settings."""
    made_from = {"endpoint": endpoint, **{k: getattr(c, k) for k in _RESUME_KEYS}}
    sidecar = os.path.join(out, RESUME_FILE)
    ckpt = os.path.join(out, "ckpt")
    if os.path.isdir(ckpt) and not fingerprint.matches(fingerprint.read(sidecar), made_from):
        logging.info("probe %s: %s holds checkpoints of other settings; starting over",
                     SHORT_NAMES.get(endpoint, endpoint), ckpt)
        shutil.rmtree(ckpt)
    os.makedirs(out, exist_ok=True)
    fingerprint.write(sidecar, made_from)


def build_probe(model_dir: str, endpoint: str, decoder: str, *, input_shape, finetune: bool,
                dense: bool = False) -> tuple[keras.Model, keras.Model, saving.ModelSpec]:
    """(probe model, backbone network, spec): the saved network rebuilt at `input_shape`
    (T, H, W) with `endpoint` as output, frozen unless `finetune`, plus a new decoder."""
    network, spec = saving.load_model_dir(model_dir, input_shape=input_shape,
                                          endpoints=(endpoint,), trainable=finetune,
                                          dropout_keep_prob=1.0)
    return decoders.attach_decoder(network, endpoint, decoder, dense=dense), network, spec


def backbone_digest(model: keras.Model) -> str:
    """SHA-256 of every non-decoder variable of `model` (weights and BN statistics)."""
    h = hashlib.sha256()
    for w in model.weights:
        if not w.path.startswith(decoders.PREFIX + "."):
            h.update(w.path.encode())
            h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()


def _display_frame(clip: np.ndarray, flow_steps: int) -> np.ndarray:
    """The frame of `clip` [T,H,W,3] (any range) under the middle of `flow_steps` pooled flow
    steps, scaled to uint8 0-255 by its own min and max: [H,W,3]."""
    t = min(int((flow_steps // 2 + 0.5) * clip.shape[0] / flow_steps), clip.shape[0] - 1)
    frame = clip[t].astype(np.float32)
    lo, hi = float(frame.min()), float(frame.max())
    return np.round((frame - lo) * 255 / max(hi - lo, 1e-6)).astype(np.uint8)


def evaluate_probe(model: keras.Model, dataset, modality: str, *, max_clips: int = 0,
                   examples: int = 0, progress_every_s: float = 0.0,
                   total_clips: int | None = None):
    """Per-clip EPE of `model` and of all zeros over `dataset`; `progress_every_s` > 0 logs
    clips done, rate and ETA (`d3d_tf.core.progress`) that often.

    Returns (clips [{video_id, epe, zeros_epe}], examples {target, pred} [N,T',H',W',2] px,
    plus, when the batches hold an RGB clip, frame [N,H,W,3] uint8: the input frame at the
    middle flow step T'//2, scaled to 0-255 per frame for display).
    """

    @tf.function(reduce_retracing=True)
    def step(x, flow):
        pred = model(x, training=False)["flow"]
        target = flow_probe.targets(flow, pred.shape[1:4])
        pred_flow = flow_probe.from_polar(pred)
        return (flow_probe.epe(pred_flow, target), flow_probe.zeros_epe(target), pred_flow,
                target)

    clips, kept = [], {"target": [], "pred": []}
    total = min(max_clips, total_clips or max_clips) if max_clips else total_clips
    progress = progress_lib.Progress(total)
    for batch in dataset:
        epe, zeros, pred_flow, target = (t.numpy() for t in step(batch[modality], batch["flow"]))
        for i, vid in enumerate(batch["video_id"].numpy()):
            if max_clips and len(clips) >= max_clips:
                break
            clips.append({"video_id": vid.decode(), "epe": float(epe[i]),
                          "zeros_epe": float(zeros[i])})
            if len(kept["pred"]) < examples:
                kept["pred"].append(pred_flow[i])
                kept["target"].append(target[i])
                if "rgb" in batch:
                    kept.setdefault("frame", []).append(_display_frame(
                        batch["rgb"][i].numpy(), target.shape[1]))
        progress.update(len(clips) - progress.done)
        if progress_every_s and progress.due(progress_every_s):
            logging.info("probe: evaluated %s", progress.line("clips"))
        if max_clips and len(clips) >= max_clips:
            break
    if not clips:
        raise ValueError("the evaluation data yielded no clips")
    return clips, {k: np.stack(v) if v else np.zeros((0,), np.float32) for k, v in kept.items()}


class ProbeTraining(task_lib.TrainingTask):
    """One endpoint's probe as a task of the training loop (`d3d_tf.training.loop`): the
    network is the frozen (or fine-tuned) backbone up to `endpoint` with a new decoder, the
    step `FlowProbe`, the evaluation per-clip EPE, and what it saves the trained probe and
    the example flows, in the endpoint's folder (the run's model_dir)."""

    name = "probe"
    supports_skip_corrupt = False

    def __init__(self, config, probe: ProbeConfig, spec: saving.ModelSpec, endpoint: str):
        super().__init__(config)
        self.probe, self.spec, self.endpoint = probe, spec, endpoint
        self.alias = SHORT_NAMES.get(endpoint, endpoint)
        self.log_prefix = f"probe {self.alias} "
        self.clips: list = []
        self.kept: dict = {}
        self.unchanged = None

    def label_names(self) -> list[str]:
        return []

    def build(self, num_classes: int, global_batch: int):
        p = self.probe
        cfg = _pipeline_config(p, self.spec, training=True)
        model, _, _ = build_probe(p.model_dir, self.endpoint, p.decoder,
                                  input_shape=(cfg.num_frames, cfg.crop_size, cfg.crop_size),
                                  finetune=p.finetune, dense=p.pwc_dense)
        self.digest = backbone_digest(model)  # the saved network's, before any step
        self.grid = list(model.output["flow"].shape[1:4])
        self.channels = int(model.get_layer(f"{decoders.PREFIX}.Conv2d_1").input.shape[-1])
        self.decoder_params = int(sum(np.prod(w.shape)
                                      for w in decoders.decoder_variables(model)))
        step = FlowProbe(model, modality=self.spec.modality, global_batch_size=global_batch,
                         clip_norm=p.clip_norm)
        return step, model

    def modalities(self) -> list[str]:
        return list(dict.fromkeys((self.spec.modality, "flow")))

    def train_dataset(self, seed: int, modalities, ctx, damage):
        cfg = dataclasses.replace(_pipeline_config(self.probe, self.spec, training=True),
                                  seed=seed)
        return pipeline.make_dataset(cfg, ctx)

    def eval_modality(self) -> str:
        return self.spec.modality

    def evaluate(self, net, damage) -> dict:
        p = self.probe
        self.unchanged = backbone_digest(net) == self.digest
        if not p.finetune and not self.unchanged:
            raise RuntimeError(f"frozen probe at {self.endpoint}: a backbone variable changed")
        cfg = _pipeline_config(p, self.spec, training=False)
        self.clips, self.kept = evaluate_probe(
            net, pipeline.make_dataset(cfg), self.spec.modality, max_clips=p.max_eval_clips,
            examples=p.examples, progress_every_s=30, total_clips=pipeline.num_eval_clips(cfg))
        return {"epe": float(np.mean([x["epe"] for x in self.clips])),
                "zeros_epe": float(np.mean([x["zeros_epe"] for x in self.clips]))}

    def eval_line(self, step: int, metrics: dict, seconds: float) -> str:
        return (f"probe {self.alias}: EPE {metrics['epe']:.3f} px (all zeros "
                f"{metrics['zeros_epe']:.3f} px) on {len(self.clips)} clips ({seconds:.0f}s)")

    def save(self, directory: str, net, names, metrics: dict, step: int, train_inputs) -> None:
        # Backbone up to the endpoint + decoder: what --task=cnn_flow starts from
        # (--flow_net_init names the endpoint's folder, the run's model_dir).
        out = self.config.model_dir
        saving.save_weights(net, os.path.join(out, saving.WEIGHTS_FILE))
        with atomic.open_for_write(os.path.join(out, EXAMPLES_FILE), "wb") as f:
            np.savez(f, **self.kept, video_ids=np.array(
                [x["video_id"] for x in self.clips[:len(self.kept["pred"])]]))


def probe_endpoint(c: ProbeConfig, spec: saving.ModelSpec, endpoint: str) -> dict:
    """Trains (or resumes) and evaluates one decoder at `endpoint` through the training loop;
    returns its probe.json entry."""
    alias = SHORT_NAMES.get(endpoint, endpoint)
    out = os.path.join(c.out_dir, alias)
    _start_over_unless_same(c, endpoint, out)
    rc = run_config(c, out)
    task = ProbeTraining(rc, c, spec, endpoint)
    with loop.held(rc):
        summary = loop.run(rc, task)
    return {
        "endpoint": endpoint, "alias": alias,
        "grid": task.grid, "channels": task.channels, "decoder_params": task.decoder_params,
        "epe": summary["epe"], "zeros_epe": summary["zeros_epe"],
        "num_clips": len(task.clips),
        "final_train_logs": summary["final_train_logs"],
        "train_seconds": summary["train_seconds"],
        "backbone_unchanged": task.unchanged,
        "clips": task.clips,
    }


def default_label(model_dir: str) -> str:
    """The run's name: `runs/d3d/model` and `runs/d3d` -> `d3d`."""
    path = os.path.normpath(saving.resolve_model_dir(model_dir))
    if os.path.basename(path) == "model":
        path = os.path.dirname(path)
    return os.path.basename(path)


def run(config: ProbeConfig) -> dict:
    """Probes every endpoint of `config`; writes and returns probe.json's content."""
    c = config
    spec, endpoints = validate(c)
    os.makedirs(c.out_dir, exist_ok=True)
    t = c.num_frames or spec.input_shape[0]
    size = c.crop_size or spec.input_shape[1]
    summary = {
        "model_dir": c.model_dir, "label": c.label or default_label(c.model_dir),
        "model_name": spec.name, "modality": spec.modality, "decoder": c.decoder,
        "pwc_dense": c.pwc_dense, "finetune": c.finetune, "input": [t, size, size],
        "train_data": c.train_data, "eval_data": c.eval_data, "train_steps": c.train_steps,
        "batch_size": c.batch_size,
        "units": "EPE in pixels of the network's input frame (the crop after resizing)",
        "results": [],
    }
    # Each endpoint builds, compiles and evaluates its own probe: the sweep's rate counts them
    # whole, from the start.
    sweep = progress_lib.Progress(len(endpoints), skip_first=False)
    for endpoint in endpoints:
        summary["results"].append(probe_endpoint(c, spec, endpoint))
        sweep.update()
        if len(endpoints) > 1:
            logging.info("probe: %s", sweep.line("endpoints"))
        # rewritten after each endpoint of a sweep
        atomic.write_json(os.path.join(c.out_dir, PROBE_FILE), summary)
    return summary
