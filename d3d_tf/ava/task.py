"""`--task=ava`: training and evaluating the AVA action detector (`d3d_tf.ava.ava_head`).

    python -m d3d_tf.train --task=ava --train_data='records/train-*.tfrecord' \
        --eval_data='records/val-*.tfrecord' --init_from=runs/d3d --model_dir=runs/ava

Training feeds the ground-truth person boxes with jitter (`--ava_box_jitter`); evaluation
feeds the keyframe records' proposals (a person detector's boxes) and scores frame-mAP
(`d3d_tf.ava.frame_map`) against the ground truth stored in the records. The loss per clip:
sigmoid cross-entropy summed over classes and averaged over its boxes, plus
`--ava_box_loss_weight` x the Huber loss of the box offsets (summed over the 4, averaged over
boxes). The step logic (replica scaling, clipping, L2) is `tasks.Task`'s.

Outputs under `model_dir`: `ckpt/`, `train/` and `eval/` summaries as for every task;
`model/` is a detector directory (`ava_head.save_detector_dir`); `train_summary.json`.
"""
from __future__ import annotations

import json
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from d3d_tf.ava import ava, ava_head, ava_pipeline
from d3d_tf.ava import frame_map as ava_map
from d3d_tf.core import atomic
from d3d_tf.core import progress as progress_lib
from d3d_tf.data import records
from d3d_tf.models import cpu_choices, s3dg, saving
from d3d_tf.training import network, tasks
from d3d_tf.training import task as task_lib

LABEL_MAP_FILE = ava.LABEL_MAP_FILE


class Detection(tasks.Task):
    """Multi-label sigmoid classification of each box + box-offset regression."""

    def __init__(self, network, *, box_loss_weight: float = 1.0, **kwargs):
        super().__init__(network, modality="rgb", **kwargs)
        self.box_loss_weight = float(box_loss_weight)

    def call(self, inputs, training=False):
        return self.network({"rgb": inputs["rgb"], "boxes": inputs["boxes"]}, training=training)

    def loss_terms(self, batch, training):
        out = self(batch, training=training)
        mask = batch["box_mask"]
        boxes = tf.maximum(tf.reduce_sum(mask, 1), 1.0)
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=batch["labels"],
                                                      logits=tf.cast(out["logits"], tf.float32))
        cls = tf.reduce_sum(tf.reduce_sum(bce, -1) * mask, 1) / boxes
        diff = tf.abs(tf.cast(out["box_deltas"], tf.float32) - batch["targets"])
        huber = tf.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5)
        box = tf.reduce_sum(tf.reduce_sum(huber, -1) * mask, 1) / boxes
        return {"bce": cls, "box": box}, {"bce": 1.0, "box": self.box_loss_weight}, out

    def _logs(self, batch, terms, per_example, l2, logits):
        logs = {n: tf.reduce_mean(v) for n, v in terms.items()}
        logs["l2"] = l2
        logs["total"] = tf.reduce_mean(per_example) + l2
        return logs


def read_label_map(config) -> ava.LabelMap:
    """The label map written by `prepare --format=ava` next to the training shards."""
    folder = os.path.dirname(min(tf.io.gfile.glob(config.train_data)))
    return ava.read_label_map(os.path.join(folder, LABEL_MAP_FILE))


def pipeline_config(c, *, training: bool, pattern: str | None = None, batch=None,
                    seed=None) -> ava_pipeline.AvaPipelineConfig:
    return ava_pipeline.AvaPipelineConfig(
        file_pattern=pattern or (c.train_data if training else c.eval_data),
        num_frames=c.num_frames, frame_stride=c.frame_stride, crop_size=c.crop_size,
        training=training, batch_size=batch or c.batch_size, max_boxes=c.ava_max_boxes,
        min_scale=c.min_scale, random_flip=c.random_flip, box_jitter=c.ava_box_jitter,
        rgb_range=c.rgb_range, shuffle_buffer=c.shuffle_buffer, seed=seed)


def build_detector(c, num_classes: int) -> keras.Model:
    """The detector of run config `c`: its backbone options, or those of `--init_from`."""
    if c.init_from:
        spec = saving.load_spec(c.init_from)
        backbone = s3dg.S3DGConfig(**{**spec.config, **{k: getattr(c, k) for k in (
            "dropout_keep_prob", "weight_decay", "sync_batch_norm", "batch_norm_decay")}})
    else:
        backbone = s3dg.make_config(c.model, **network.model_options(c, 3))
    head = ava_head.DetectorConfig(num_classes=num_classes, endpoint=c.ava_endpoint,
                                   roi_size=c.ava_roi_size)
    return ava_head.build_detector(backbone, head,
                                   input_shape=(c.num_frames, c.crop_size, c.crop_size, 3))


