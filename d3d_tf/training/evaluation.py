"""Evaluation of classifiers: predictions over a dataset, accuracies, reports and plots.

    preds = predict(network, dataset, modality="rgb")     # logits, labels, video_ids
    result = metrics(preds.probs, preds.labels, preds.video_ids, labels=names)

Clip level: every clip is scored on its own. Video level: the softmaxes of the clips of one
video (same `video_id`) are averaged, as the paper and I3D do. An ensemble of models
(D3D + S3D-G, Table 2) averages the models' softmax scores clip by clip.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

from d3d_tf.core import atomic
from d3d_tf.core import progress as progress_lib


@dataclasses.dataclass
class Predictions:
    """probs float32 [N,K] (softmax), labels int [N], video_ids str [N] — one row per clip."""
    probs: np.ndarray
    labels: np.ndarray
    video_ids: np.ndarray


class EmptyDataError(ValueError):
    """The evaluation data gave no batch."""


def predict(network, dataset: tf.data.Dataset, *, modality: str = "rgb",
            max_batches: int | None = None, progress_every_s: float = 0.0,
            total_clips: int | None = None) -> Predictions:
    """Runs `network` (logits [B,K] or dict with `logits`) over `dataset` elements
    (`modality` [B,T,H,W,C], `label` [B], `video_id` [B]) with training=False.

    `progress_every_s` > 0: logs `evaluated N/total_clips clips, rate, elapsed, ETA` after
    the first batch, then every that many seconds, and at the end (`d3d_tf.core.progress`)."""

    @tf.function(reduce_retracing=True)
    def logits_fn(x):
        out = network(x, training=False)
        out = out["logits"] if isinstance(out, dict) else out
        return tf.nn.softmax(tf.cast(out, tf.float32), axis=-1)

    probs, labels, vids = [], [], []
    progress = progress_lib.Progress(total_clips)
    for i, batch in enumerate(dataset):
        if max_batches is not None and i >= max_batches:
            break
        probs.append(logits_fn(batch[modality]).numpy())
        labels.append(batch["label"].numpy())
        vids.append(batch["video_id"].numpy())
        progress.update(len(probs[-1]))
        if progress_every_s and progress.due(progress_every_s):
            logging.info("evaluated %s", progress.line("clips"))
    if not probs:
        raise EmptyDataError("evaluation dataset is empty")
    return Predictions(np.concatenate(probs), np.concatenate(labels).astype(np.int64),
                       np.array([v.decode() if isinstance(v, bytes) else str(v)
                                 for v in np.concatenate(vids)]))


def ensemble(preds: list[Predictions]) -> Predictions:
    """Averages the softmax scores of several models evaluated on the same clips in the same
    order (deterministic eval pipeline); checks that labels and video ids agree."""
    first = preds[0]
    for p in preds[1:]:
        if p.probs.shape != first.probs.shape or not np.array_equal(p.video_ids, first.video_ids):
            raise ValueError("ensemble members were not evaluated on the same clips "
                             f"({p.probs.shape} vs {first.probs.shape})")
    return Predictions(np.mean([p.probs for p in preds], axis=0), first.labels, first.video_ids)


def video_level(p: Predictions) -> Predictions:
    """Averages clip softmaxes per video_id (order of first appearance)."""
    order, index = [], {}
    for i, v in enumerate(p.video_ids):
        if v not in index:
            index[v] = len(order)
            order.append(i)
    groups = np.array([index[v] for v in p.video_ids])
    sums = np.zeros((len(order), p.probs.shape[1]), np.float64)
    np.add.at(sums, groups, p.probs)
    counts = np.bincount(groups, minlength=len(order))[:, None]
    return Predictions((sums / counts).astype(np.float32), p.labels[order], p.video_ids[order])


def accuracy_metrics(p: Predictions, num_classes: int | None = None) -> dict:
    """top1, top5 (fractions), mean per-class accuracy and the per-class accuracies
    (NaN for classes without examples). Unlabeled rows (label < 0) are ignored."""
    keep = p.labels >= 0
    probs, labels = p.probs[keep], p.labels[keep]
    k = num_classes or probs.shape[1]
    if len(labels) == 0:
        return {"count": 0, "top1": float("nan"), "top5": float("nan"),
                "mean_class_accuracy": float("nan"), "per_class": [float("nan")] * k}
    ranked = np.argsort(-probs, axis=1)
    top1 = ranked[:, 0] == labels
    top5 = np.any(ranked[:, :5] == labels[:, None], axis=1)
    per_class = [float(np.mean(top1[labels == c])) if np.any(labels == c) else float("nan")
                 for c in range(k)]
    return {"count": len(labels), "top1": float(np.mean(top1)),
            "top5": float(np.mean(top5)),
            "mean_class_accuracy": float(np.nanmean(per_class)), "per_class": per_class}


def confusion_matrix(p: Predictions, num_classes: int) -> np.ndarray:
    """int64 [K,K]: rows true class, columns predicted class."""
    keep = p.labels >= 0
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (p.labels[keep], np.argmax(p.probs[keep], axis=1)), 1)
    return cm


def metrics(p: Predictions) -> dict:
    """Clip-level and video-level accuracy metrics (per-class lists included)."""
    k = p.probs.shape[1]
    return {"clip": accuracy_metrics(p, k), "video": accuracy_metrics(video_level(p), k)}


def protocol(*, num_clips: int, num_crops: int, num_frames: int, crop_size: int,
             frame_stride: int = 1, resize_short_side: int | None = None) -> dict:
    """How the scores of one evaluation were taken, for results.json and report.md: clips x
    crops per video (their softmaxes averaged per video), frames per clip, crop size (px),
    frame stride, short side resized to (px; None: frames as stored)."""
    return {"num_clips": int(num_clips), "num_crops": int(num_crops),
            "clips_x_crops": int(num_clips) * int(num_crops), "num_frames": int(num_frames),
            "crop_size": int(crop_size), "frame_stride": int(frame_stride),
            "resize_short_side": resize_short_side}


def protocol_line(p: dict) -> str:
    """One sentence of report.md for a `protocol` dict."""
    short = p.get("resize_short_side")
    resize = f"short side resized to {short} px" if short else "frames as stored"
    return (f"Protocol: {p['num_clips']} clip(s) x {p['num_crops']} crop(s) per video "
            f"({p['clips_x_crops']} scores averaged per video), {p['num_frames']} frames "
            f"(stride {p['frame_stride']}), {resize}, {p['crop_size']}x{p['crop_size']} crops.")


def summary(result: dict) -> dict:
    """The scalar part of `metrics` (for model.json and logs): video-level top1/top5/mca."""
    return {f"{level}_{name}": result[level][name]
            for level in ("clip", "video") for name in ("top1", "top5", "mean_class_accuracy")}


def average_runs(runs: list[dict]) -> dict:
    """Averages the results of several evaluations, e.g. the 3 splits of UCF-101 / HMDB-51.

    runs: `{model name: metrics(...)}` per run (results.json of each). Returns, for every model
    name present in all runs, `{summary key: {"mean": float, "runs": [float per run]}}`
    (summary keys as in `summary`: clip_top1, video_top1, video_mean_class_accuracy, ...).
    """
    if not runs:
        raise ValueError("no results to average")
    names = [n for n in runs[0] if all(n in r for r in runs[1:])]
    if not names:
        raise ValueError("the results share no model name: nothing to average")
    out = {}
    for name in names:
        per_run = [summary(r[name]) for r in runs]
        out[name] = {key: {"mean": float(np.mean([s[key] for s in per_run])),
                           "runs": [s[key] for s in per_run]} for key in per_run[0]}
    return out


# --- reports ---------------------------------------------------------------------------


def write_per_class_csv(path: str, names: list[str], per_class: dict[str, list[float]]) -> None:
    """CSV: class, then one accuracy column per model (keys of per_class)."""
    with atomic.open_for_write(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", *per_class])
        for i, name in enumerate(names):
            w.writerow([name, *(f"{v[i]:.4f}" for v in per_class.values())])


PER_VIDEO_CSV = "per_video.csv"


def write_per_video_csv(path: str, preds: dict[str, Predictions]) -> None:
    """CSV: video_id, label, then each model's predicted class (video level, argmax of the
    mean clip softmax), one row per video; what paired comparisons of the models read."""
    videos = {name: video_level(p) for name, p in preds.items()}
    first = next(iter(videos.values()))
    for name, v in videos.items():
        if not np.array_equal(v.video_ids, first.video_ids):
            raise ValueError(f"{name} was not evaluated on the same videos in the same order")
    predicted = {name: np.argmax(v.probs, axis=1) for name, v in videos.items()}
    with atomic.open_for_write(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "label", *predicted])
        for i, (vid, label) in enumerate(zip(first.video_ids, first.labels)):
            w.writerow([vid, int(label), *(int(p[i]) for p in predicted.values())])


def read_per_video_correct(path: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """(video ids, {model name: float [V] 1/0 correct}) from a `write_per_video_csv` file;
    unlabeled videos (label < 0) are left out. ValueError naming the file when it is not one."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][:2] != ["video_id", "label"] or len(rows[0]) < 3:
        raise ValueError(f"{path}: not a per-video predictions file (header {rows[:1]})")
    names = rows[0][2:]
    body = [r for r in rows[1:] if int(r[1]) >= 0]
    labels = np.array([int(r[1]) for r in body])
    correct = {n: (np.array([int(r[2 + i]) for r in body]) == labels).astype(np.float64)
               for i, n in enumerate(names)}
    return [r[0] for r in body], correct


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# Fonts of every picture, in points at the saved size (dpi 100): readable without zooming.
FONT = 10
TITLE_FONT = 12
# Up to this many classes the confusion matrix shows every class by name; above it, the
# most-confused view (`plot_confusion`).
MAX_NAMED_CLASSES = 100


