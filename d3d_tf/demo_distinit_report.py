"""`demo_out/distinit/report.md`: the DistInit demo's results laid out like the paper's Table 1.

Reads what `d3d_tf.demo_distinit`'s stages wrote (the evaluation's results.json per seed,
train_summary.json of the teacher and the DistInit runs, representation.json and its
pictures, the stage markers' times). `write_report(out_dir, seeds=N)` can be rerun on its own.
"""
from __future__ import annotations

import glob
import json
import os
import statistics

from d3d_tf import atomic, preprocessing
from d3d_tf.demo_report import _fmt as fmt_mean_std
from d3d_tf.demo_report import run_suffix

__all__ = ["interpretation", "run_suffix", "write_report"]

SHAPES_DIR = "pool_shapes"  # records of the pool labelled by shape (d3d_tf.demo_distinit)

NETWORK_NAMES = {"r3d_18": "Res3D-18", "r2plus1d_18": "R(2+1)D-18"}
ROWS = (  # method, network, Table 1's row, what the initialization learned from
    ("scratch", "r3d_18", "Scratch", "nothing (random init)"),
    ("inflated", "r3d_18", "Inflated", "the image teacher's 2D weights, repeated over time"),
    ("distinit", "r3d_18", "DistInit", "the unlabeled pool, the image teacher's soft labels"),
    ("scratch", "r2plus1d_18", "Scratch", "nothing (random init)"),
    ("inflated", "r2plus1d_18", "Inflated", None),  # no 2D counterpart, as in the paper
    ("distinit", "r2plus1d_18", "DistInit", "the unlabeled pool, the image teacher's soft labels"),
)
COMPARISONS = (  # (method a, method b, network): does a beat b?
    ("distinit", "scratch", "r3d_18"),
    ("distinit", "scratch", "r2plus1d_18"),
    ("distinit", "inflated", "r3d_18"),
    ("inflated", "scratch", "r3d_18"),
)
REPRESENTATIONS = (  # folder under representation/, caption
    ("inflated_r3d_18", "Res3D-18 inflated from the image teacher (before fine-tuning)"),
    ("distinit_r3d_18", "Res3D-18 after DistInit (before fine-tuning)"),
    ("distinit_r2plus1d_18", "R(2+1)D-18 after DistInit (before fine-tuning)"),
    ("scratch_r3d_18", "Res3D-18 trained from scratch on the labels (seed 0)"),
)