def predict(detector, dataset, label_map: ava.LabelMap, progress_every_s: float = 0.0,
            total_keyframes: int | None = None):
    """Runs the detector on eval elements; returns (detections, ground truth) as
    {(video_id, timestamp): ava.Boxes} with one detection row per (proposal, class): the
    proposal refined by its offsets, the class's sigmoid score. `progress_every_s` > 0: logs
    keyframes done, rate and ETA (`d3d_tf.core.progress`) after the first batch, then every that
    many seconds, and at the end."""

    @tf.function(reduce_retracing=True)
    def run(rgb, boxes):
        out = detector({"rgb": rgb, "boxes": boxes}, training=False)
        return (tf.sigmoid(tf.cast(out["logits"], tf.float32)),
                ava_head.decode_boxes(tf.cast(out["box_deltas"], tf.float32), boxes))

    dets, gts = {}, {}
    ids = np.asarray(label_map.ids)
    progress = progress_lib.Progress(total_keyframes)
    for batch in dataset:
        scores, refined = (x.numpy() for x in run(batch["rgb"], batch["boxes"]))
        for b, (vid, ts) in enumerate(zip(batch["video_id"].numpy(),
                                          batch["timestamp"].numpy())):
            key = (vid.decode(), int(ts))
            det, gt = ava.Boxes(), ava.Boxes()
            for n in np.flatnonzero(batch["box_mask"][b].numpy()):
                for k in range(len(ids)):
                    det.boxes.append(refined[b, n].tolist())
                    det.labels.append(int(ids[k]))
                    det.scores.append(float(scores[b, n, k]))
            g_labels = batch["gt_labels"][b].numpy()
            for n in np.flatnonzero(batch["gt_mask"][b].numpy()):
                for k in np.flatnonzero(g_labels[n]):
                    gt.boxes.append(batch["gt_boxes"][b, n].numpy().tolist())
                    gt.labels.append(int(ids[k]))
                    gt.scores.append(1.0)
            dets[key] = det
            if gt.boxes:
                gts[key] = gt
        progress.update(len(batch["video_id"]))
        if progress_every_s and progress.due(progress_every_s):
            logging.info("evaluated %s", progress.line("keyframes"))
    return dets, gts


def num_keyframes(pattern: str) -> int:
    """Keyframe records in the shards matching `pattern`, from their record headers."""
    return sum(records.count_framed(f)[0] for f in ava_pipeline.list_files(pattern))


def evaluate(c, detector, label_map) -> dict:
    ds = ava_pipeline.make_dataset(pipeline_config(c, training=False,
                                                   batch=c.eval_batch_size or c.batch_size))
    dets, gts = predict(detector, ds, label_map, progress_every_s=60,
                        total_keyframes=num_keyframes(c.eval_data))
    return ava_map.frame_map(gts, dets, label_map)


def validate(c) -> None:
    if c.modality != "rgb":
        raise ValueError("--task=ava trains an RGB detector: use --modality=rgb")
    if c.init_from:
        saving.resolve_model_dir(c.init_from)
    folder = os.path.dirname(min(tf.io.gfile.glob(c.train_data)))
    if not os.path.isfile(os.path.join(folder, LABEL_MAP_FILE)):
        raise FileNotFoundError(f"{folder}/{LABEL_MAP_FILE} not found: --train_data must be "
                                f"keyframe records of `prepare --format=ava`")
    ava_head.DetectorConfig(num_classes=1, endpoint=c.ava_endpoint, roi_size=c.ava_roi_size)
    check_label_map(c, read_label_map(c), os.path.join(folder, LABEL_MAP_FILE))


