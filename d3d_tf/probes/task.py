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
"""
from __future__ import annotations

import hashlib
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from d3d_tf.core import atomic, config_flags
from d3d_tf.core import progress as progress_lib
from d3d_tf.data import pipeline
from d3d_tf.models import registry, s3dg, saving
from d3d_tf.probes import config as probe_config
from d3d_tf.probes import decoders, flow_probe
from d3d_tf.probes.probe_tables import EXAMPLES_FILE, PROBE_FILE
from d3d_tf.training import inputs, optimization, summaries, tasks
from d3d_tf.training import strategy as strategy_lib
from d3d_tf.training.config import OptimizerConfig, ScheduleConfig

SHORT_NAMES = {v: k for k, v in s3dg.ALIASES.items()}
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


def _optimizer(c: ProbeConfig):
    """The training optimizer and schedule (`d3d_tf.training.optimization`) of this probe's
    settings (SGD with momentum 0.9)."""
    return optimization.make_optimizer(
        OptimizerConfig(optimizer=c.optimizer, learning_rate=c.learning_rate),
        ScheduleConfig(schedule=c.schedule, warmup_steps=c.warmup_steps), c.train_steps)


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


def probe_endpoint(c: ProbeConfig, spec: saving.ModelSpec, endpoint: str) -> dict:
    """Trains and evaluates one decoder at `endpoint`; returns its probe.json entry."""
    alias = SHORT_NAMES.get(endpoint, endpoint)
    out = os.path.join(c.out_dir, alias)
    os.makedirs(out, exist_ok=True)
    train_cfg = _pipeline_config(c, spec, training=True)
    shape = (train_cfg.num_frames, train_cfg.crop_size, train_cfg.crop_size)
    strategy = strategy_lib.make_strategy(c.strategy)
    strategy_lib.per_replica_batch(strategy, c.batch_size)
    keras.utils.set_random_seed(c.seed)
    with strategy.scope():
        model, _, _ = build_probe(c.model_dir, endpoint, c.decoder, input_shape=shape,
                                  finetune=c.finetune, dense=c.pwc_dense)
        task = FlowProbe(model, modality=spec.modality, global_batch_size=c.batch_size,
                         clip_norm=c.clip_norm)
        task.compile(optimizer=_optimizer(c))
        task.optimizer.build(model.trainable_variables)
    before = backbone_digest(model)
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: pipeline.make_dataset(train_cfg, ctx))

    train_fn = optimization.make_train_function(strategy, task)

    writer = tf.summary.create_file_writer(os.path.join(out, "train"))
    t0 = time.time()
    logs = {}
    progress = progress_lib.Progress(c.train_steps)  # rate from the end of step 1
    for step, batch in enumerate(dist, start=1):
        logs = train_fn(batch)
        progress.update()
        if step == 1 or step % c.log_every == 0 or step == c.train_steps:
            values = {k: float(v) for k, v in logs.items()}
            if not all(np.isfinite(list(values.values()))):
                raise FloatingPointError(f"non-finite probe loss at step {step}: {values}")
            logging.info("probe %s step %d/%d  %s  ETA %s", alias, step, c.train_steps,
                         "  ".join(f"{k} {v:.4g}" for k, v in values.items()),
                         progress_lib.hms(progress.eta()))
            with writer.as_default():
                for k, v in values.items():
                    summaries.scalar(f"train/{k}", v, step=step)
                summaries.scalar("train/learning_rate", float(task.optimizer.learning_rate),
                                 step=step)
        if step >= c.train_steps:
            break
    train_seconds = time.time() - t0
    unchanged = backbone_digest(model) == before
    if not c.finetune and not unchanged:
        raise RuntimeError(f"frozen probe at {endpoint}: a backbone variable changed")
    eval_cfg = _pipeline_config(c, spec, training=False)
    clips, kept = evaluate_probe(model, pipeline.make_dataset(eval_cfg), spec.modality,
                                 max_clips=c.max_eval_clips, examples=c.examples,
                                 progress_every_s=30,
                                 total_clips=pipeline.num_eval_clips(eval_cfg))
    # Backbone up to the endpoint + decoder: what --task=cnn_flow starts from (--flow_net_init).
    saving.save_weights(model, os.path.join(out, saving.WEIGHTS_FILE))
    with atomic.open_for_write(os.path.join(out, EXAMPLES_FILE), "wb") as f:
        np.savez(f, **kept,
                 video_ids=np.array([x["video_id"] for x in clips[:len(kept["pred"])]]))
    result = {
        "endpoint": endpoint, "alias": alias,
        "grid": list(model.output["flow"].shape[1:4]),
        "channels": int(model.get_layer(f"{decoders.PREFIX}.Conv2d_1").input.shape[-1]),
        "decoder_params": int(sum(np.prod(w.shape) for w in decoders.decoder_variables(model))),
        "epe": float(np.mean([x["epe"] for x in clips])),
        "zeros_epe": float(np.mean([x["zeros_epe"] for x in clips])),
        "num_clips": len(clips),
        "final_train_logs": {k: float(v) for k, v in logs.items()},
        "train_seconds": train_seconds,
        "backbone_unchanged": unchanged,
        "clips": clips,
    }
    eval_writer = tf.summary.create_file_writer(os.path.join(out, "eval"))
    with eval_writer.as_default():
        for k in ("epe", "zeros_epe"):
            summaries.scalar(f"eval/{k}", result[k], step=c.train_steps)
    writer.flush()
    eval_writer.flush()
    logging.info("probe %s: EPE %.3f px (all zeros %.3f px) on %d clips", alias, result["epe"],
                 result["zeros_epe"], len(clips))
    return result


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