def _bars_height(n: int) -> float:
    """Figure height (inches) of a horizontal bar chart of `n` named bars at FONT pt."""
    return 0.25 * n + 1.6


def plot_per_class(path: str, names: list[str], accuracy: list[float], *, top: int = 10,
                   title: str = "per-class accuracy") -> None:
    """Bar chart of the `top` best and `top` worst classes (video-level top-1 accuracy of one
    model, `accuracy` [K] in [0, 1], NaN for a class without videos)."""
    plt = _pyplot()
    acc = np.nan_to_num(np.asarray(accuracy, float), nan=-1.0)
    order = np.argsort(-acc)
    pick = list(order[:top]) + [i for i in order[-top:] if i not in order[:top]]
    fig, ax = plt.subplots(figsize=(8, _bars_height(len(pick))))
    ax.barh(range(len(pick)), [max(acc[i], 0) for i in pick], color="tab:blue")
    ax.set_yticks(range(len(pick)), [names[i] for i in pick], fontsize=FONT)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.tick_params(axis="x", labelsize=FONT)
    ax.set_xlabel("video-level top-1 accuracy", fontsize=FONT)
    ax.set_ylabel("class", fontsize=FONT)
    shown = (f"all {len(names)} classes, best first" if len(pick) == len(names) else
             f"best and worst {top} of {len(names)} classes")
    ax.set_title(f"{title}: {shown}", fontsize=TITLE_FONT)
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=100)
    plt.close(fig)