def check_label_map(c, label_map: ava.LabelMap, map_path: str) -> None:
    """ValueError, before any graph runs, unless the records fit the label map `map_path`:
    the first keyframe of every shard of --train_data and --eval_data has its number of
    classes (`num_classes`, one record read per shard), and the `labels.txt` written beside
    the training records with them lists its class names."""
    labels_txt = os.path.join(os.path.dirname(map_path), "labels.txt")
    if os.path.isfile(labels_txt):
        with open(labels_txt, encoding="utf-8", errors="replace") as f:
            names = [line.strip() for line in f if line.strip()]
        if names != list(label_map.names):
            raise ValueError(f"{map_path} lists {len(label_map.names)} classes "
                             f"({', '.join(label_map.names[:3])}, ...) but the records beside "
                             f"it were prepared with {len(names)} ({labels_txt}: "
                             f"{', '.join(names[:3])}, ...): prepare them again, or restore "
                             f"the label map they were prepared with")
    for flag, pattern in (("--train_data", c.train_data), ("--eval_data", c.eval_data)):
        for path in sorted(tf.io.gfile.glob(pattern)) if pattern else []:
            try:
                first = next(records.read_records(path), None)
            except records.RecordError:
                continue  # the input pipeline names a damaged shard
            if first is None:
                continue
            feature = tf.train.SequenceExample.FromString(first).context.feature
            counts = feature["num_classes"].int64_list.value
            if not counts:
                raise ValueError(f"{flag}={pattern}: {path} holds no AVA keyframes (no "
                                 f"num_classes): prepare it with --format=ava")
            if counts[0] != len(label_map.ids):
                raise ValueError(f"{flag}={pattern}: {path} holds keyframes of {counts[0]} "
                                 f"classes but {map_path} lists {len(label_map.ids)}: the "
                                 f"records were prepared with another label map")


@task_lib.register("ava")
class AvaTask(task_lib.TrainingTask):
    """The detector run: keyframe records of `prepare --format=ava` with their label map,
    the backbone of --init_from (or a new --model), frame-mAP at evaluation, a detector
    directory as model/ (`ava_head.save_detector_dir`)."""

    uses_init_from = True
    supports_skip_corrupt = False

    def label_names(self):
        folder = os.path.dirname(min(tf.io.gfile.glob(self.config.train_data)))
        if not os.path.isfile(os.path.join(folder, LABEL_MAP_FILE)):
            raise FileNotFoundError(f"{folder}/{LABEL_MAP_FILE} not found: --train_data must be "
                                    f"keyframe records of `prepare --format=ava`")
        return list(read_label_map(self.config).names)

    def validate(self, train_files):
        validate(self.config)

    def precision(self, num_classes, per_replica):
        # auto: mixed_float16 on a GPU; float32 on CPUs (the detector's bfloat16 is unmeasured).
        c = self.config
        return c.precision if c.precision != "auto" else cpu_choices.auto_choices(
            cpu_choices.local_devices(), None).precision

    def build(self, num_classes, global_batch):
        c = self.config
        self.label_map = read_label_map(c)
        detector = build_detector(c, len(self.label_map.ids))
        step = Detection(detector, box_loss_weight=c.ava_box_loss_weight,
                         global_batch_size=global_batch, clip_norm=c.clip_norm)
        return step, detector

    def init_weights(self, net):
        if self.config.init_from:
            loaded = ava_head.init_backbone(net, self.config.init_from)
            logging.info("ava: %d backbone variables from %s", len(loaded),
                         self.config.init_from)

    def modalities(self):
        return ["rgb"]

    def train_dataset(self, seed, modalities, ctx, damage):
        return ava_pipeline.make_dataset(pipeline_config(self.config, training=True,
                                                         seed=seed), ctx)

    def evaluate(self, net, damage):
        return {"frame_mAP": evaluate(self.config, net, self.label_map)["mAP"]}

    def eval_line(self, step, metrics, seconds):
        return f"eval step {step}: frame-mAP {metrics['frame_mAP']:.4f} ({seconds:.0f}s)"

    def summary_metrics(self, metrics):
        return {"frame_mAP": metrics.get("frame_mAP")}

    def save(self, directory, net, names, metrics, step, train_inputs):
        c = self.config
        ava_head.save_detector_dir(
            directory, net, name=c.model, labels=self.label_map.names, ids=self.label_map.ids,
            rgb_range=c.rgb_range, source=f"d3d_tf.train task=ava step={step}",
            metrics=metrics, pretraining=pretraining(c.init_from))


# ---- evaluation of a saved detector (python -m d3d_tf.evaluate --task=ava) -------------------

AvaEvalConfig = ava.AvaEvalConfig  # in ava.py, TF-free: evaluate declares its flags first


