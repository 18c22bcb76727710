"""The papers' accuracy tables in their own layout (markdown), from evaluation results.

    python -m d3d_tf.evaluate ... --table=d3d_table2       # after evaluating, beside results.json
    python -m d3d_tf.evaluate --results=eval/results.json --table=d3d_table2 --out_dir=eval

`results` is what `python -m d3d_tf.evaluate` writes to results.json: `{name: metrics}` with
`metrics["clip"]["top1"]`, `metrics["video"]["top1"]`, `metrics["video"]["top5"]` as fractions
in [0, 1] (printed in percent), and `metrics["model"]` = `model_info(model.json)` of the
evaluated model directory (an ensemble, named by its members joined with "+", takes its
members' inputs). The table's row is the result's name (`--name`); the other columns come from
`metrics["model"]`. Tables:

- d3d_table2 / d3d_table3 (D3D, Kinetics-400 / -600): Method | Training input | Inference
  input | top-1.
- d3d_table4 (D3D, fine-tuning): Method | one top-1 column per results file (`LABEL=path`,
  e.g. UCF-101=..., HMDB-51=...).
- d3d_table5 (D3D, AVA): Method | Pretraining | AVA frame-mAP, a row per `evaluate
  --task=ava` results file (`LABEL=path`); Pretraining from what the detector recorded of its
  backbone's `--init_from` (`results["pretraining"]`, see `pretraining_name`).
- d3d_table6 (D3D ablations): Method | Kinetics-400 top-1; distinit_fig6 the same, its rows
  the entropy thresholds.
- distinit_table1 / 2 / 3 / 4 / 5 (DistInit, HMDB-51 split 1): Model | Initialization (Pick
  strategy, Loss function, Unlabeled set) | Per clip | Top 1 | Top 5 (Table 3 without the
  model column; Table 4 with Size after the set: the videos of the --init_from run's
  --train_data, model.json's `pretrain_videos`). The row's name is the middle column; a
  leading network name in it ("R(2+1)D-18 Scratch", "r3d_18 Scratch") is dropped, so that two
  networks' rows can share an initialization's name.
- distinit_table6 (DistInit, HMDB-51 or UCF-101): Model | Architecture | #frames |
  Pre-training | Split 1 | 3-split avg, from the results files of the three splits (in order).
"""
from __future__ import annotations

import dataclasses
import json
import os
import statistics

NETWORK_NAMES = {"r3d_18": "Res3D-18", "r2plus1d_18": "R(2+1)D-18", "mc3_18": "MC3-18",
                 "s3dg": "S3D-G", "i3d": "I3D"}
MODALITY_NAMES = {"rgb": "RGB", "flow": "Flow"}


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """kind: `modality` (D3D Tables 2-3), `method` (one top-1 column), `datasets` (a column per
    results file), `distinit` (per clip, top 1, top 5), `splits` (split 1 and the mean)."""
    kind: str
    caption: str
    column: str = ""  # the name's column (distinit) or the top-1 column's header
    first: str = "Method"  # the first column's header (method)