def _load(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _top1(evals, name, level="video"):
    """Per-seed top-1 of run `name` (None where a seed has no result)."""
    return [e[name][level]["top1"] if e and name in e else None for e in evals]


METHOD_NAMES = {"scratch": "Scratch", "inflated": "Inflated", "distinit": "DistInit"}


def _label(method: str, network: str) -> str:
    return f"{METHOD_NAMES[method]} {NETWORK_NAMES[network]}"


def interpretation(evals: list, seeds: int, *, num_classes: int | None = None,
                   teacher_top1: float | None = None, teacher_classes: int = 4) -> list[str]:
    """What the numbers say (video top-1), written from the numbers rather than assumed.

    `evals`: one evaluation results.json (a dict run name -> metrics) per seed. A difference
    is claimed only when the mean gap is more than two test videos and it has the same sign
    in every seed; anything else is "no reliable difference". `num_classes`: of the labeled
    set, to say when every run ended within two test videos of chance; `teacher_top1`: the
    image teacher's per-video top-1 on held-out pool videos over its `teacher_classes` shapes,
    to say when it is too close to chance (below 1.5x chance) for its targets to carry shape
    information.
    """
    count = next((e[n]["video"].get("count") for e in evals if e for n in e
                  if e[n].get("video", {}).get("count")), None)
    margin = 2.0 / count if count else 0.05
    lines, verdicts = [], {}
    for a, b, network in COMPARISONS:
        pairs = [(x, y) for x, y in zip(_top1(evals, f"{a}_{network}"),
                                        _top1(evals, f"{b}_{network}"))
                 if x is not None and y is not None]
        if not pairs:
            continue
        mean_a = statistics.mean(x for x, _ in pairs)
        mean_b = statistics.mean(y for _, y in pairs)
        wins = sum(x > y for x, y in pairs)
        losses = sum(x < y for x, y in pairs)
        la, lb = _label(a, network), _label(b, network)
        seeds_note = f" ({wins} of {len(pairs)} seeds)" if len(pairs) > 1 else ""
        if mean_a - mean_b > margin and wins == len(pairs):
            verdicts[(a, b, network)] = "better"
            lines.append(f"- {la} ({mean_a:.1%}) **beats** {lb} ({mean_b:.1%}){seeds_note}: "
                         "by more than two test videos, in every seed.")
        elif mean_b - mean_a > margin and losses == len(pairs):
            verdicts[(a, b, network)] = "worse"
            lines.append(f"- {la} ({mean_a:.1%}) is **worse** than {lb} ({mean_b:.1%})"
                         f"{seeds_note}: by more than two test videos, in every seed.")
        else:
            verdicts[(a, b, network)] = "none"
            lines.append(f"- {la} ({mean_a:.1%}) and {lb} ({mean_b:.1%}) show **no reliable "
                         f"difference**{seeds_note}: the gap is within two test videos or "
                         "changes sign between seeds.")
    if not lines:
        return ["- No fine-tuning run has evaluation results; see the stages above."]
    per_row = [[v for v in _top1(evals, f"{m}_{n}") if v is not None]
               for m, n, _, source in ROWS if source]
    means = [statistics.mean(values) for values in per_row if values]
    if num_classes and means and max(means) <= 1 / num_classes + margin:
        lines.append(f"- **Every run ended near chance** (at most {max(means):.1%}, chance "
                     f"{1 / num_classes:.1%}; within two test videos): fine-tuning learned "
                     "nothing from the labeled videos, so this table compares no "
                     "initializations. The verdicts above say only that.")
    if teacher_top1 is not None and teacher_top1 < 1.5 / teacher_classes:
        lines.append(f"- **The image teacher is near chance** on held-out pool videos "
                     f"({teacher_top1:.1%} per video, chance {1 / teacher_classes:.1%}): its soft "
                     "labels carry little shape information and its inflated weights know "
                     "little, so neither DistInit nor inflation has anything to pass on.")
    over_scratch = [verdicts.get(("distinit", "scratch", n)) for n in NETWORK_NAMES]
    over_inflated = verdicts.get(("distinit", "inflated", "r3d_18"))
    if all(v == "better" for v in over_scratch) and over_inflated == "better":
        lines.append("- This run agrees with the paper's Table 1 (DistInit above scratch for "
                     "both networks and above inflation): pre-training on unlabeled videos "
                     "with an image teacher's soft labels gave a better start than random "
                     "weights and than the teacher's own weights inflated.")
    elif "better" in over_scratch or over_inflated == "better":
        lines.append("- This run supports the paper's Table 1 only in part: DistInit helped "
                     "where marked **beats** above and not elsewhere.")
    else:
        lines.append("- This run does **not** show DistInit's gain of the paper's Table 1 "
                     "(about 16 points over scratch and 4 over inflation on HMDB-51).")
    if count:
        lines.append(f"- {'One seed' if seeds == 1 else f'{seeds} seeds'} on {count} test "
                     f"videos: one video is {100 / count:.1f} points. The seeds vary only the "
                     "fine-tuning: the image teacher, the DistInit pre-training and the "
                     "inflation ran once, so the ± does not include their variation.")
    lines.append("- They do not reproduce the paper's numbers: the data is synthetic "
                 "(4 shapes x motions on a plain background), the image teacher is a "
                 "shrunk 2D ResNet-18 trained here on frames of its own image set, not ImageNet's "
                 "ResNet-50, and every network is shrunk (width 0.25, 32 px crops) and trained "
                 "for minutes on a CPU.")
    lines.append("- The teacher knows only the shape, which one frame shows; the motion half "
                 "of each label must still be learned from the few labeled videos, whatever "
                 "the initialization.")
    return lines


def _stage_times(out_dir: str) -> list[tuple[str, float]]:
    rows = []
    for path in sorted(glob.glob(os.path.join(out_dir, "stages", "*.done")),
                       key=os.path.getmtime):
        rows.append((os.path.basename(path)[:-5], (_load(path) or {}).get("seconds", 0.0)))
    return rows


def _teacher_lines(out_dir: str, teacher: dict, shapes: int) -> list[str]:
    """`teacher`: the image teacher's train_summary.json ({} when missing)."""
    lines = []
    if teacher.get("clip_top1") is not None:
        lines.append(f"- Image teacher (2D ResNet-18 on single frames, {shapes} shapes, chance "
                     f"{1 / shapes:.1%}): "
                     f"shape top-1 {teacher['clip_top1']:.1%} per frame and "
                     f"{teacher['video_top1']:.1%} per video on the pool's held-out videos.")
    for network, pretty in NETWORK_NAMES.items():
        s = _load(os.path.join(out_dir, "runs", f"distinit_{network}", "train_summary.json"))
        # The mean over the last log window; runs from before it was recorded: the last batch.
        logs = (s or {}).get("mean_train_logs") or {}
        where = f"the last {s.get('mean_train_logs_steps')} steps" if logs else "the last batch"
        logs = logs or (s or {}).get("final_train_logs") or {}
        if "distinit" in logs:
            agree = (f"; the student's top class equals the teacher's on "
                     f"{logs['teacher_top1']:.0%} of the clips" if "teacher_top1" in logs
                     else "")
            lines.append(f"- DistInit {pretty}: {s['step']} steps; over {where}: soft "
                         f"cross-entropy {logs['distinit']:.3f} (teacher entropy "
                         f"{logs.get('teacher_entropy', float('nan')):.3f} nats){agree}.")
    return lines


def write_report(out_dir: str, *, seeds: int = 1) -> str:
    """Writes `<out_dir>/report.md` and returns its path."""
    suffixes = [run_suffix(s) for s in range(seeds)]
    evals = [_load(os.path.join(out_dir, "eval" + s, "results.json")) for s in suffixes]
    labels_path = os.path.join(out_dir, "records", "labeled", "labels.txt")
    labels = preprocessing.read_labels(labels_path) if os.path.exists(labels_path) else []
    shapes_path = os.path.join(out_dir, "records", SHAPES_DIR, "labels.txt")
    shapes = len(preprocessing.read_labels(shapes_path)) if os.path.exists(shapes_path) else 4
    spec = _load(os.path.join(out_dir, "runs", "finetune", "scratch_r3d_18", "model",
                              "model.json")) or {}
    teacher = _load(os.path.join(out_dir, "runs", "image_teacher", "train_summary.json")) or {}

    lines = ["# d3d_tf DistInit demo report", "",
             ("DistInit on the built-in synthetic data, on this machine's CPU. An image "
              "teacher (a 2D ResNet-18) learns the object's shape from single frames of a "
              "separate image set (ImageNet's role); DistInit trains Res3D-18 and "
              "R(2+1)D-18 on an unlabeled video pool to predict the teacher's soft labels of "
              "random frames; each network is then "
              "fine-tuned on a small labeled action set from scratch, from the inflated "
              "teacher (Res3D-18 only) or from DistInit, and evaluated on its held-out videos. "
              "A labeled class is a shape doing a motion"
              + (f" ({len(labels)} classes: {', '.join(labels)})" if labels else "")
              + ": one frame shows the shape, only the motion tells left from right."), ""]
    if spec:
        t, h, w, _ = spec["input_shape"]
        lines += [(f"Clips: {t} frames of {h}x{w} px; width multiplier "
                   f"{spec['config'].get('depth_multiplier')}; seeds: {seeds}."), ""]
    lines += ["## Teacher and pre-training", ""] + (_teacher_lines(out_dir, teacher, shapes) or
                                                     ["- n/a"]) + [""]

    lines += ["## Results (cf. DistInit's Table 1)", "",
              ("| Initialization | Network | Learned before fine-tuning from | Clip top-1 (%) | "
               "Video top-1 (%) | Video top-5 (%) |"),
              "| --- | --- | --- | --- | --- | --- |"]
    for method, network, row, source in ROWS:
        name = f"{method}_{network}"
        if source is None:
            lines.append(f"| {row} | {NETWORK_NAMES[network]} | no 2D counterpart (as in the "
                         "paper) | — | — | — |")
            continue
        top5 = [e[name]["video"]["top5"] if e and name in e else None for e in evals]
        lines.append(f"| {row} | {NETWORK_NAMES[network]} | {source} | "
                     f"{fmt_mean_std(_top1(evals, name, 'clip'))} | "
                     f"{fmt_mean_std(_top1(evals, name))} | {fmt_mean_std(top5)} |")
    chance = f" Chance is {100 / len(labels):.1f}%." if labels else ""
    lines += ["", ("Mean ± sample std over the fine-tuning seeds. Clip: the centre crop of one "
              "clip; video: the mean softmax of 2 clips." + chance), ""]

    lines += ["## What these numbers show, and what they do not", ""]
    lines += interpretation(evals, seeds, num_classes=len(labels) or None,
                            teacher_top1=teacher.get("video_top1"),
                            teacher_classes=shapes) + [""]

    lines += ["## First-layer filters and pooled features (cf. Figs. 3-5)", "",
              ("Filters: each strip is one `conv1` filter over time, left to right (R(2+1)D: its "
               "[1,7,7] spatial filters). Embedding: t-SNE of the pooled features of every "
               "labeled video, coloured by class. Temporal variation: mean of "
               "‖k_t − mean_t k‖ / ‖k‖ over filters, 0 when a filter repeats over time."), ""]
    for folder, caption in REPRESENTATIONS:
        rep_dir = os.path.join(out_dir, "representation", folder)
        rep = _load(os.path.join(rep_dir, "representation.json"))
        if not rep:
            continue
        lines += [f"### {caption}", "",
                  f"Temporal variation of conv1: {rep['temporal_variation']:.3f}.", ""]
        for png in ("filters.png", "embedding.png"):
            if os.path.exists(os.path.join(rep_dir, png)):
                lines.append(f"![{folder} {png[:-4]}]({os.path.relpath(rep_dir, out_dir)}/{png})")
        lines.append("")

    eval_dir = os.path.join(out_dir, "eval" + suffixes[0])
    if os.path.exists(os.path.join(eval_dir, "per_class_difference.png")):
        lines += [("![per-class accuracy, DistInit minus inflated Res3D-18 (cf. Fig. 7)]"
                   f"({os.path.relpath(eval_dir, out_dir)}/per_class_difference.png)"),
                  "*per-class accuracy, DistInit minus inflated Res3D-18 (cf. Fig. 7)*", ""]

    times = _stage_times(out_dir)
    if times:
        lines += ["## Stage times", "", "| stage | seconds |", "| --- | --- |"]
        lines += [f"| {name} | {seconds:.0f} |" for name, seconds in times]
        lines += [f"| total | {sum(s for _, s in times):.0f} |", "",
                  "Wall time of each stage when it ran (a reused stage keeps its first time).",
                  ""]

    lines += ["## Artifacts", ""]
    for label, folder in (("videos and manifests", "videos"), ("TFRecords", "records"),
                          ("training runs", "runs"), ("evaluation", "eval" + suffixes[0]),
                          ("filters and embeddings", "representation")):
        if os.path.exists(os.path.join(out_dir, folder)):
            lines.append(f"- {label}: `{os.path.join(out_dir, folder)}`")
    lines.append("")
    report = os.path.join(out_dir, "report.md")
    atomic.write_text(report, "\n".join(lines))
    return report