def plot_per_class_difference(path: str, names: list[str], acc_a: list[float],
                              acc_b: list[float], *, label_a: str, label_b: str,
                              top: int = 10) -> None:
    """Per-class accuracy difference b - a: the classes that gain and lose most (the paper's
    appendix Figs. 7-8 compare D3D with S3D-G this way). The title counts the classes b
    improved on and degraded on (difference > 0 and < 0) over all K classes."""
    plt = _pyplot()
    diff = np.nan_to_num(np.asarray(acc_b, float) - np.asarray(acc_a, float))
    order = np.argsort(-diff)
    pick = list(order[:top]) + [i for i in order[-top:] if i not in order[:top]]
    improved, degraded = int(np.sum(diff > 0)), int(np.sum(diff < 0))
    fig, ax = plt.subplots(figsize=(8, _bars_height(len(pick)) + 0.3))
    ax.barh(range(len(pick)), [diff[i] for i in pick],
            color=["tab:green" if diff[i] >= 0 else "tab:red" for i in pick])
    ax.set_yticks(range(len(pick)), [names[i] for i in pick], fontsize=FONT)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.5)
    ax.tick_params(axis="x", labelsize=FONT)
    ax.set_xlabel(f"accuracy({label_b}) - accuracy({label_a})", fontsize=FONT)
    ax.set_ylabel("class", fontsize=FONT)
    ax.set_title(f"{label_b} vs {label_a}, per class: improved on {improved} / degraded on "
                 f"{degraded} classes (of {len(names)})\nlargest gains (green) and losses (red)",
                 fontsize=TITLE_FONT)
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=100)
    plt.close(fig)