TABLES = {
    "d3d_table2": TableSpec("modality", (
        "Table 2: Performance of D3D on Kinetics-400. Top-1 accuracy (%, video level) on the "
        "evaluation set. \"D3D+S3D-G\" is an ensemble of D3D and S3D-G (mean of softmaxes)."),
        "Kinetics-400"),
    "d3d_table3": TableSpec("modality", (
        "Table 3: Performance of D3D on Kinetics-600. Top-1 accuracy (%, video level) on the "
        "evaluation set. \"D3D+S3D-G\" is an ensemble of D3D and S3D-G (mean of softmaxes)."),
        "Kinetics-600"),
    "d3d_table4": TableSpec("datasets", (
        "Table 4: Performance after fine-tuning D3D on UCF-101 and HMDB-51. Top-1 accuracy "
        "(%, video level) on test split 1 of each dataset. No distillation is performed during "
        "fine-tuning.")),
    "d3d_table5": TableSpec("ava", (
        "Table 5: Performance on AVA using different backbone networks. Frame-mAP (%) on the "
        "evaluation set (python -m d3d_tf.evaluate --task=ava), one detector per results file; "
        "Pretraining: the backbone's training set (--init_from's --train_data) and classes; "
        "configs/paper/ava_*.flags use the records' person boxes as proposals."), "AVA"),
    "d3d_table6": TableSpec("method", (
        "Table 6: Ablation studies. Top-1 accuracy (%, video level) on the Kinetics-400 "
        "evaluation set."), "Kinetics-400"),
    "distinit_table1": TableSpec("distinit", (
        "Table 1: Distillation vs Inflation. Accuracy (%) on HMDB-51 split 1 after fine-tuning "
        "18-layer Res3D and R(2+1)D over 8-frame input; per clip, and per video (top 1, top 5)."),
        "Initialization"),
    "distinit_table2": TableSpec("distinit", (
        "Table 2: Video to Image. Strategies of picking the frame(s) the image teacher sees; "
        "R(2+1)D-18 over 8-frame input, accuracy (%) on HMDB-51 split 1."), "Pick strategy"),
    "distinit_table3": TableSpec("distinit", (
        "Table 3: Loss function for distillation. R(2+1)D-18 over 8-frame input, accuracy (%) "
        "on HMDB-51 split 1."), "Loss function"),
    "distinit_table4": TableSpec("distinit", (
        "Table 4: Unlabeled data for distillation. R(2+1)D-18 pre-trained by DistInit on each "
        "unlabeled set, accuracy (%) on HMDB-51 split 1."), "Unlabeled set"),
    "distinit_table5": TableSpec("distinit", (
        "Table 5: DistInit on Optical Flow. Flow students; the inflated conv_1 averages the "
        "RGB kernel over its channels and repeats it for the two flow channels. Accuracy (%) on "
        "HMDB-51 split 1."), "Initialization"),
    "distinit_fig6": TableSpec("method", (
        "Fig. 6 (as a table): Accuracy variation with entropy. DistInit pre-training of "
        "R(2+1)D-18 that drops clips whose teacher entropy is above the threshold, accuracy (%) "
        "on HMDB-51 split 1 after fine-tuning."), "HMDB-51 split 1", "Entropy threshold (nats)"),
    "distinit_table6": TableSpec("splits", (
        "Table 6: Comparison with previous work. Video top-1 accuracy (%) on split 1 and the "
        "mean over the three splits.")),
}


def read_results(path: str) -> dict:
    """An evaluation's results.json (`{name: metrics}`); FileNotFoundError / ValueError naming
    `path` when it is missing or is not one (e.g. an average.json)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no results file {path}")
    try:
        with open(path) as f:
            results = json.load(f)
    except ValueError as e:
        raise ValueError(f"{path} is not a results.json: {e}") from None
    if isinstance(results, dict) and "frame_mAP" in results:  # evaluate --task=ava
        return results
    if not isinstance(results, dict) or not results or not all(
            isinstance(m, dict) and "video" in m for m in results.values()):
        raise ValueError(f"{path} is not an evaluation's results.json ({{model name: "
                         "metrics}, as python -m d3d_tf.evaluate writes; average.json is not "
                         "one)")
    return results


def model_info(spec: dict, directory: str = "") -> dict:
    """What a table needs of a model directory's model.json (`spec`, as a dict)."""
    source = spec.get("source", "")
    task = next((w[5:] for w in source.split() if w.startswith("task=")), "")
    return {"dir": directory, "network": spec.get("name", ""),
            "frames": (spec.get("input_shape") or [None])[0],
            "modality": spec.get("modality", "rgb"), "task": task,
            "train_inputs": list(spec.get("train_inputs") or []),
            "pretrain_videos": spec.get("pretrain_videos")}