def pretraining(init_from: str | None) -> dict:
    """What a detector's backbone was pre-trained on (D3D Table 5's Pretraining column), from
    what `init_from` (a model or run directory) records: `{"init_from": init_from, "classes":
    its number of classes, "train_data": the --train_data glob of its run (its
    train_summary.json's "config"; "" where not recorded, e.g. converted weights), "source":
    its model.json source}`; `{}` without `init_from` (a backbone trained from scratch)."""
    if not init_from:
        return {}
    directory = saving.resolve_model_dir(init_from)
    spec = saving.load_spec(directory)
    config = {}
    for run in (directory, os.path.dirname(os.path.normpath(directory))):
        path = os.path.join(run, "train_summary.json")
        if os.path.isfile(path):
            with open(path) as f:
                config = json.load(f).get("config") or {}
            break
    return {"init_from": init_from, "classes": spec.num_classes,
            "train_data": config.get("train_data") or "", "source": spec.source}


def random_scores(detections: dict, seed: int = 0) -> dict:
    """The same detection rows with uniform random scores: the chance baseline of frame-mAP."""
    rng = np.random.default_rng(seed)
    return {k: ava.Boxes(boxes=v.boxes, labels=v.labels, scores=rng.random(len(v.scores))
                         .tolist()) for k, v in sorted(detections.items())}


def evaluate_detector(directory: str, data: str, config: AvaEvalConfig, out_dir: str, *,
                      batch_size: int = 8) -> dict:
    """Scores a detector directory on keyframe records; writes into `out_dir`:
    `detections.csv` (official format), `per_class.csv`, `per_class.png`, `results.json`
    (frame-mAP, the random-scores baseline on the same boxes, AP per class), published as one
    set (`atomic.publish_files`): a failure leaves the previous run's files as they were."""
    detector, info = ava_head.load_detector_dir(directory, dropout_keep_prob=1.0)
    label_map = ava.read_label_map(config.ava_label_map) if config.ava_label_map else \
        ava.LabelMap(tuple(info["action_ids"]), tuple(info["labels"]))
    t, s = info["input_shape"][0], info["input_shape"][1]
    pipe = ava_pipeline.AvaPipelineConfig(file_pattern=data, num_frames=t, crop_size=s,
                                          training=False, batch_size=batch_size,
                                          max_boxes=config.ava_max_boxes,
                                          rgb_range=info["rgb_range"])
    dets, record_gt = predict(detector, ava_pipeline.make_dataset(pipe),
                              ava.LabelMap(tuple(info["action_ids"]), tuple(info["labels"])),
                              progress_every_s=30, total_keyframes=num_keyframes(data))
    if config.ava_groundtruth:  # rows of other classes are counted, then ignored
        gt = ava.read_boxes(config.ava_groundtruth)
    else:
        gt = record_gt
    excluded = ava.read_excluded(config.ava_excluded)
    # Ground truth of another split, other videos or other action ids would score 0 or NaN.
    match = ava_map.groundtruth_match(gt, dets, label_map, excluded)
    match["line"] = ava_map.check_groundtruth_match(
        match, config.ava_groundtruth or f"the ground truth stored in {data}")
    result = ava_map.frame_map(gt, dets, label_map, excluded)
    baseline = ava_map.frame_map(gt, random_scores(dets), label_map, excluded)
    out = {"frame_mAP": result["mAP"], "random_scores_frame_mAP": baseline["mAP"],
           # The ground truth stored in the records, scored the same way: a check that the
           # records hold what the CSV says.
           "frame_mAP_records_groundtruth": ava_map.frame_map(record_gt, dets, label_map,
                                                              excluded)["mAP"],
           "keyframes": len(dets), "per_class": dict(zip(result["names"], result["per_class"])),
           "num_gt": dict(zip(result["names"], result["num_gt"])),
           "groundtruth": config.ava_groundtruth or "records", "detector": directory,
           "pretraining": info.get("pretraining"),  # None: a detector saved before it was kept
           "groundtruth_match": match}
    # One set, results.json last: a failed run leaves the previous run's files whole.
    with atomic.publish_files(out_dir, last="results.json") as stage:
        ava_map.write_detections_csv(os.path.join(stage, "detections.csv"), (
            (vid, ts, box, a, score) for (vid, ts), e in sorted(dets.items())
            for box, a, score in zip(e.boxes, e.labels, e.scores)))
        ava_map.write_per_class_csv(os.path.join(stage, "per_class.csv"), result)
        ava_map.plot_per_class(os.path.join(stage, "per_class.png"), result,
                               title=f"frame-mAP {result['mAP']:.3f} (random scores "
                                     f"{baseline['mAP']:.3f})")
        atomic.write_json(os.path.join(stage, "results.json"), out)
    return out
