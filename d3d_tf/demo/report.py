"""`demo_out/report.md`: the demo's results laid out like the D3D paper's Table 2.

Reads what the demo's stages wrote (train_summary.json of each run, the evaluation's
results.json, prepare's info JSON, the exports and predictions) and adds flow pictures of a
few held-out videos. Used by `d3d_tf.demo`; `write_report(out_dir)` can be rerun on its own.
"""
from __future__ import annotations

import glob
import json
import os
import statistics

import numpy as np

from d3d_tf.core import atomic
from d3d_tf.data import preprocessing
from d3d_tf.demo import protocol
from d3d_tf.demo.protocol import run_suffix

METHODS = (  # run name, method, training input, inference input
    ("teacher", "Temporal stream (S3D-G on TV-L1 flow, the teacher)", "flow", "flow"),
    ("baseline", "S3D-G (RGB baseline)", "RGB", "RGB"),
    ("d3d", "D3D (RGB student distilled from the flow teacher)", "RGB + flow", "RGB"),
    ("d3d+baseline", "D3D + S3D-G ensemble (mean of softmaxes)", "RGB + flow", "RGB"),
)


def _load(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _fmt(values, scale=100.0, digits=1):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    mean = statistics.mean(values) * scale
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def _suffixes(seeds: int):
    return [run_suffix(s) for s in range(seeds)]


def _network_gflops(model_dir: str) -> float | None:
    """Forward GFLOPs per clip (2 x MACs) of a saved model at its training input size."""
    from d3d_tf.models import saving, summary

    if not os.path.exists(os.path.join(model_dir, saving.SPEC_FILE)):
        return None
    return summary.total_flops(saving.load_spec(model_dir).build()) / 1e9


def tflite_accuracy_lines(export_dir: str) -> list[str]:
    """The accuracy each TFLite export measured (its `*_model_card.json`), a line each."""
    from d3d_tf.deploy import common

    lines = []
    for card_path in sorted(glob.glob(os.path.join(export_dir, f"*_{common.MODEL_CARD_JSON}"))):
        with open(card_path) as f:
            card = json.load(f)
        acc = card.get("accuracy")
        if not acc or "quantize" not in card:
            continue
        drop = 100 * (acc["float_top1"] - acc["tflite_top1"])
        line = (f"- {card['quantize']} TFLite on {acc['clips']} test clips (centre clip and "
                f"crop): top-1 {100 * acc['tflite_top1']:.1f} % vs "
                f"{100 * acc['float_top1']:.1f} % for the float model ({drop:+.1f} points "
                f"lost), the same class on {100 * acc['agreement']:.1f} % of the clips")
        if card.get("int8_worst_layers"):
            line += f"; largest int8 errors: {card['int8_worst_layers']}"
        lines.append(line)
    return lines


def flow_pictures(out_dir: str, videos_dir: str, count: int = 3) -> list[str]:
    """TV-L1 flow of the middle frame pair of `count` test videos, one per class, as PNGs."""
    import csv

    from d3d_tf.data import flow, video

    pictures, seen = [], set()
    with open(os.path.join(videos_dir, "manifest.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    os.makedirs(os.path.join(out_dir, "flow"), exist_ok=True)
    for row in rows:
        if row["label_name"] in seen:
            continue
        seen.add(row["label_name"])
        frames = video.read_video(os.path.join(videos_dir, row["path"]))
        mid = len(frames) // 2
        f = flow.compute_flow(frames[mid - 1:mid + 1], method="tvl1")[0]
        path = os.path.join(out_dir, "flow", f"{row['label_name']}.png")
        # Frame and flow side by side: what the RGB and the flow network see.
        rgb = frames[mid - 1]
        color = flow.flow_to_color(f)
        import cv2

        _, png = cv2.imencode(".png", cv2.cvtColor(np.concatenate([rgb, color], axis=1),
                                                   cv2.COLOR_RGB2BGR))
        atomic.write_bytes(path, png.tobytes())
        pictures.append(path)
        if len(pictures) == count:
            break
    return pictures


def _labels(path: str) -> list[str]:
    return preprocessing.read_labels(path) if os.path.exists(path) else []


def _true_label(videos_dir: str, video: str) -> str | None:
    """The manifest's label of `video` (a path as `predict` printed it), if listed."""
    import csv

    manifest = os.path.join(videos_dir, "manifest.csv")
    if not video or not os.path.exists(manifest):
        return None
    with open(manifest) as f:
        for row in csv.DictReader(f):
            if os.path.abspath(os.path.join(videos_dir, row["path"])) == os.path.abspath(video):
                return row["label_name"]
    return None


def _mean_top1(evals, name):
    values = [e[name]["video"]["top1"] for e in evals if e and name in e]
    return statistics.mean(values) if values else None


SEED_COLUMNS = (("teacher", "flow teacher"), ("baseline", "S3D-G"), ("d3d", "D3D"),
                ("d3d+baseline", "D3D + S3D-G"))


def seed_table(evals) -> list[str]:
    """Video top-1 of every run in every seed (markdown), when there is more than one seed."""
    if sum(1 for e in evals if e) < 2:
        return []
    lines = ["| Seed | " + " | ".join(label for _, label in SEED_COLUMNS) + " |",
             "| ---: |" + " ---: |" * len(SEED_COLUMNS)]
    for seed, e in enumerate(evals):
        if e:
            lines.append(f"| {seed} | " + " | ".join(
                protocol.percent(e[n]['video']['top1']) if n in e else "–"
                for n, _ in SEED_COLUMNS) + " |")
    return ["Video top-1 (%) per seed:", ""] + lines + [""]


def _interpretation(evals, seeds: int, num_classes: int = 0, comparison=None) -> list[str]:
    """What this run's numbers say, written from the numbers rather than assumed
    (`num_classes`: for the chance level; 0 = unknown; `comparison`: D3D minus the baseline,
    `d3d_tf.metrics.paired`, None when the per-video predictions are missing)."""
    teacher, base, d3d = (_mean_top1(evals, n) for n in ("teacher", "baseline", "d3d"))
    if None in (teacher, base, d3d):
        return ["- Some runs have no evaluation results; see the stages above."]
    lines = []
    if teacher > base:
        lines.append(f"- The flow teacher ({teacher:.1%}) is far better than the RGB baseline "
                     f"({base:.1%}) on these motion-defined classes: with little data and few "
                     "steps, a network that is given the motion learns it quickly, one that "
                     "must find it in RGB pixels learns it slowly.")
    else:
        lines.append(f"- The flow teacher ({teacher:.1%}) did not beat the RGB baseline "
                     f"({base:.1%}) in this run.")
    pairs = [(e["d3d"]["video"]["top1"], e["baseline"]["video"]["top1"]) for e in evals
             if e and "d3d" in e and "baseline" in e]
    wins = sum(d > b for d, b in pairs)
    if comparison is None:
        lines.append("- No per-video predictions (eval*/per_video.csv): rerun the evaluation "
                     "stages for the paired verdict of docs/protocol.md.")
    elif comparison.verdict() == "B > A":
        lines.append(f"- D3D ({d3d:.1%}) beats the RGB baseline ({base:.1%}) at the same "
                     "inference cost, by the protocol's rule (paired 95 % interval above 0, "
                     "every data seed): distilling the teacher's logits moved some of its motion "
                     "knowledge into the RGB network.")
    elif comparison.verdict() == "B < A":
        lines.append(f"- D3D ({d3d:.1%}) is **worse** than the RGB baseline ({base:.1%}) by the "
                     "protocol's rule: at this budget the distillation target slowed the "
                     "student down rather than helped it.")
    else:
        p = comparison.pooled
        lines.append(f"- D3D ({d3d:.1%}) and the RGB baseline ({base:.1%}) show **no reliable "
                     f"difference**: the paired 95 % interval of the gap is [{100 * p.low:+.1f}, "
                     f"{100 * p.high:+.1f}] points (docs/protocol.md).")
    if num_classes:
        chance = 1.0 / num_classes
        near = [b for _, b in pairs if b - chance <= protocol.ABOVE_CHANCE + 1e-9]
        if pairs and len(near) == len(pairs):
            lines.append(f"- The RGB baseline stayed near chance ({base:.1%}; chance "
                         f"{chance:.1%}) in every seed: with cross-entropy alone it did not find "
                         "the motion within this budget, so the gap says that the teacher's "
                         "logits let the same network, with the same settings, find it; not "
                         "that distillation improves an RGB network that already sees motion.")
        elif near:
            lines.append(f"- The RGB baseline stayed near chance in {len(near)} of "
                         f"{len(pairs)} seeds.")
    ensemble = _mean_top1(evals, "d3d+baseline")
    if ensemble is not None:
        best = max(d3d, base)
        if ensemble > best:
            verdict = "better than both: the two RGB networks' errors are partly different"
        elif ensemble == best:
            verdict = "as good as the better of the two, no better"
        else:
            verdict = ("**below** the better of the two: averaging in the weaker network's "
                       "softmax cost more than their different errors gained")
        lines.append(f"- The D3D + S3D-G ensemble ({ensemble:.1%}) is {verdict}.")
        runs = ("d3d+baseline", "d3d", "baseline")
        top1 = [[e[n]["video"]["top1"] for n in runs] for e in evals
                if e and all(n in e for n in runs)]
        per_seed = [ens >= max(d, b) for ens, d, b in top1]
        if len(per_seed) > 1:
            lines.append(f"- The ensemble is at least as good as both networks in "
                         f"{sum(per_seed)} of {len(per_seed)} seeds.")
    if len(pairs) > 1:
        lines.append(f"- D3D beat the baseline in {wins} of {len(pairs)} seeds.")
    count = next((e["d3d"]["video"].get("count") for e in evals if e and "d3d" in e), None)
    if count:
        lines.append(f"- {'One seed' if seeds == 1 else f'{seeds} seeds'} on {count} test "
                     f"videos: one video is {100 / count:.1f} points, so differences of a few "
                     "points are noise; `make demo SEEDS=3` reports mean ± std over seeds.")
    lines.append("- They do not reproduce the paper's Kinetics numbers: the dataset is tiny and "
                 "synthetic and the networks are shrunk (depth multiplier) and trained for "
                 "minutes on a CPU.")
    lines.append("- They do not show what happens on harder data at this budget: on the "
                 "synthetic generator's default data (textured, drifting backgrounds, "
                 "8 classes with rotations and scaling) both RGB networks stay near "
                 "chance within the demo's few thousand steps, so the demo uses the easy "
                 "settings in `configs/demo/synthetic.flags`.")
    return lines


def teacher_note(out_dir: str, seeds: int) -> str:
    """How many flow teachers the seeds of `out_dir` used, in words: one per training seed, or
    seed 0's for all (`--shared_teacher`: seed 1 has an evaluation but no teacher run)."""
    if seeds < 2:
        return "one flow teacher"
    shared = (not os.path.isdir(os.path.join(out_dir, "runs", "teacher" + run_suffix(1)))
              and os.path.isdir(os.path.join(out_dir, "eval" + run_suffix(1))))
    return ("one flow teacher per data seed (training seed 0's) for every training seed"
            if shared else "a flow teacher per training seed")


def _try_compare(dirs: dict[int, str], seeds: int, a: str = "baseline", b: str = "d3d"):
    """D3D minus the baseline (`d3d_tf.metrics.paired`), or None while a per-video file is
    missing."""
    try:
        return protocol.compare_runs(dirs, seeds, a, b)
    except (FileNotFoundError, KeyError):
        return None


def write_report(out_dir: str, *, seeds: int = 1, held_out: str | None = None,
                 data_seed: int = 0, ava_seeds: int | None = None) -> str:
    """Writes `<out_dir>/report.md` and returns its path (`data_seed`: the generator's seed of
    this out_dir's videos, as the paired table names it; `ava_seeds`: the training seeds
    the AVA comparison ran, default `seeds`)."""
    suffixes = _suffixes(seeds)
    train = {name: [_load(os.path.join(out_dir, "runs", name + s, "train_summary.json"))
                    for s in suffixes] for name, *_ in METHODS[:3]}
    evals = [_load(os.path.join(out_dir, "eval" + s, "results.json")) for s in suffixes]
    info = _load(os.path.join(out_dir, "records", "train_info.json")) or {}
    tvl1_pair_s = (info["flow_s"] / info["flow_pairs"]) if info.get("flow_pairs") else None
    spec = _load(os.path.join(out_dir, "runs", "d3d" + suffixes[0], "model", "model.json")) or {}
    frames = (spec.get("input_shape") or [None])[0]
    gflops = {name: _network_gflops(os.path.join(out_dir, "runs", name + suffixes[0], "model"))
              for name, *_ in METHODS[:3]}
    gflops["d3d+baseline"] = (gflops["d3d"] or 0) + (gflops["baseline"] or 0)

    lines = ["# d3d_tf demo report", ""]
    labels = _labels(os.path.join(out_dir, "records", "labels.txt"))
    lines += [
        ("The whole method on the built-in synthetic dataset, on this machine's CPU: a flow "
         "teacher, an RGB S3D-G baseline and the D3D student, evaluated on held-out videos. "
         "Each class of the dataset is a motion of a randomly textured object"
         + (f" ({', '.join(labels)})" if labels else "") + ". Every frame of every class comes "
         "from the same distribution (the object's pose is random at the middle frame), so no "
         "single frame tells the class, as in the paper's 'open vs close a door' example: "
         "the class is in the motion, which the flow teacher is given and the RGB networks "
         "must find. The demo's data (`configs/demo/synthetic.flags`) is made easy for RGB "
         "networks trained from scratch on a CPU: a plain still background and coarse textures; "
         "each video's direction is turned by up to 30 degrees, so the flow teacher's logits "
         "carry how far a video leans towards a neighbouring class."), ""]
    if spec:
        t, h, w, _ = spec["input_shape"]
        lines.append(f"Clips: {t} frames of {h}x{w} px; network `{spec['name']}` with "
                     f"depth_multiplier {spec['config']['depth_multiplier']}; "
                     f"{spec['num_classes']} classes; seeds: {seeds}; "
                     f"{teacher_note(out_dir, seeds)}.")
        lines.append("")

    lines += ["## Results (cf. the paper's Table 2)", "",
              ("| Method | Training input | Inference input | Top-1 (%) | Top-5 (%) | "
              "Train step (s) | Inference cost per clip |"),
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, method, train_in, infer_in in METHODS:
        top1 = [e[name]["video"]["top1"] if e and name in e else None for e in evals]
        top5 = [e[name]["video"]["top5"] if e and name in e else None for e in evals]
        steps = [t.get("seconds_per_step") if t else None for t in train.get(name, [])]
        cost = f"{gflops[name]:.2f} GFLOPs" if gflops.get(name) else "n/a"
        if name == "teacher" and tvl1_pair_s and frames:
            cost += f" + TV-L1 flow {tvl1_pair_s * frames:.2f} s"
        lines.append(f"| {method} | {train_in} | {infer_in} | {_fmt(top1)} | {_fmt(top5)} | "
                     f"{_fmt(steps, 1.0, 3) if steps else '—'} | {cost} |")
    lines.append("")
    base = [t["seconds_per_step"] for t in train["baseline"] if t and t["seconds_per_step"]]
    d3d = [t["seconds_per_step"] for t in train["d3d"] if t and t["seconds_per_step"]]
    if base and d3d:
        lines.append(f"Cost of distillation: D3D train step / baseline train step = "
                     f"{statistics.mean(d3d) / statistics.mean(base):.2f} (the teacher's "
                     "forward pass on flow is the extra work; at inference D3D costs exactly "
                     "what the baseline costs).")
    if tvl1_pair_s:
        lines.append(f"TV-L1 flow took {tvl1_pair_s:.3f} s per frame pair "
                     f"({info['flow_pairs']} pairs in `prepare`), which is what the two-stream "
                     "approach pays at inference and D3D does not.")
    lines += ["", ("Top-1 and top-5 are video-level (mean softmax of the evaluation clips). "
              "Step times are medians of the training loop on this CPU."), ""]
    lines += seed_table(evals)

    comparison = _try_compare({data_seed: out_dir}, seeds)
    lines += ["## What these numbers show, and what they do not", ""]
    lines += _interpretation(evals, seeds, len(labels), comparison)
    lines.append("")
    if comparison is not None:
        lines += [("Video top-1 of D3D against the RGB baseline, paired video by video "
                  f"(docs/protocol.md; data seed {data_seed}: "
                  f"{protocol.data_seeds_note([data_seed])}; the verdicts on fresh draws are "
                  "in docs/protocol.md, \"Acceptance runs\"):"), ""]
        lines += protocol.comparison_lines(comparison, a="S3D-G", b="D3D") + [""]
        lines += protocol.regime_checks({data_seed: out_dir}, seeds, len(labels)) + [""]

    eval_dir = os.path.join(out_dir, "eval" + suffixes[0])
    lines += ["## Per-class accuracy", ""]
    for png, caption in (("per_class_difference.png", ("per-class accuracy, D3D minus S3D-G "
                          "(the paper's appendix Figures 7-8)")),
                         ("per_class_d3d.png", "per-class accuracy of D3D"),
                         ("confusion_d3d.png", "confusion matrix of D3D")):
        if os.path.exists(os.path.join(eval_dir, png)):
            lines.append(f"![{caption}]({os.path.relpath(os.path.join(eval_dir, png), out_dir)})")
            lines.append(f"*{caption}*")
            lines.append("")

    from d3d_tf.demo import probes

    lines += probes.report_section(out_dir)

    from d3d_tf.demo import ava

    lines += ava.report_section(out_dir, seeds if ava_seeds is None else ava_seeds, data_seed)

    videos_dir = os.path.join(out_dir, "videos")
    if os.path.exists(os.path.join(videos_dir, "manifest.csv")):
        lines += ["## Optical flow", "", ("Frame (left) and its TV-L1 flow (right; hue = "
                  "direction, saturation = magnitude, white = still), as in the paper's "
                  "Figure 5:"), ""]
        for path in flow_pictures(out_dir, videos_dir):
            lines.append(f"![{os.path.basename(path)}]({os.path.relpath(path, out_dir)})")
        lines.append("")

    lines += ["## Export and prediction", ""]
    export_dir = os.path.join(out_dir, "export")
    for path in sorted(glob.glob(os.path.join(export_dir, "*.tflite"))):
        lines.append(f"- TFLite `{os.path.relpath(path, out_dir)}`: "
                     f"{os.path.getsize(path) / 1e6:.2f} MB")
    for path in sorted(glob.glob(os.path.join(export_dir, "d3d", "[0-9]*"))):
        size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)
        lines.append(f"- SavedModel `{os.path.relpath(path, out_dir)}`: {size / 1e6:.2f} MB "
                     "(RGB frames in, no teacher, no flow)")
    lines += tflite_accuracy_lines(export_dir)
    for tag in ("saved_model", "tflite"):
        pred = os.path.join(out_dir, f"predict_{tag}.json")
        if os.path.exists(pred):
            with open(pred) as f:
                result = json.loads(f.read().strip().splitlines()[-1])
            top = result.get("top_k") or result.get("predictions") or []
            best = ", ".join(f"{p['label']} {p['score']:.2f}" for p in top[:3]) if top else ""
            video = result.get("video", held_out or "")
            truth = _true_label(videos_dir, video)
            lines.append(f"- `predict` with the {tag.replace('_', ' ')} on "
                         f"`{os.path.relpath(video, out_dir)}`"
                         + (f" (true class: {truth})" if truth else "") + f": {best}")
    lines.append("")

    lines += ["## Artifacts", ""]
    for label, path in (("videos and manifest", videos_dir),
                        ("TFRecords", os.path.join(out_dir, "records")),
                        ("training runs (checkpoints, TensorBoard, model/)",
                         os.path.join(out_dir, "runs")),
                        ("evaluation (results.json, report.md, CSV, plots)", eval_dir),
                        ("exports (SavedModel for TF Serving, TFLite)", export_dir)):
        if os.path.exists(path):
            lines.append(f"- {label}: `{path}`")
    lines.append("")
    report = os.path.join(out_dir, "report.md")
    atomic.write_text(report, "\n".join(lines))
    return report


def write_protocol_report(out_dir: str, dirs: dict[int, str], *, seeds: int,
                          ava_seeds: int | None = None) -> str:
    """`<out_dir>/protocol.md`: the claims of docs/protocol.md judged over the data seeds of
    `dirs` (data seed -> that seed's demo out_dir) and `seeds` training seeds each (the AVA
    comparison over `ava_seeds`, default `seeds`)."""
    first = next(iter(dirs.values()))
    labels = _labels(os.path.join(first, "records", "labels.txt"))
    lines = ["# The demo judged by the evidence protocol", "",
             (f"Data seeds: {', '.join(str(d) for d in dirs)} "
              f"({protocol.data_seeds_note(dirs)}); "
             f"training seeds per data seed: {seeds} ({teacher_note(first, seeds)}). "
             "Every gap is paired: the same test "
             "videos, the same training seed; intervals are the hierarchical bootstrap of "
             "docs/protocol.md, and a claim needs the pooled interval off 0 and the same sign "
             "in every data seed."), "",
             "## Conditions on the regime", ""]
    lines += protocol.regime_checks(dirs, seeds, len(labels)) or ["- no results yet"]
    for title, a, b, la, lb in (
            ("D3D against the RGB baseline (video top-1)", "baseline", "d3d", "S3D-G", "D3D"),
            ("The D3D + S3D-G ensemble against D3D (video top-1)", "d3d", "d3d+baseline",
             "D3D", "D3D + S3D-G"),
            ("The flow teacher against the RGB baseline (video top-1)", "baseline", "teacher",
             "S3D-G", "teacher")):
        comparison = _try_compare(dirs, seeds, a, b)
        lines += ["", f"## {title}", ""]
        lines += (protocol.comparison_lines(comparison, a=la, b=lb) if comparison
                  else ["- missing per-video predictions: rerun the demo."])
    cells = protocol.probe_cells(dirs, seeds)
    lines += ["", ("## Motion probe at 3A: EPE of D3D against the RGB baseline (px, lower is "
              "better)"), ""]
    if cells:
        from d3d_tf.metrics import paired

        lines += protocol.comparison_lines(paired.compare(cells), a="S3D-G", b="D3D",
                                                unit="px", lower_is_better=True)
    else:
        lines.append("- no probe results yet")
    from d3d_tf.demo import ava

    lines += ava.protocol_section(dirs, seeds if ava_seeds is None else ava_seeds)
    lines += [""] + protocol.cost_lines(dirs, speed_run="d3d", speed_label="the D3D student",
                                        train_seeds=seeds)
    path = os.path.join(out_dir, "protocol.md")
    atomic.write_text(path, "\n".join(lines) + "\n")
    return path