def pretraining_name(info: dict | None) -> str:
    """D3D Table 5's Pretraining cell of a detector's recorded pretraining (`info`, as
    `d3d_tf.ava.task.pretraining` returns it): the folder of its backbone's training
    records and its classes ("kinetics400 (400 classes)"), else its source; "none (scratch)"
    for `{}`; "n/a" for None (a detector saved before it was recorded)."""
    if info is None:
        return "n/a"
    if not info:
        return "none (scratch)"
    data = info.get("train_data") or ""
    name = os.path.basename(os.path.dirname(data)) if data else ""
    name = name or data or info.get("source") or info.get("init_from") or "n/a"
    return f"{name} ({info['classes']} classes)" if info.get("classes") else name


def size_name(videos) -> str:
    """DistInit Table 4's Size of a pre-training set of `videos` videos: "0.3M" from 100k on
    (the paper's style), the count below it, "n/a" for None (not recorded)."""
    if videos is None:
        return "n/a"
    return f"{videos / 1e6:.1f}M" if videos >= 100_000 else str(videos)


def _modalities(names) -> str:
    return "+".join(MODALITY_NAMES.get(n, n) for n in names)


def _inputs(name: str, results: dict) -> tuple[str, str]:
    """(training input, inference input) of result `name`, "n/a" where not recorded."""
    info = results[name].get("model") or {}
    members = name.split("+") if "+" in name and not info else []
    if members and all(m in results and m != name for m in members):
        per = [_inputs(m, results) for m in members]
        train = []
        for t, _ in per:
            train += [x for x in t.split("+") if x not in train]
        return "+".join(train), "+".join(i for _, i in per)
    if not info:
        return "n/a", "n/a"
    modality = info.get("modality", "rgb")
    train = info.get("train_inputs") or []
    if not train:  # model.json from before train_inputs was recorded
        train = {"distill": [modality, "teacher's input"],
                 "flow_loss": [modality, "flow"]}.get(info.get("task"), [modality])
    train = sorted(train, key=lambda m: (m != modality, m))  # the network's own input first
    return _modalities(train), _modalities([modality])