def most_confused_pairs(cm: np.ndarray, count: int = 20) -> list[tuple[int, int, float]]:
    """The `count` largest off-diagonal entries of the row-normalized confusion matrix `cm`
    [K,K] (rows: true class): (true, predicted, fraction of the true class's videos), largest
    first, zeros left out."""
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    off = norm.astype(float).copy()
    np.fill_diagonal(off, 0.0)
    flat = np.argsort(-off, axis=None, kind="stable")[:count]
    pairs = [(int(i), int(j), float(off[i, j])) for i, j in zip(*np.unravel_index(flat, off.shape))]
    return [p for p in pairs if p[2] > 0]


def plot_confusion(path: str, cm: np.ndarray, names: list[str], *,
                   title: str = "confusion matrix", most_confused: int = 20) -> None:
    """Row-normalized confusion matrix `cm` [K,K] (rows: true class, columns: predicted) with
    every class named. Above MAX_NAMED_CLASSES classes, the most-confused view instead: the
    sub-matrix of the classes in the `most_confused` largest confusions, next to those
    confusions as bars (true -> predicted, fraction of the true class's videos)."""
    plt = _pyplot()
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(names)
    if k <= MAX_NAMED_CLASSES:
        size = max(6.0, 2.5 + 0.17 * k + 0.08 * max(len(n) for n in names))
        fig, ax = plt.subplots(figsize=(size + 1, size))
        im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        ax.set_xticks(range(k), names, rotation=90, fontsize=FONT)
        ax.set_yticks(range(k), names, fontsize=FONT)
        ax.set_xlabel("predicted class", fontsize=FONT)
        ax.set_ylabel("true class", fontsize=FONT)
        ax.set_title(f"{title}: confusion matrix, {k} classes (rows sum to 1)",
                     fontsize=TITLE_FONT)
        bar = fig.colorbar(im, ax=ax, fraction=0.046)
        bar.ax.tick_params(labelsize=FONT)
        bar.set_label("fraction of the true class's videos", fontsize=FONT)
        fig.tight_layout()
        atomic.save_figure(fig, path, dpi=100)
        plt.close(fig)
        return
    pairs = most_confused_pairs(cm, most_confused)
    keep = sorted({c for i, j, _ in pairs for c in (i, j)}) or list(range(min(k, 10)))
    sub = norm[np.ix_(keep, keep)]
    n = len(keep)
    side = max(6.0, 2.5 + 0.17 * n + 0.08 * max(len(names[i]) for i in keep))
    fig, (ax, bars) = plt.subplots(
        1, 2, figsize=(2 * side + 2, max(side + 1, _bars_height(len(pairs)))),
        gridspec_kw={"width_ratios": [1.1, 1]})
    im = ax.imshow(sub, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(n), [names[i] for i in keep], rotation=90, fontsize=FONT)
    ax.set_yticks(range(n), [names[i] for i in keep], fontsize=FONT)
    ax.set_xlabel("predicted class", fontsize=FONT)
    ax.set_ylabel("true class", fontsize=FONT)
    ax.set_title(f"the {n} classes of the {len(pairs)} largest confusions", fontsize=FONT)
    bar = fig.colorbar(im, ax=ax, fraction=0.046)
    bar.ax.tick_params(labelsize=FONT)
    bars.barh(range(len(pairs)), [f for _, _, f in pairs], color="tab:red")
    bars.set_yticks(range(len(pairs)), [f"{names[i]} \u2192 {names[j]}" for i, j, _ in pairs],
                    fontsize=FONT)
    bars.invert_yaxis()
    bars.tick_params(axis="x", labelsize=FONT)
    bars.set_xlabel("fraction of the true class's videos predicted as the other", fontsize=FONT)
    bars.set_title("most-confused pairs (true \u2192 predicted)", fontsize=FONT)
    fig.suptitle(f"{title}: most-confused view of {k} classes (full matrix: too many to name)",
                 fontsize=TITLE_FONT)
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=100)
    plt.close(fig)