def _pct(values) -> str:
    """Mean (± sample std over several values) in percent, one decimal; "n/a" for none."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    mean = 100 * statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def _get(metrics: dict | None, level: str, key: str):
    return ((metrics or {}).get(level) or {}).get(key)


def _network(name: str, info: dict) -> str:
    return NETWORK_NAMES.get(info.get("network", ""), info.get("network") or "n/a")


def _strip_network(name: str, info: dict) -> str:
    """`name` without a leading network name (display or preset), e.g. "R(2+1)D-18 Scratch"
    -> "Scratch"."""
    for prefix in (NETWORK_NAMES.get(info.get("network", "")), info.get("network")):
        if prefix and name.startswith(prefix) and name[len(prefix):][:1] in (" ", "_", ":"):
            return name[len(prefix) + 1:].strip() or name
    return name


def _numeric(cell) -> bool:
    text = str(cell).split(" ± ")[0]
    if text in ("n/a", "-", "—"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def markdown(columns, rows, caption: str) -> list[str]:
    """A markdown table (columns of numbers right-aligned, text left-aligned) and its caption
    in italics below it, as the papers print captions."""
    align = [" ---: |" if rows and all(_numeric(r[i]) for r in rows) else " --- |"
             for i in range(len(columns))]
    lines = ["| " + " | ".join(columns) + " |", "|" + "".join(align)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + ["", f"*{caption}*"]


def distinit_rows(rows, *, extra: str | None = None) -> tuple[list[str], list[list[str]]]:
    """DistInit's accuracy layout (Tables 1-3, 5) over seeds: columns and cells.

    rows: `(model, initialization, clip top-1 values, video top-1 values, video top-5
      values[, extra cell])`, each value list one fraction per seed (None: missing), printed
      as mean ± sample std in percent; an empty list prints "—" (a row the paper leaves out,
      e.g. no 2D counterpart to inflate). `extra`: the header of a last, descriptive column.
    """
    columns = ["Model", "Initialization", "Per clip", "Top 1", "Top 5"] + (
        [extra] if extra else [])
    cells = []
    for model, init, clip, top1, top5, *rest in rows:
        values = [_pct(v) if v else "—" for v in (clip, top1, top5)]
        cells.append([model, init, *values, *(rest[:1] if extra else [])])
    return columns, cells


def table(name: str, runs: list[dict], labels: list[str] | None = None) -> list[str]:
    """Markdown lines of paper table `name` (a key of TABLES) from `runs`: one results.json
    dict per file; `labels`: the datasets' column headers of `d3d_table4` (one per run).

    Raises ValueError naming what is missing (an unknown table, a name in two files, no
    runs)."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}: one of {', '.join(TABLES)}")
    if not runs:
        raise ValueError(f"--table={name}: no results to lay out")
    spec = TABLES[name]
    ava = ["frame_mAP" in r for r in runs]
    if (spec.kind == "ava") != all(ava) or (spec.kind != "ava" and any(ava)):
        raise ValueError(f"--table={name} " + ("lays out AVA evaluations (evaluate --task=ava)"
                                               if spec.kind == "ava" else
                                               "does not take AVA evaluations: d3d_table5 does"))
    if spec.kind == "ava":
        labels = labels or [f"detector {i + 1}" for i in range(len(runs))]
        rows = [[label, pretraining_name(r.get("pretraining")), _pct([r["frame_mAP"]])]
                for label, r in zip(labels, runs)]
        return markdown(["Method", "Pretraining", f"{spec.column} frame-mAP"], rows,
                        spec.caption)
    if spec.kind == "datasets":
        labels = labels or [f"set {i + 1}" for i in range(len(runs))]
        names = []
        for r in runs:
            names += [n for n in r if n not in names]
        rows = [[n] + [_pct([_get(r.get(n), "video", "top1")]) if n in r else "-"
                       for r in runs] for n in names]
        return markdown(["Method", *labels], rows, spec.caption)
    if spec.kind == "splits":
        first = runs[0]
        rows = []
        for n, metrics in first.items():
            info = metrics.get("model") or {}
            split1 = _get(metrics, "video", "top1")
            every = [_get(r.get(n), "video", "top1") for r in runs]
            avg = (_pct([statistics.mean(every)]) if len(runs) > 1 and None not in every
                   else "-")
            rows.append([n, _network(n, info), info.get("frames") or "n/a",
                         _strip_network(n, info), _pct([split1]), avg])
        return markdown(["Model", "Architecture", "#frames", "Pre-training", "Split 1",
                         "3-split avg"], rows, spec.caption)
    merged: dict = {}
    for r in runs:
        for n, metrics in r.items():
            if n in merged:
                raise ValueError(f"--table={name}: the name {n!r} is in two results files; "
                                 "give each model its own --name")
            merged[n] = metrics
    if spec.kind == "modality":
        rows = [[n, *_inputs(n, merged), _pct([_get(m, "video", "top1")])]
                for n, m in merged.items()]
        return markdown(["Method", "Training input", "Inference input",
                         f"{spec.column} top-1"], rows, spec.caption)
    if spec.kind == "method":
        rows = [[n, _pct([_get(m, "video", "top1")])] for n, m in merged.items()]
        return markdown([spec.first, f"{spec.column} top-1"], rows, spec.caption)
    rows = []
    for n, m in merged.items():
        info = m.get("model") or {}
        rows.append((_network(n, info), _strip_network(n, info), [_get(m, "clip", "top1")],
                     [_get(m, "video", "top1")], [_get(m, "video", "top5")]))
    columns, cells = distinit_rows(rows)
    columns[1] = spec.column
    if name == "distinit_table4":  # Size: videos of the set the fine-tuned model started from
        columns.insert(2, "Size")
        for cell, metrics in zip(cells, merged.values()):
            cell.insert(2, size_name((metrics.get("model") or {}).get("pretrain_videos")))
    if name == "distinit_table3":  # the paper's Table 3 has no model column
        columns, cells = columns[1:], [c[1:] for c in cells]
    return markdown(columns, cells, spec.caption)