def write_report(out_dir: str, results: dict[str, dict], names: list[str]) -> None:
    """Writes results.json and report.md for {model name: metrics(...)}; a model's
    `protocol` entry (`protocol(...)`: clips x crops, ...) is stated under the table."""
    os.makedirs(out_dir, exist_ok=True)
    atomic.write_json(os.path.join(out_dir, "results.json"), results)
    lines = ["# Evaluation", "", ("| model | clips | clip top-1 | clip top-5 | videos | "
             "video top-1 | video top-5 | video mean class acc. |"),
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        c, v = r["clip"], r["video"]
        lines.append(f"| {name} | {c['count']} | {100 * c['top1']:.2f} | {100 * c['top5']:.2f} | "
                     f"{v['count']} | {100 * v['top1']:.2f} | {100 * v['top5']:.2f} | "
                     f"{100 * v['mean_class_accuracy']:.2f} |")
    protocols = {}   # distinct protocols -> (protocol, the models evaluated so)
    for name, r in results.items():
        if "protocol" in r:
            protocols.setdefault(json.dumps(r["protocol"], sort_keys=True),
                                 (r["protocol"], []))[1].append(name)
    lines += ["", (f"{len(names)} classes. Video level = mean of clip softmaxes per video_id. "
              "Per-class accuracies: per_class.csv; plots: *.png.")]
    if protocols:
        lines.append("")
        for p, models in protocols.values():
            lines.append(protocol_line(p) if len(protocols) == 1 else
                         f"{', '.join(models)}: {protocol_line(p)}")
    atomic.write_text(os.path.join(out_dir, "report.md"), "\n".join(lines) + "\n")


def write_average(paths: list[str], out_dir: str) -> dict:
    """Averages the results.json files `paths` into out_dir/average.json and average.md."""
    runs = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no results file {path}")
        with open(path) as f:
            runs.append(json.load(f))
    average = average_runs(runs)
    lines = [f"# Mean of {len(paths)} evaluations", "", *[f"- {p}" for p in paths], "",
             "| model | video top-1 | video top-5 | video mean class acc. | top-1 per run |",
             "|---|---|---|---|---|"]
    for name, m in average.items():
        each = ", ".join(f"{100 * v:.2f}" for v in m["video_top1"]["runs"])
        lines.append(f"| {name} | {100 * m['video_top1']['mean']:.2f} | "
                     f"{100 * m['video_top5']['mean']:.2f} | "
                     f"{100 * m['video_mean_class_accuracy']['mean']:.2f} | {each} |")
    with atomic.publish_files(out_dir, last="average.json") as stage:  # both or neither
        atomic.write_text(os.path.join(stage, "average.md"), "\n".join(lines) + "\n")
        atomic.write_json(os.path.join(stage, "average.json"),
                          {"runs": paths, "models": average})
    return average
